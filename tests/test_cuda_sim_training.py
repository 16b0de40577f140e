"""Whole training through the CUDA kernels: ChestXrayCNN steps, a short `fit`, and the
`minicnn train` command, on the CPU emulator ("cuda-sim") and on a real GPU ("cuda")
where one is present, each equal to the same run through the numba CPU kernels.

Sizes are tiny (16-20 px, batch 4-8): the emulator runs each CUDA thread as a fiber.
"""
import json
import math

import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn.nn.models import ChestXrayCNN
from minicnn.optim import SGD, Adam
from minicnn.testing import assert_close
from minicnn.xray.train import fit

from cli_run import run_cli
from torch_compare import numba_cpu


@pytest.fixture
def device(cuda_device):
    """cuda-sim, and cuda where a GPU is present (tests/conftest.py); the cpu run each is
    compared with is made in the test."""
    return cuda_device


def _model_on(device, seed):
    minicnn.manual_seed(seed)
    return ChestXrayCNN(in_channels=1, num_classes=2, image_size=(20, 18)).to(device)


def _train(device, make_opt, steps, seed=3):
    model = _model_on(device, seed)
    opt = make_opt(model.parameters())
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        x = minicnn.tensor(rng.standard_normal((4, 1, 20, 18)).astype(np.float32), device=device)
        y = minicnn.tensor(rng.integers(0, 2, size=4), device=device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y, weight=np.array([2.0, 0.5], np.float32))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model.state_dict()


@pytest.mark.parametrize("make_opt", [
    lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
    lambda p: Adam(p, lr=1e-3, weight_decay=1e-4),
], ids=["sgd-nesterov", "adam"])
def test_training_steps_on_a_cuda_device_equal_cpu(device, make_opt):
    with numba_cpu():
        cpu_losses, cpu_state = _train("cpu", make_opt, steps=3)
    dev_losses, dev_state = _train(device, make_opt, steps=3)
    assert_close(np.array(dev_losses), np.array(cpu_losses), atol=1e-5, rtol=1e-4, name="losses")
    assert cpu_state.keys() == dev_state.keys()
    for key in cpu_state:
        assert_close(dev_state[key], cpu_state[key], atol=1e-5, rtol=1e-4, name=key)
    # the step really moved the weights, so equality is not of two untouched copies
    start = _model_on("cpu", 3).state_dict()
    assert any(np.abs(cpu_state[k] - start[k]).max() > 1e-4 for k in cpu_state)


# a tiny synthetic run: 16 training images of 16x16, 4 batches of 4, one epoch
TINY_FIT = dict(synthetic_sizes={"train": 16, "val": 8, "test": 8}, image_size=16, batch_size=4,
                epochs=1, progress=False, log=lambda *a: None)


def test_short_fit_on_a_cuda_device_equals_cpu(device, tmp_path):
    """fit() end to end (augmentation, label smoothing, Adam, the schedule, evaluation,
    checkpoints) on the device: the metrics and final weights of the cpu run."""
    kw = dict(TINY_FIT, label_smoothing=0.1)
    with numba_cpu():
        on_cpu = fit(out=str(tmp_path / "cpu"), device="cpu", **kw)
    here = fit(out=str(tmp_path / device), device=device, **kw)
    assert here.model.device == device
    e, ce = here.metrics["epochs"][0], on_cpu.metrics["epochs"][0]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert_close(e[key], ce[key], atol=1e-5, rtol=1e-4, name=f"epoch 1 {key} on {device}")
    assert_close(here.test_probs, on_cpu.test_probs, atol=1e-5, rtol=1e-4, name="test probabilities")
    cpu_state = on_cpu.model.state_dict()
    for key, value in here.model.state_dict().items():
        assert_close(value, cpu_state[key], atol=1e-5, rtol=1e-4, name=f"{key} after fit on {device}")


def _finite_numbers(value, where):
    """Every number in a metrics.json value is finite (None stands for 'undefined')."""
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_numbers(v, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value), f"{where} = {value!r}"


def test_train_command_with_label_smoothing_on_a_cuda_device(device, tmp_path):
    """`minicnn train --device cuda-sim --label-smoothing 0.1` once died in backward
    (arithmetic on the loss made a numpy scalar the CUDA glue refused)."""
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("train", "--device", device, "--label-smoothing", "0.1",
                                   "--epochs", "1", "--synthetic-size", "16", "--image-size", "16",
                                   "--batch-size", "4", "--no-figures", "--quiet", "--out", out)
    assert code == 0, stderr
    assert "Traceback" not in stdout + stderr
    m = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in m["epochs"]] == [1]
    for key in ("train_loss", "val_loss"):
        assert math.isfinite(m["epochs"][0][key]) and m["epochs"][0][key] > 0, key
    assert 0 <= m["test"]["accuracy"] <= 1
    _finite_numbers(m, "metrics.json")


def test_cuda_device_without_gpu_is_a_clear_error():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot be exercised")
    with pytest.raises(Exception) as info:
        minicnn.tensor(np.ones(3, np.float32), device="cuda")
    assert "cuda" in str(info.value) and "GPU" in str(info.value)
