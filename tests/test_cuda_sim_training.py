"""A whole ChestXrayCNN training step through the CUDA kernels (on the CPU emulator)
equals the same step through the numba CPU kernels."""
import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn.nn.models import ChestXrayCNN
from minicnn.optim import SGD, Adam
from minicnn.testing import assert_close

pytest.importorskip("minicnn.backends.cuda_sim", reason="the CUDA emulator needs g++")


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
def test_training_steps_on_cuda_sim_equal_cpu(make_opt):
    cpu_losses, cpu_state = _train("cpu", make_opt, steps=3)
    sim_losses, sim_state = _train("cuda-sim", make_opt, steps=3)
    assert_close(np.array(sim_losses), np.array(cpu_losses), atol=1e-5, rtol=1e-4, name="losses")
    assert cpu_state.keys() == sim_state.keys()
    for key in cpu_state:
        assert_close(sim_state[key], cpu_state[key], atol=1e-5, rtol=1e-4, name=key)
    # the step really moved the weights, so equality is not of two untouched copies
    start = _model_on("cpu", 3).state_dict()
    assert any(np.abs(cpu_state[k] - start[k]).max() > 1e-4 for k in cpu_state)


def test_cuda_device_without_gpu_is_a_clear_error():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot be exercised")
    with pytest.raises(Exception) as info:
        minicnn.tensor(np.ones(3, np.float32), device="cuda")
    assert "cuda" in str(info.value) and "GPU" in str(info.value)
