"""Helpers for checking numbers: comparisons that explain themselves, numerical gradients.

    assert_close(actual, expected, atol, rtol, name)   fails naming the worst element
    rel_error(a, b)                                     max |a - b| / max(|a|, |b|) over all elements
    numerical_grad(f, x, eps)                           central differences of a scalar f

Used by the tests, the lessons and the exercise grader; plain numpy, no test framework.
"""
import numpy as np


def _as_numpy(a):
    """numpy array of a numpy array, a cupy array, a scalar or anything with .numpy()."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):   # cupy
        a = a.get()
    elif hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        a = a.detach().numpy() if hasattr(a, "detach") else a.numpy()
    return np.asarray(a)


def assert_close(actual, expected, atol=1e-6, rtol=1e-5, name="value"):
    """Fail unless |actual - expected| <= atol + rtol * |expected| everywhere.

    atol is a number, or an array broadcast against expected (a tolerance per element).

    Shapes must match exactly. NaN matches NaN and an infinity matches the same
    infinity. On failure the message names the worst element (the one that uses the
    most of its tolerance), both values there, and how many elements failed.
    """
    a = _as_numpy(actual)
    e = _as_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected shape {e.shape}")
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a64 - e64)
    same = (a64 == e64) | (np.isnan(a64) & np.isnan(e64))
    err = np.where(same, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)      # NaN against a number is a failure
    with np.errstate(invalid="ignore", over="ignore"):
        tol = atol + rtol * np.abs(np.where(np.isfinite(e64), e64, 0.0))
    bad = err > tol
    if bad.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(bad, err / tol, 0.0)
        worst = np.unravel_index(int(np.argmax(ratio)), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements differ beyond atol="
            f"{f'{atol:g}' if np.ndim(atol) == 0 else '(per element)'} + "
            f"rtol={rtol:g}*|expected|; worst at index {tuple(int(i) for i in worst)}: "
            f"actual {float(a64[worst])!r}, expected {float(e64[worst])!r}, |diff| {err[worst]:.3e} "
            f"(tolerance there {tol[worst]:.3e})")


def rel_error(a, b):
    """max |a - b| / max(max |a|, max |b|): the worst difference, relative to the largest
    value (0 when both are all zeros).

    Measured against the largest value rather than element by element, so that a
    gradient element that is tiny by cancellation does not turn the rounding of the
    central differences into a large "relative" error; a wrong formula still shows as
    an error of order 1.
    """
    a = _as_numpy(a).astype(np.float64)
    b = _as_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes {a.shape} and {b.shape} differ")
    if a.size == 0:
        return 0.0
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
    return float(np.abs(a - b).max()) / scale if scale > 0 else 0.0


def numerical_grad(f, x, eps=1e-6):
    """d f(x) / dx by central differences: (f(x + eps e_k) - f(x - eps e_k)) / (2 eps).

    f takes the array x (changed in place and restored) and returns a scalar; use
    float64 for x, since in float32 the differences drown in rounding. Returns an
    array shaped like x.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError("numerical_grad: x must be a numpy array (it is perturbed in place)")
    if not x.flags.c_contiguous:
        raise ValueError("numerical_grad: x must be C-contiguous (it is perturbed in place)")
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    g = grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = float(f(x))
        flat[k] = old - eps
        down = float(f(x))
        flat[k] = old
        g[k] = (up - down) / (2 * eps)
    return grad
