"""kernels/cpu/conv_direct.py: the 3x3 stride-1 kernels and the ones fused with the
2x2 max-pool, against float64 numpy written from the formulas (and pool.py's rule).

Shapes: odd and even planes (7, 28, 29 and rectangles), planes of several flat
runs (70 rows), one and three input channels, batches smaller than the share count
(filters are then split between shares), float32 and float64; integer-valued
inputs make every sum exact, so ties between window taps are real ties.
"""
import numpy as np
import pytest

from minicnn.kernels.cpu import conv_direct as cd
from minicnn.kernels.cpu import pool

DTYPES = [np.float32, np.float64]
# (N, C, Ho, Wo): the conv output plane; the input is padded to (Ho+2, Wo+2)
SHAPES = [(3, 1, 7, 7), (2, 1, 28, 28), (2, 3, 29, 29), (1, 1, 7, 8), (3, 3, 8, 7),
          (1, 1, 70, 61), (2, 3, 70, 33), (2, 1, 1, 3), (1, 1, 3, 1)]
TOL = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.fixture(params=[1, 2, 3], ids=lambda s: f"{s}shares")
def shares(request, monkeypatch):
    """Run the kernels in 1, 2 and 3 shares, whatever the machine's core count."""
    monkeypatch.setattr(cd.numba, "get_num_threads", lambda: request.param)
    return request.param


def _case(shape, dtype, seed, integers, F=4):
    """xp (N,C,Ho+2,Wo+2) zero-padded input, w (F,C,3,3), b (F,)."""
    N, C, Ho, Wo = shape
    rng = np.random.default_rng(seed)
    draw = (lambda size: rng.integers(-3, 4, size)) if integers else rng.standard_normal
    xp = np.zeros((N, C, Ho + 2, Wo + 2), dtype)
    xp[:, :, 1:-1, 1:-1] = draw((N, C, Ho, Wo))
    return xp, draw((F, C, 3, 3)).astype(dtype), draw(F).astype(dtype)


def conv_ref(xp, w, b):
    """z[n,f,i,j] = b[f] + sum_c sum_{p,q} w[f,c,p,q] * xp[n,c,i+p,j+q], in float64; also the
    same sum of absolute values (the size a rounding error is measured against)."""
    N, C, Hp, Wp = xp.shape
    Ho, Wo = Hp - 2, Wp - 2
    x, k = xp.astype(np.float64), w.astype(np.float64)
    z = np.broadcast_to(b.astype(np.float64)[None, :, None, None], (N, len(b), Ho, Wo)).copy()
    size = np.broadcast_to(np.abs(b.astype(np.float64))[None, :, None, None], z.shape).copy()
    for p in range(3):
        for q in range(3):
            win = x[:, :, p:p + Ho, q:q + Wo]
            z += np.einsum("fc,ncij->nfij", k[:, :, p, q], win)
            size += np.einsum("fc,ncij->nfij", np.abs(k[:, :, p, q]), np.abs(win))
    return z, size


def weight_ref(xp, gz):
    """gw[f,c,p,q] = sum_{n,i,j} gz[n,f,i,j] * xp[n,c,i+p,j+q], gb[f] = sum gz, float64; and the
    sums of absolute values."""
    Ho, Wo = gz.shape[2:]
    x, g = xp.astype(np.float64), gz.astype(np.float64)
    gw = np.empty((gz.shape[1], xp.shape[1], 3, 3))
    size = np.empty_like(gw)
    for p in range(3):
        for q in range(3):
            win = x[:, :, p:p + Ho, q:q + Wo]
            gw[:, :, p, q] = np.einsum("nfij,ncij->fc", g, win)
            size[:, :, p, q] = np.einsum("nfij,ncij->fc", np.abs(g), np.abs(win))
    return gw, g.sum(axis=(0, 2, 3)), size, np.abs(g).sum(axis=(0, 2, 3))


def pool_ref(z):
    """2x2 stride-2 max-pool (floor mode) of z (N,F,Ho,Wo): (max, flat index h*Wo + w of the
    first maximum in row-major window order; a NaN wins, as pool.py and PyTorch)."""
    Ho, Wo = z.shape[2:]
    Ho2, Wo2 = Ho // 2, Wo // 2
    a = np.arange(Ho2)[:, None] * 2 * Wo + np.arange(Wo2)[None, :] * 2
    best = arg = None
    for dh, dw in ((0, 0), (0, 1), (1, 0), (1, 1)):
        v = z[:, :, dh:2 * Ho2:2, dw:2 * Wo2:2]
        at = np.broadcast_to(a + dh * Wo + dw, v.shape)
        if best is None:
            best, arg = v.copy(), at.copy()
            continue
        take = (v > best) | np.isnan(v)
        best, arg = np.where(take, v, best), np.where(take, at, arg)
    return best, arg


def scatter_ref(gyp, yp, idx, Ho, Wo):
    """gz (N,F,Ho,Wo): gyp placed at idx where yp > 0, 0 elsewhere (the backward of the
    pool and the ReLU)."""
    N, F = gyp.shape[:2]
    gz = np.zeros((N * F, Ho * Wo), np.float64)
    rows = np.repeat(np.arange(N * F), gyp[0, 0].size)
    gz[rows, idx.reshape(-1)] = np.where(yp > 0, gyp, 0).reshape(-1)
    return gz.reshape(N, F, Ho, Wo)


def assert_close(got, ref, size, dtype, what):
    err = np.abs(got.astype(np.float64) - ref)
    bound = TOL[dtype] * (size + 1)
    assert np.all(err <= bound), f"{what}: max error {err.max()} over bound at {np.argmax(err - bound)}"


# ----------------------------------------------------------------------------- unfused kernels

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(shape, dtype, shares):
    xp, w, b = _case(shape, dtype, seed=sum(shape), integers=False)
    z, size = conv_ref(xp, w, b)
    for relu in (False, True):
        y = np.full(z.shape, np.nan, dtype)
        cd.conv3x3_forward(xp, w, b, relu, y)
        assert_close(y, np.maximum(z, 0) if relu else z, size, dtype, f"relu={relu}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_weight_matches_reference(shape, dtype, shares):
    xp, w, b = _case(shape, dtype, seed=sum(shape) + 1, integers=False)
    z, _ = conv_ref(xp, w, b)
    gy = np.random.default_rng(7).standard_normal(z.shape).astype(dtype)
    relu_y = np.maximum(z, 0).astype(dtype)
    for masked in (False, True):
        gw, gb = np.full(w.shape, np.nan, dtype), np.full(len(b), np.nan, dtype)
        cd.conv3x3_weight(xp, gy, relu_y if masked else np.empty((0, 0, 0, 0), dtype), gw, gb)
        gw_ref, gb_ref, w_size, b_size = weight_ref(xp, np.where(relu_y > 0, gy, 0) if masked else gy)
        assert_close(gw, gw_ref, w_size, dtype, f"gw masked={masked}")
        assert_close(gb, gb_ref, b_size, dtype, f"gb masked={masked}")


def _weight(fn, S, monkeypatch, *args):
    monkeypatch.setattr(cd.numba, "get_num_threads", lambda: S)
    xp, gy = args[0], args[1]
    gw = np.empty((gy.shape[1], xp.shape[1], 3, 3), xp.dtype)
    gb = np.empty(gy.shape[1], xp.dtype)
    fn(*args, gw, gb)
    return gw, gb


@pytest.mark.parametrize("N", [1, 5])
def test_weight_gradients_do_not_depend_on_the_share_count(N, monkeypatch):
    # each image's sums are made whole by one share and added up in image order:
    # the same bits from any number of shares
    xp, w, b = _case((N, 1, 29, 28), np.float32, seed=3, integers=False, F=6)
    y = np.empty((N, 6, 29, 28), np.float32)
    cd.conv3x3_forward(xp, w, b, True, y)
    gy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    yp = np.empty((N, 6, 14, 14), np.float32)
    idx = np.empty(yp.shape, np.int32)
    cd.conv3x3_relu_pool_forward(xp, w, b, yp, idx)
    gyp = gy[:, :, :14, :14].copy()
    for fn, args in ((cd.conv3x3_weight, (xp, gy, y)),
                     (cd.conv3x3_relu_pool_weight, (xp, gyp, yp, idx))):
        first = _weight(fn, 1, monkeypatch, *args)
        for S in (2, 3, 7):
            again = _weight(fn, S, monkeypatch, *args)
            assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1]), \
                f"{fn.__name__}: {S} shares differ from 1"


# ----------------------------------------------------------------------------- fused with the pool

POOL_SHAPES = [(3, 1, 7, 7), (2, 1, 28, 28), (2, 3, 29, 29), (2, 1, 29, 28), (1, 3, 28, 29),
               (1, 1, 70, 61), (2, 3, 71, 34), (2, 1, 1, 5), (1, 1, 2, 2), (1, 3, 3, 3)]


def _pooled(xp, w, b):
    N, F = xp.shape[0], w.shape[0]
    Ho, Wo = xp.shape[2] - 2, xp.shape[3] - 2
    yp = np.full((N, F, Ho // 2, Wo // 2), np.nan, xp.dtype)
    idx = np.full(yp.shape, -7, np.int32)
    cd.conv3x3_relu_pool_forward(xp, w, b, yp, idx)
    return yp, idx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_pool_forward_matches_the_unfused_composition(shape, dtype, shares):
    # integer inputs: every z is exact, ties between taps are real, and some windows
    # (the filter with a very negative bias) are all negative
    xp, w, b = _case(shape, dtype, seed=sum(shape) + 2, integers=True)
    b[0] = -1000
    z, _ = conv_ref(xp, w, b)
    best, arg = pool_ref(z)
    yp, idx = _pooled(xp, w, b)
    assert np.array_equal(yp, np.maximum(best, 0).astype(dtype))
    assert np.array_equal(idx, arg)                 # the first max of z, before the ReLU
    assert yp.size == 0 or np.all(yp[:, 0] == 0)
    # and pool.py's own path over relu(z) agrees wherever the maximum is positive
    p_y, p_idx = pool.max_pool2d_forward(np.maximum(z, 0).astype(dtype), (2, 2), (2, 2), (0, 0))
    assert np.array_equal(yp, p_y)
    assert np.array_equal(np.where(yp > 0, idx, 0), np.where(yp > 0, p_idx, 0))
    if yp.size >= 16:                               # the case has ties to decide
        assert np.any(_tied(z))


def _tied(z):
    """True for each 2x2 window of z whose maximum occurs more than once."""
    Ho2, Wo2 = z.shape[2] // 2, z.shape[3] // 2
    taps = np.stack([z[:, :, dh:2 * Ho2:2, dw:2 * Wo2:2] for dh in (0, 1) for dw in (0, 1)])
    return (taps == taps.max(axis=0)).sum(axis=0) > 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 29, 29), (1, 1, 70, 61)], ids=str)
def test_pool_forward_random_values(shape, dtype, shares):
    xp, w, b = _case(shape, dtype, seed=11, integers=False)
    z, size = conv_ref(xp, w, b)
    best, arg = pool_ref(z)
    yp, idx = _pooled(xp, w, b)
    assert_close(yp, np.maximum(best, 0), pool_ref(size)[0], dtype, "yp")
    # the index points at a maximum of its window (near-ties may round either way)
    flat = z.reshape(z.shape[0], z.shape[1], -1)
    at = np.take_along_axis(flat, idx.reshape(*idx.shape[:2], -1).astype(np.int64), axis=2)
    assert_close(at.reshape(best.shape), best, pool_ref(size)[0], dtype, "z at idx")
    assert np.mean(idx == arg) > 0.99


def test_pool_forward_nan_wins_as_in_pool_py():
    xp, w, b = _case((1, 1, 12, 12), np.float64, seed=5, integers=True)
    xp[0, 0, 4, 5] = np.nan                         # makes a 3x3 patch of z NaN
    xp[0, 0, 9, 9] = np.nan
    z, _ = conv_ref(xp, w, b)
    best, arg = pool_ref(z)
    yp, idx = _pooled(xp, w, b)
    assert np.isnan(yp).sum() == np.isnan(best).sum() > 0
    assert np.array_equal(idx, arg)
    p_y, p_idx = pool.max_pool2d_forward(z, (2, 2), (2, 2), (0, 0))
    assert np.array_equal(idx, p_idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_pool_weight_matches_the_unfused_composition(shape, dtype, shares):
    xp, w, b = _case(shape, dtype, seed=sum(shape) + 3, integers=True)
    b[0] = -1000                                    # all-negative windows: no gradient for filter 0
    yp, idx = _pooled(xp, w, b)
    gyp = np.random.default_rng(9).standard_normal(yp.shape).astype(dtype)
    gw, gb = np.full(w.shape, np.nan, dtype), np.full(len(b), np.nan, dtype)
    cd.conv3x3_relu_pool_weight(xp, gyp, yp, idx, gw, gb)
    Ho, Wo = shape[2:]
    gz = scatter_ref(gyp, yp, idx, Ho, Wo)
    gw_ref, gb_ref, w_size, b_size = weight_ref(xp, gz)
    assert_close(gw, gw_ref, w_size, dtype, "gw")
    assert_close(gb, gb_ref, b_size, dtype, "gb")
    assert np.all(gw[0] == 0) and gb[0] == 0
    # the unfused engine path: pool.py's backward, then conv3x3_weight through the ReLU
    z, _ = conv_ref(xp, w, b)
    y = np.maximum(z, 0).astype(dtype)
    if yp.size:
        _, p_idx = pool.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0))
        gy = pool.max_pool2d_backward(gyp, p_idx, y.shape)
    else:
        gy = np.zeros(y.shape, dtype)
    gw2, gb2 = np.empty_like(gw), np.empty_like(gb)
    cd.conv3x3_weight(xp, gy, y, gw2, gb2)
    assert_close(gw, gw2.astype(np.float64), w_size, dtype, "gw against the unfused path")
    assert_close(gb, gb2.astype(np.float64), b_size, dtype, "gb against the unfused path")


# ----------------------------------------------------------------------------- bad input

def test_pool_weight_rejects_an_index_outside_its_window():
    xp, w, b = _case((2, 1, 8, 8), np.float32, seed=1, integers=False)
    yp, idx = _pooled(xp, w, b)
    yp[:] = 1                                       # every window passes its gradient on
    idx[1, 2, 3, 1] += 2 * 8                        # two rows down: the next window's
    gw, gb = np.empty(w.shape, np.float32), np.empty(4, np.float32)
    with pytest.raises(ValueError, match="1 entries of idx lie outside their 2x2 window"):
        cd.conv3x3_relu_pool_weight(xp, np.ones_like(yp), yp, idx, gw, gb)


def test_bad_shapes_and_dtypes_are_named():
    xp, w, b = _case((2, 1, 8, 8), np.float32, seed=1, integers=False)
    y = np.empty((2, 4, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"y must be \(2, 4, 8, 8\)"):
        cd.conv3x3_forward(xp, w, b, True, y[:, :, :7])
    with pytest.raises(ValueError, match=r"w must be \(F, 1, 3, 3\)"):
        cd.conv3x3_forward(xp, w[:, :, :2], b, True, y)
    with pytest.raises(ValueError, match="w is float64, xp is float32"):
        cd.conv3x3_forward(xp, w.astype(np.float64), b, True, y)
    with pytest.raises(ValueError, match="b must be a C-contiguous float32 array of shape"):
        cd.conv3x3_forward(xp, w, b[:3], True, y)
    yp = np.empty((2, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="idx must be a C-contiguous int32"):
        cd.conv3x3_relu_pool_forward(xp, w, b, yp, np.empty(yp.shape, np.int64))
    with pytest.raises(ValueError, match=r"yp must be \(2, 4, 4, 4\)"):
        cd.conv3x3_relu_pool_forward(xp, w, b, y, np.empty(y.shape, np.int32))
    with pytest.raises(ValueError, match="relu_y must be"):
        cd.conv3x3_weight(xp, y, y[:1], np.empty(w.shape, np.float32), np.empty(4, np.float32))


def test_float32_sums_hold_at_the_training_size():
    # 64 images of 28x28, 16 filters: each gw sums 50,176 products, in float32 runs of
    # 838 then in float64; every result stays within float32 rounding of float64
    xp, w, b = _case((64, 1, 28, 28), np.float32, seed=21, integers=False, F=16)
    z, size = conv_ref(xp, w, b)
    y = np.empty(z.shape, np.float32)
    cd.conv3x3_forward(xp, w, b, True, y)
    assert_close(y, np.maximum(z, 0), size, np.float32, "y")
    gy = np.random.default_rng(22).standard_normal(z.shape).astype(np.float32)
    gw, gb = np.empty(w.shape, np.float32), np.empty(16, np.float32)
    cd.conv3x3_weight(xp, gy, y, gw, gb)
    gw_ref, gb_ref, w_size, b_size = weight_ref(xp, np.where(y > 0, gy, 0))
    assert_close(gw, gw_ref, w_size, np.float32, "gw")
    assert_close(gb, gb_ref, b_size, np.float32, "gb")
    yp, idx = _pooled(xp, w, b)
    gyp = gy[:, :, :14, :14].copy()
    cd.conv3x3_relu_pool_weight(xp, gyp, yp, idx, gw, gb)
    gw_ref, gb_ref, w_size, b_size = weight_ref(xp, scatter_ref(gyp, yp, idx, 28, 28))
    assert_close(gw, gw_ref, w_size, np.float32, "pooled gw")
    assert_close(gb, gb_ref, b_size, np.float32, "pooled gb")
