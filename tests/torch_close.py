"""assert_close for comparisons with PyTorch's results, where NaN is always a failure.

Unlike minicnn.testing.assert_close, a NaN fails even against a NaN: a reference
from torch never holds one on purpose. Used by test_nn.py and test_optim.py.
"""
import numpy as np


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
