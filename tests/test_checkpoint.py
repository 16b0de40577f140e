"""Checkpoints: round trip, atomic writes, and clear errors for damaged or mismatched files."""
import os

import numpy as np
import pytest

import minicnn
from minicnn.xray import checkpoint as C
from minicnn import functional as F
from minicnn.errors import UserError
from minicnn.nn.models import ChestXrayCNN
from minicnn.optim import Adam, CosineAnnealingLR


def _batch(image_size=8, seed=0, device="cpu"):
    x = np.random.default_rng(seed).random((4, 1, image_size, image_size))
    return minicnn.tensor(x, device=device), minicnn.tensor([0, 1, 1, 0], device=device)


def _step(model, opt, sched, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def _trained(image_size=8, device="cpu"):
    """A ChestXrayCNN, its Adam and cosine schedule, after one step on `device`."""
    minicnn.manual_seed(0)
    model = ChestXrayCNN(image_size=image_size).to(device)
    opt = Adam(model.parameters(), lr=1e-3)
    sched = CosineAnnealingLR(opt, T_max=4)
    _step(model, opt, sched, *_batch(image_size, device=device))
    return model, opt, sched


def _save(path, model, opt=None, sched=None, **kw):
    C.save_checkpoint(path, model, norm_mean=[0.4], norm_std=[0.2], classes=["NORMAL", "PNEUMONIA"],
                      threshold=0.37, optimizer=opt, scheduler=sched, epoch=3, batch=2,
                      train_config={"lr": 0.001}, history=[{"epoch": 1}], **kw)


def test_round_trip(tmp_path, backend):
    model, opt, sched = _trained(device=backend)
    path = tmp_path / "c.npz"
    _save(path, model, opt, sched)
    with np.load(path, allow_pickle=False) as z:  # plain arrays only: no pickle anywhere
        assert str(z["model_name"]) == "chestxray"
    ck = C.load_checkpoint(path)
    assert ck.classes == ["NORMAL", "PNEUMONIA"] and ck.positive_class == 1
    assert ck.image_size == (8, 8) and ck.channels == 1 and ck.threshold == 0.37
    assert (ck.epoch, ck.batch) == (3, 2)
    assert ck.train_config == {"lr": 0.001} and ck.history == [{"epoch": 1}]
    np.testing.assert_array_equal(ck.norm_mean, np.float32([0.4]))
    rebuilt = ck.build_model()
    for name, value in model.state_dict().items():
        assert np.array_equal(rebuilt.state_dict()[name], value), f"{name} changed on the way"
    opt2 = Adam(rebuilt.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    assert opt2.state[0]["step"] == 1
    assert np.array_equal(opt2.state[0]["exp_avg"], opt.state[0]["exp_avg"])
    sched2 = CosineAnnealingLR(opt2, T_max=4)
    sched2.load_state_dict(ck.scheduler_state)
    assert sched2.last_epoch == 1 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_a_model_trained_on_a_device_saves_and_resumes_identically(tmp_path, backend):
    """Trained a step on `backend`, saved, loaded back onto `backend`: the same outputs to
    the bit, and a further step lands on exactly the weights of the uninterrupted run; the
    step's gradients also equal those of the same step on the cpu."""
    model, opt, sched = _trained(device=backend)
    path = tmp_path / "c.npz"
    _save(path, model, opt, sched)
    ck = C.load_checkpoint(path)
    rebuilt = ck.build_model().to(backend)
    opt2 = Adam(rebuilt.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    sched2 = CosineAnnealingLR(opt2, T_max=4)
    sched2.load_state_dict(ck.scheduler_state)
    assert rebuilt.device == backend and all(p.device == backend for p in rebuilt.parameters())

    x, y = _batch(seed=1, device=backend)
    model.eval(), rebuilt.eval()
    with minicnn.no_grad():
        assert np.array_equal(rebuilt(x).numpy(), model(x).numpy()), "outputs after loading"
    model.train(), rebuilt.train()
    assert _step(rebuilt, opt2, sched2, x, y) == _step(model, opt, sched, x, y)
    for name, value in model.state_dict().items():
        assert np.array_equal(rebuilt.state_dict()[name], value), f"{name} after a resumed step"
    state = opt.state_dict()
    for key, value in opt2.state_dict().items():
        assert np.array_equal(np.asarray(value), np.asarray(state[key])), f"optimiser {key}"

    from torch_compare import assert_close, numba_cpu, on_numba_cpu
    if backend != "cpu" or not on_numba_cpu():
        # the step's gradients, compared where they are well conditioned (Adam's first step,
        # lr * g / (|g| + eps), turns a rounding difference in a g near 0 into up to lr)
        with numba_cpu():
            cpu_model, _, _ = _trained(device="cpu")
        on_cpu = dict(cpu_model.named_parameters())
        first, _, _ = _trained(device=backend)
        for name, p in first.named_parameters():
            assert p.grad.device == backend, name
            assert_close(p.grad.numpy(), on_cpu[name].grad.numpy(), 1e-5, 1e-4,
                         f"gradient of {name}: one step on {backend} vs cpu")


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt, sched = _trained()
    path = tmp_path / "c.npz"
    _save(path, model, opt, sched)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(C.np, "savez", disk_full)
    with pytest.raises(C.CheckpointError) as info:
        _save(path, model, opt, sched)
    message = str(info.value)
    assert str(path) in message and "No space left" in message and "unchanged" in message
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"], "the temporary file must be cleaned up"


def test_unwritable_folder_is_a_clear_error(tmp_path):
    model, _, _ = _trained()
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(C.CheckpointError, match="could not write the checkpoint"):
        _save(blocker / "c.npz", model)


def test_truncated_checkpoint_names_the_file(tmp_path):
    model, opt, sched = _trained()
    path = tmp_path / "c.npz"
    _save(path, model, opt, sched)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(C.CheckpointError, match="c.npz: the checkpoint is damaged or truncated"):
        C.load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(C.CheckpointError, match="c.npz"):
        C.load_checkpoint(path)
    with pytest.raises(C.CheckpointError, match="no such checkpoint"):
        C.load_checkpoint(tmp_path / "missing.npz")


def test_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "data.npz", train_images=np.zeros((1, 2, 2)))
    with pytest.raises(C.CheckpointError, match="data.npz: not a minicnn checkpoint"):
        C.load_checkpoint(tmp_path / "data.npz")


def test_checkpoint_of_another_architecture(tmp_path):
    model, _, _ = _trained()
    path = tmp_path / "c.npz"
    _save(path, model)
    ck = C.load_checkpoint(path)
    with pytest.raises(C.CheckpointError, match="holds a chestxray model.*not a alexnet"):
        ck.check_matches("alexnet")
    with pytest.raises(C.CheckpointError, match="image_size"):
        ck.check_matches("chestxray", dict(model.config(), image_size=[16, 16]))
    # weights that do not fit the architecture the file names
    arrays = dict(ck.arrays)
    arrays["model_config"] = np.array('{"in_channels": 1, "num_classes": 2, "image_size": [16, 16], '
                                      '"dropout": 0.0}')
    C.write_npz_atomic(path, arrays)
    with pytest.raises(C.CheckpointError, match="c.npz: the saved weights do not fit") as info:
        C.load_checkpoint(path).build_model()
    assert isinstance(info.value, UserError)
