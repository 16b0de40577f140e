"""minicnn.interop and `minicnn export`: models to PyTorch, ONNX and safetensors, and back.

Every round trip compares logits computed by the other library with minicnn's own,
on random weights (not the initial ones) and batch norm statistics that are not 0/1.
"""
import numpy as np
import pytest

import minicnn
from minicnn import interop, nn
from minicnn.xray.checkpoint import save_checkpoint
from minicnn.nn import models

from cli_run import run_cli

torch = pytest.importorskip("torch", reason="interop tests compare with PyTorch")


def _perturb(model, seed=0):
    """Random weights and running statistics, so a swapped or dropped tensor shows."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        value = np.asarray(value)
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
        elif np.issubdtype(value.dtype, np.floating):
            state[key] = (rng.standard_normal(value.shape) * 0.2).astype(value.dtype)
        else:
            state[key] = value
    model.load_state_dict(state)
    return model.eval()


def _logits(model, x):
    with minicnn.no_grad():
        return model(minicnn.tensor(x)).numpy()


def _torch_logits(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _layered():
    """A Sequential using every layer that crosses, with pools of every kind."""
    layers = [nn.Conv2d(2, 4, 3, stride=(1, 2), padding=(1, 0)), nn.BatchNorm2d(4), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.Conv2d(4, 3, (2, 3), bias=False),
              nn.Conv2d(3, 3, (2, 2), padding="same"), nn.Sigmoid(),
              nn.AvgPool2d(2, 1, 1, ceil_mode=True, count_include_pad=False)]
    features = 3 * 5 * 3                       # (N, 3, 5, 3) after the average pool
    if hasattr(nn, "AdaptiveAvgPool2d"):
        layers.append(nn.AdaptiveAvgPool2d((5, 1)))   # equal bins, so ONNX can take it
        features = 3 * 5 * 1
    layers += [nn.Flatten(), nn.Dropout(0.3), nn.Linear(features, 5)]
    return nn.Sequential(*layers)


MODELS = {
    "chestxray": (lambda: models.ChestXrayCNN(in_channels=1, num_classes=3, image_size=(24, 32)),
                  (1, 24, 32)),
    "alexnet": (lambda: models.AlexNet(in_channels=3, num_classes=2, image_size=67), (3, 67, 67)),
    "layered": (_layered, (2, 9, 15)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_to_torch_and_back_give_the_same_logits(name):
    make, shape = MODELS[name]
    model = _perturb(make())
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    want = _logits(model, x)
    module = interop.to_torch(model).eval()
    assert isinstance(module, torch.nn.Module)
    assert sorted(module.state_dict()) == sorted(model.state_dict())
    np.testing.assert_allclose(_torch_logits(module, x), want, rtol=1e-4, atol=1e-5)
    back = interop.from_torch(module).eval()
    assert type(back) is type(model)
    np.testing.assert_allclose(_logits(back, x), want, rtol=1e-5, atol=1e-6)


def test_to_torch_keeps_the_mode_and_from_torch_reads_a_plain_torch_model():
    model = models.ChestXrayCNN(image_size=16)
    assert interop.to_torch(model.train()).training
    assert not interop.to_torch(model.eval()).training
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2),
                                torch.nn.ReLU(inplace=True), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 5 * 5, 3)).eval()
    x = np.random.default_rng(2).standard_normal((4, 1, 5, 5)).astype(np.float32)
    ours = interop.from_torch(plain).eval()
    np.testing.assert_allclose(_logits(ours, x), _torch_logits(plain, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer, words", [
    (lambda: torch.nn.Conv2d(4, 4, 3, groups=2), "groups=2"),
    (lambda: torch.nn.Conv2d(1, 1, 3, dilation=2), "dilation=(2, 2)"),
    (lambda: torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"),
     "padding_mode='reflect'"),
    (lambda: torch.nn.MaxPool2d(2, dilation=2), "dilation=2"),
    (lambda: torch.nn.MaxPool2d(2, return_indices=True), "return_indices=True"),
    (lambda: torch.nn.LSTM(3, 3), "LSTM"),
])
def test_from_torch_refuses_what_minicnn_does_not_compute_by_name(layer, words):
    from minicnn.interop.torch_bridge import InteropError
    with pytest.raises(InteropError) as err:
        interop.from_torch(torch.nn.Sequential(torch.nn.ReLU(), layer()))
    assert words in str(err.value) and str(err.value).startswith("from_torch: 1 ")


def test_a_custom_torch_module_is_refused_with_its_class_name():
    class Mine(torch.nn.Module):
        def forward(self, x):
            return x * 2
    from minicnn.interop.torch_bridge import InteropError
    with pytest.raises(InteropError, match="Mine"):
        interop.from_torch(Mine())


onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX round trips need onnxruntime")


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_logits_match_minicnn_for_any_batch_size(name, tmp_path):
    import onnx
    make, shape = MODELS[name]
    model = _perturb(make(), seed=3)
    path = tmp_path / "m.onnx"
    interop.export_onnx(model, path, shape, {"classes": "a,b"})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
        got = session.run(["logits"], {"input": x})[0]
        assert got.shape == (n, _logits(model, x).shape[1])
        np.testing.assert_allclose(got, _logits(model, x), rtol=1e-4, atol=1e-4)


def _checkpoint(tmp_path):
    model = _perturb(models.ChestXrayCNN(image_size=16))
    path = tmp_path / "best.npz"
    save_checkpoint(path, model, norm_mean=[0.25], norm_std=[0.5], classes=["NORMAL", "PNEUMONIA"],
                    threshold=0.625)
    return model, path


def test_export_command_writes_onnx_with_the_checkpoint_metadata(tmp_path):
    model, ck = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    code, stdout, stderr = run_cli("export", "--checkpoint", ck, "--format", "onnx",
                                   "--output", out)
    assert code == 0, stderr
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["threshold"] == "0.625" and "PNEUMONIA" in meta["classes"]
    assert meta["norm_mean"] == "[0.25]" and meta["norm_std"] == "[0.5]"
    x = np.random.default_rng(5).standard_normal((2, 1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], _logits(model, x),
                               rtol=1e-4, atol=1e-4)


def test_export_command_writes_safetensors_torch_can_load(tmp_path):
    from safetensors.torch import load_file
    model, ck = _checkpoint(tmp_path)
    out = tmp_path / "model.safetensors"
    code, _, stderr = run_cli("export", "--checkpoint", ck, "--format", "safetensors",
                              "--output", out)
    assert code == 0, stderr
    module = interop.to_torch(models.ChestXrayCNN(image_size=16)).eval()
    module.load_state_dict(load_file(str(out)), strict=True)
    x = np.random.default_rng(6).standard_normal((3, 1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_torch_logits(module, x), _logits(model, x), rtol=1e-4, atol=1e-5)
    state, meta = interop.load_safetensors(out)
    assert meta["model"] == "chestxray" and set(state) == set(model.state_dict())


def test_export_command_bad_output_is_one_clear_line(tmp_path):
    _, ck = _checkpoint(tmp_path)
    code, _, stderr = run_cli("export", "--checkpoint", ck, "--format", "onnx",
                              "--output", tmp_path)
    assert code == 2 and "--output" in stderr and "folder" in stderr
    assert "Traceback" not in stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = run_cli("export", "--checkpoint", ck, "--format", "onnx",
                              "--output", blocker / "m.onnx")
    assert code == 2 and "--output" in stderr and "Traceback" not in stderr
    assert blocker.read_text() == "x"
