"""Helpers for the tests that compare minicnn with PyTorch (test_nn, test_optim, test_twin).

    assert_close(got, ref, atol, rtol, what)   NaN is always a failure
    train_step_both(net, ref, opt, topt, x, y, device)
                                               one cross-entropy step of each twin

Unlike minicnn.testing.assert_close, a NaN fails even against a NaN: a reference
from torch never holds one on purpose.
"""
import numpy as np
import torch

import minicnn


def assert_close(got, ref, atol, rtol, what):
    """|got - ref| <= atol + rtol*|ref| everywhere; on failure name the worst element."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    err = np.abs(got - ref)
    tol = np.abs(ref)
    tol *= rtol  # in place: some arrays here hold 37 million numbers
    tol += atol
    bad = ~(err <= tol)  # NaN counts as bad
    if bad.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(bad, np.nan_to_num(err / tol, nan=np.inf, posinf=np.inf), 0.0)
        i = np.unravel_index(np.argmax(ratio), ratio.shape)
        raise AssertionError(f"{what}: worst element {i}: got {got[i]!r}, expected {ref[i]!r} "
                             f"(|diff| {err[i]:.3e} > atol {atol} + rtol {rtol} * |ref| = {tol[i]:.3e})")


def train_step_both(net, ref, opt, topt, x, y, device="cpu"):
    """One training step (cross-entropy, backward, optimiser step) of a minicnn model
    and of its torch twin on the same batch: x (N, C, H, W) float32, y (N,) int64
    numpy arrays. Returns (minicnn's loss, torch's loss) as floats."""
    opt.zero_grad()
    loss = minicnn.functional.cross_entropy(net(minicnn.tensor(x, device=device)),
                                            minicnn.tensor(y, device=device))
    loss.backward()
    opt.step()
    topt.zero_grad()
    tloss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
    tloss.backward()
    topt.step()
    return loss.item(), tloss.item()
