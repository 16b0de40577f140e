"""nn.init as PyTorch's: the same gains, bounds and spreads, drawn from minicnn's generator."""
import math

import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.nn import init

torch = pytest.importorskip("torch", reason="compared with torch.nn.init")

NONLINEARITIES = ["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


@pytest.mark.parametrize("name", NONLINEARITIES)
def test_calculate_gain_is_torchs(name):
    assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    if name == "leaky_relu":
        assert init.calculate_gain(name, 0.2) == pytest.approx(
            torch.nn.init.calculate_gain(name, 0.2))


def _param(shape, device="cpu"):
    return nn.Parameter(np.zeros(shape, np.float32), device=device)


# (minicnn fn, torch fn, kwargs, "uniform" | "normal")
CASES = {
    "kaiming_uniform fan_in": (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_,
                               dict(a=0.0, nonlinearity="relu"), "uniform"),
    "kaiming_uniform fan_out": (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_,
                                dict(mode="fan_out", nonlinearity="relu"), "uniform"),
    "kaiming_normal": (init.kaiming_normal_, torch.nn.init.kaiming_normal_,
                       dict(nonlinearity="relu"), "normal"),
    "kaiming_normal fan_out": (init.kaiming_normal_, torch.nn.init.kaiming_normal_,
                               dict(mode="fan_out", a=0.1), "normal"),
    "xavier_uniform": (init.xavier_uniform_, torch.nn.init.xavier_uniform_, dict(gain=2.0),
                       "uniform"),
    "xavier_normal": (init.xavier_normal_, torch.nn.init.xavier_normal_, dict(gain=0.5),
                      "normal"),
    "normal": (init.normal_, torch.nn.init.normal_, dict(mean=0.3, std=0.2), "normal"),
    "uniform": (init.uniform_, torch.nn.init.uniform_, dict(a=-0.4, b=0.1), "uniform"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_init_draws_have_torchs_range_and_spread(backend, name):
    ours_fn, torch_fn, kwargs, kind = CASES[name]
    shape = (64, 32, 3, 3)
    minicnn.manual_seed(0)
    ours = ours_fn(_param(shape, backend), **kwargs).numpy().astype(np.float64)
    torch.manual_seed(0)
    theirs = torch_fn(torch.empty(shape), **kwargs).numpy().astype(np.float64)
    n = ours.size
    # the mean and std of n draws agree within a few standard errors
    se = theirs.std() / math.sqrt(n)
    assert abs(ours.mean() - theirs.mean()) < 6 * se + 1e-7
    assert abs(ours.std() - theirs.std()) < 0.03 * theirs.std()
    if kind == "uniform":
        lo, hi = theirs.min(), theirs.max()
        span = hi - lo
        assert ours.min() >= lo - 0.01 * span and ours.max() <= hi + 0.01 * span


def test_constant_ones_zeros_fill_in_place_and_repeat_with_the_seed():
    p = _param((3, 4))
    assert init.constant_(p, 0.25) is p and np.all(p.numpy() == 0.25)
    assert np.all(init.ones_(p).numpy() == 1) and np.all(init.zeros_(p).numpy() == 0)
    minicnn.manual_seed(5)
    a = init.kaiming_normal_(_param((8, 8))).numpy().copy()
    minicnn.manual_seed(5)
    assert np.array_equal(a, init.kaiming_normal_(_param((8, 8))).numpy())


def test_bad_init_arguments_are_named():
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(_param((3, 4)), mode="fan_both")
    with pytest.raises(ValueError, match="swish"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="2 dimensions"):
        init.xavier_uniform_(_param((3,)))
