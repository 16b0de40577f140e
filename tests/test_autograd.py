"""The autograd engine: how gradients flow, accumulate, and are checked numerically.

Exact expectations are worked out by hand in each test (d(x*x)/dx = 2x, ...), and
each runs on every device (`backend`, tests/conftest.py). The central-difference
checks at the end hold every functional op, composed, to the definition of the
derivative, in float64, on both sets of cpu kernels (the CUDA kernels compute in
float32 only); the same graphs then run in float32 on every device against the cpu.
"""
import numpy as np
import pytest

import minicnn
import minicnn.functional as F

from torch_compare import assert_close


def leaf(values, dtype=np.float32, device="cpu"):
    return minicnn.tensor(np.asarray(values, dtype=dtype), requires_grad=True, dtype=dtype,
                          device=device)


def grad_of(t):
    """t.grad as a numpy array, after checking it lives where t does."""
    assert t.grad is not None, "no gradient"
    assert t.grad.device == t.device, f"gradient on {t.grad.device!r}, tensor on {t.device!r}"
    assert isinstance(t.grad.array, t.xp.ndarray), f"gradient is a {type(t.grad.array).__name__}"
    return t.grad.numpy()


def assert_equal(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if not np.allclose(got, want, rtol=1e-6, atol=1e-6):
        i = np.unravel_index(int(np.argmax(np.abs(got - want))), got.shape)
        raise AssertionError(f"{what}: at {i} got {got[i]!r}, expected {want[i]!r}")


# ----------------------------------------------------------------------------- accumulation

def test_node_used_twice_in_a_product(backend):
    x = leaf([1.0, -2.0, 3.0], device=backend)
    (x * x).sum().backward()
    assert_equal(grad_of(x), [2.0, -4.0, 6.0], "d sum(x*x)/dx = 2x")


def test_node_used_twice_in_a_sum(backend):
    x = leaf([1.0, -2.0, 3.0], device=backend)
    (x + x).sum().backward()
    assert_equal(grad_of(x), [2.0, 2.0, 2.0], "d sum(x+x)/dx = 2")


def test_diamond_graph(backend):
    """x -> a = 2x, b = 3x -> y = a*b + a = 6x^2 + 2x; dy/dx = 12x + 2."""
    x = leaf([0.5, -1.0, 2.0], device=backend)
    a = x * 2.0
    b = x * 3.0
    (a * b + a).sum().backward()
    assert_equal(grad_of(x), 12 * x.numpy() + 2, "diamond: 12x + 2")


def test_shared_intermediate_is_differentiated_once_per_use(backend):
    """h = exp(x) used three times: y = h*h + h -> dy/dx = (2h + 1) h."""
    x = leaf([0.1, -0.3], device=backend)
    h = x.exp()
    (h * h + h).sum().backward()
    hv = np.exp(x.numpy().astype(np.float64))
    assert_equal(grad_of(x), (2 * hv + 1) * hv, "shared node")
    assert h.grad is None, "a non-leaf keeps no .grad (only leaves do, as PyTorch)"


def test_broadcast_gradient_is_summed_back(backend):
    x = leaf(np.ones((3, 4)), device=backend)
    b = leaf([1.0, 2.0, 3.0, 4.0], device=backend)
    (x * b).sum().backward()
    assert_equal(grad_of(b), [3.0, 3.0, 3.0, 3.0], "b broadcast over 3 rows")
    assert_equal(grad_of(x), np.tile([1.0, 2.0, 3.0, 4.0], (3, 1)), "x")


def test_leaf_grads_accumulate_across_backward_calls(backend):
    x = leaf([1.0, 2.0], device=backend)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    assert_equal(grad_of(x), [3.0 + 2.0, 3.0 + 4.0], "3 then 2x, added up")
    x.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    assert_equal(grad_of(x), [3.0, 3.0], "after zero_grad")


def test_explicit_upstream_gradient(backend):
    x = leaf([[1.0, 2.0], [3.0, 4.0]], device=backend)
    y = x * x
    g = np.array([[1.0, 0.0], [-1.0, 2.0]], np.float32)
    y.backward(g)
    assert_equal(grad_of(x), 2 * x.numpy() * g, "2x * upstream")
    assert np.array_equal(g, [[1.0, 0.0], [-1.0, 2.0]]), "backward changed the caller's array"


def test_gradient_of_a_leaf_is_its_own_array(backend):
    """x.grad must not alias the upstream array: changing one must not change the other."""
    x = leaf([1.0, 2.0], device=backend)
    g = np.array([5.0, 6.0], np.float32)
    (x + 0.0).backward(g)
    g[0] = 100.0
    assert_equal(grad_of(x), [5.0, 6.0], "x.grad after the caller changed its array")


# ----------------------------------------------------------------------------- freed graphs

def test_second_backward_through_freed_graph_raises(backend):
    x = leaf([1.0, 2.0], device=backend)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward(backend):
    x = leaf([1.0, 2.0], device=backend)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert_equal(grad_of(x), [4.0, 8.0], "two passes of 2x")
    with pytest.raises(RuntimeError, match=r"already used"):
        y.backward()


def test_freed_graph_of_functional_op_raises(backend):
    x = minicnn.tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True, device=backend)
    y = F.max_pool2d(F.relu(x), 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"already used"):
        y.backward()


# ----------------------------------------------------------------------------- no_grad, detach

def test_no_grad_records_nothing(backend):
    x = leaf([1.0, 2.0], device=backend)
    with minicnn.no_grad():
        assert not minicnn.is_grad_enabled()
        y = x * 2.0 + 1.0
        z = F.relu(y)
    assert minicnn.is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t.is_leaf, "no_grad recorded a graph"
    with pytest.raises(RuntimeError, match="does not require grad"):
        z.sum().backward()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with minicnn.no_grad():
            1 / 0
    assert minicnn.is_grad_enabled()
    with minicnn.no_grad():
        with minicnn.no_grad():
            pass
        assert not minicnn.is_grad_enabled(), "inner no_grad turned grad back on"


def test_detach_cuts_the_graph(backend):
    x = leaf([1.0, -2.0], device=backend)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.array_equal(d.numpy(), x.numpy())
    (d * x).sum().backward()  # only the x factor is differentiated
    assert_equal(grad_of(x), [1.0, -2.0], "d(detach(x) * x)/dx = x")


def test_ops_on_constants_build_no_graph(backend):
    a = minicnn.tensor([1.0, 2.0], device=backend)
    b = a * 3.0 + a.exp()
    assert not b.requires_grad and b.is_leaf


def test_only_requested_inputs_get_gradients(backend):
    x = minicnn.tensor(np.ones((1, 2, 5, 5), np.float32), device=backend)
    w = minicnn.tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True, device=backend)
    F.conv2d(x, w).sum().backward()
    assert x.grad is None
    assert_equal(grad_of(w), np.full((3, 2, 3, 3), 9.0), "each tap sees 3x3 ones")


# ----------------------------------------------------------------------------- non-scalar root

def test_backward_on_non_scalar_needs_a_gradient(backend):
    y = leaf([1.0, 2.0], device=backend) * 2.0
    with pytest.raises(RuntimeError, match=r"\(2,\).*not a scalar"):
        y.backward()


def test_backward_on_one_element_tensor_of_any_rank(backend):
    x = leaf([[3.0]], device=backend)
    (x * x).backward()  # shape (1, 1), a single element: an implicit gradient of 1 is fine
    assert_equal(grad_of(x), [[6.0]], "2x")


# ----------------------------------------------------------------------------- deep graphs

def test_deep_chain_does_not_hit_the_recursion_limit(backend):
    import sys
    depth = max(2000, sys.getrecursionlimit() + 500)
    x = leaf([1.0, 2.0], device=backend)
    y = x
    for _ in range(depth):
        y = (y * 2.0 + 1.0) * 0.5  # exact in float32: dy/dx stays exactly 1
    y.sum().backward()
    assert_equal(grad_of(x), [1.0, 1.0], "a product of 2 * 0.5, depth times")


# ----------------------------------------------------------------------------- tensors

def test_tensor_copies_its_data(backend):
    a = np.ones(3, np.float32)
    t = minicnn.tensor(a, device=backend)
    a[0] = 5.0
    assert t.numpy()[0] == 1.0, "tensor() must copy, as torch.tensor (else steps leak out)"


def test_zero_dim_tensors_keep_their_shape(backend):
    assert minicnn.tensor(2.5, device=backend).shape == ()
    x = leaf([1.0, 2.0, 3.0], device=backend)
    y = x[1]
    assert y.shape == (), "x[1] of a 1-D tensor is 0-D, as numpy and PyTorch"
    (y * y).backward()
    assert_equal(grad_of(x), [0.0, 4.0, 0.0], "gradient of x[1]**2")


def test_cast_sends_gradient_back_in_the_input_dtype(backend):
    x = leaf([1.0, 2.0], device=backend)
    y = x.double()
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    assert_equal(grad_of(x), [2.0, 4.0], "2x")


def test_integer_tensors_cannot_require_grad(backend):
    with pytest.raises(TypeError, match="floating"):
        minicnn.tensor([1, 2], requires_grad=True, device=backend)


# ----------------------------------------------------------------------------- numerical checks

def numerical_grad(f, arrays, k, points, eps=1e-6):
    """Central differences of the scalar f(*arrays) with respect to arrays[k] at `points`."""
    a = arrays[k]
    grad = np.zeros(len(points))
    for j, i in enumerate(points):
        old = a[i]
        a[i] = old + eps
        up = f(*arrays)
        a[i] = old - eps
        down = f(*arrays)
        a[i] = old
        grad[j] = (up - down) / (2 * eps)
    return grad


def gradcheck(build, arrays, atol=1e-7, rtol=1e-5, name="expression", per_input=12):
    """build(*float64 tensors) -> scalar tensor; compare autograd with central differences.

    In float64 the central difference is exact to about eps^2 * f''' + 1e-16/eps, that is
    ~1e-10 here; the tolerance leaves room for that and nothing else. Each input is
    checked at `per_input` of its elements, drawn at random (two forward passes apiece).
    """
    def value(*raw):
        with minicnn.no_grad():
            ts = [minicnn.tensor(a, dtype=a.dtype) for a in raw]
            return float(build(*ts).item())

    tensors = [minicnn.tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating), dtype=a.dtype)
               for a in arrays]
    out = build(*tensors)
    assert out.dtype == np.float64, f"{name}: computed in {out.dtype}, not float64"
    out.backward()
    for k, (t, a) in enumerate(zip(tensors, arrays)):
        if not np.issubdtype(a.dtype, np.floating):
            continue
        assert t.grad is not None, f"{name}: input {k} got no gradient"
        assert t.grad.shape == a.shape, f"{name}: gradient of input {k} has shape {t.grad.shape}"
        assert t.grad.dtype == np.float64, f"{name}: gradient of input {k} is {t.grad.dtype}"
        every = list(np.ndindex(a.shape))
        points = [every[p] for p in np.random.default_rng(k).permutation(len(every))[:per_input]]
        want = numerical_grad(value, list(arrays), k, points)
        got = np.array([t.grad.numpy()[i] for i in points])
        ratio = np.abs(got - want) / (atol + rtol * np.abs(want))
        if (ratio > 1).any():
            j = int(np.argmax(ratio))
            raise AssertionError(f"{name}: gradient of input {k} at {points[j]}: autograd "
                                 f"{got[j]!r}, central difference {want[j]!r}")


def _rng(seed):
    return np.random.default_rng(seed)


def _like(t, values):
    """A constant with t's dtype and device."""
    return minicnn.tensor(np.asarray(values), dtype=t.dtype, device=t.device)


def graph_conv_pool_linear_loss():
    """conv (stride 2, padding 1) -> relu -> max pool -> flatten -> linear -> weighted CE."""
    r = _rng(0)
    x = r.standard_normal((2, 2, 7, 6))
    w = r.standard_normal((3, 2, 3, 2)) * 0.5
    b = r.standard_normal(3) * 0.1
    # conv out (2, 3, 4, 4) -> pool 2 -> (2, 3, 2, 2) -> 12 features
    w2 = r.standard_normal((4, 12)) * 0.3
    b2 = r.standard_normal(4) * 0.1
    target = np.array([1, 3])

    def build(x, w, b, w2, b2, t):
        h = F.max_pool2d(F.relu(F.conv2d(x, w, b, stride=2, padding=1)), 2)
        logits = F.linear(F.flatten(h), w2, b2)
        return F.cross_entropy(logits, t, weight=_like(x, [0.5, 1.0, 2.0, 1.5]))
    return build, [x, w, b, w2, b2, target]


def graph_avgpool_sigmoid_softmax():
    r = _rng(1)
    x = r.standard_normal((1, 3, 6, 9))
    w = r.standard_normal((2, 3, 2, 3)) * 0.5
    c = r.standard_normal((1, 2, 4, 2))  # conv (1, 2, 7, 4) -> pool (1, 2, 4, 2)

    def build(x, w, c):
        h = F.sigmoid(F.avg_pool2d(F.conv2d(x, w, stride=(1, 2), padding=(1, 0)), 3, 2, 1))
        s = F.softmax(h * 3.0, dim=1) * c + F.log_softmax(h, dim=2) * c
        return (s * s).sum()
    return build, [x, w, c]


def graph_batch_norm_training():
    r = _rng(2)
    x = r.standard_normal((3, 2, 3, 2))
    gamma, beta = r.standard_normal(2) + 1, r.standard_normal(2)
    c = r.standard_normal((3, 2, 3, 2))

    def build(x, gamma, beta):
        stats = [x.xp.zeros(2, x.dtype), x.xp.ones(2, x.dtype)]
        y = F.batch_norm(x, *stats, gamma, beta, training=True)
        return (y * _like(x, c)).sum() + (y * y).mean()
    return build, [x, gamma, beta]


def graph_tensor_ops():
    r = _rng(3)
    a = r.standard_normal((3, 4))
    b = r.uniform(0.5, 2.0, (4,))
    m = r.standard_normal((4, 2))

    def build(a, b, m):
        h = (a / b) @ m                              # broadcast divide, matmul
        h = h.exp() + (b ** 1.5).sum() - a[1:, ::2].abs().mean()
        return h.max(axis=1).sum() + (h.reshape(2, 3).transpose(0, 1) ** 2).mean() \
            + (b * b).log().sum()
    return build, [a, b, m]


GRAPHS = {"conv-pool-linear-CE": graph_conv_pool_linear_loss,
          "avgpool-sigmoid-softmax": graph_avgpool_sigmoid_softmax,
          "batch_norm": graph_batch_norm_training,
          "tensor ops": graph_tensor_ops}


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_gradcheck(cpu_kernels, graph):
    build, arrays = GRAPHS[graph]()
    gradcheck(build, arrays, name=graph)


def _value_and_grads(build, arrays, device, dtype):
    ts = [minicnn.tensor(a, dtype=dtype, requires_grad=True, device=device)
          if np.issubdtype(a.dtype, np.floating) else minicnn.tensor(a, device=device)
          for a in arrays]
    out = build(*ts)
    assert out.device == device and out.dtype == dtype and out.shape == ()
    out.backward()
    return out.item(), [grad_of(t) if t.requires_grad else None for t in ts]


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_gradcheck_graphs_in_float32_on_every_device(backend, graph):
    """The graphs checked above, in float32 on each device: the same value and gradients
    as the cpu in float64 (which the central differences vouch for), to float32 rounding."""
    build, arrays = GRAPHS[graph]()
    got, grads = _value_and_grads(build, arrays, backend, np.float32)
    minicnn.use_cpu_kernels("numba")   # the backend fixture puts the kernels back
    want, want_grads = _value_and_grads(build, arrays, "cpu", np.float64)
    assert_close(got, want, 1e-5, 1e-4, f"{graph} on {backend}: value")
    for k, (g, w) in enumerate(zip(grads, want_grads)):
        if w is not None:
            assert_close(g, w, 1e-5, 1e-4, f"{graph} on {backend}: gradient of input {k}")


# ----------------------------------------------------------------------------- randomness

def test_manual_seed_repeats_randn():
    minicnn.manual_seed(123)
    a = minicnn.randn(4, 5).numpy()
    b = minicnn.randn(4, 5).numpy()
    minicnn.manual_seed(123)
    c = minicnn.randn(4, 5).numpy()
    assert np.array_equal(a, c), "the same seed must give the same numbers"
    assert not np.array_equal(a, b), "two draws in a row gave the same numbers"
    minicnn.manual_seed(124)
    assert not np.array_equal(minicnn.randn(4, 5).numpy(), a), "another seed, the same numbers"


def test_manual_seed_repeats_dropout(backend):
    x = minicnn.tensor(np.ones((50, 40), np.float32), device=backend)
    minicnn.manual_seed(9)
    a = F.dropout(x, 0.3).numpy()
    minicnn.manual_seed(9)
    b = F.dropout(x, 0.3).numpy()
    assert np.array_equal(a, b)


def test_dropout_mask_is_the_same_on_every_device(backend):
    """Masks are drawn on the host: a seeded run matches across devices."""
    x = np.ones((20, 30), np.float32)
    minicnn.manual_seed(4)
    on_cpu = F.dropout(minicnn.tensor(x), 0.5).numpy()
    minicnn.manual_seed(4)
    here = F.dropout(minicnn.tensor(x, device=backend), 0.5).numpy()
    assert np.array_equal(on_cpu, here)



def test_integer_and_bool_tensors_with_float_numbers(backend):
    """A float must not be truncated to the tensor's integer dtype: accuracy = mask.mean()."""
    def T(values):
        return minicnn.tensor(values, device=backend)
    mask = T([1.0, 2.0, 3.0, 4.0]) > 2.5
    assert mask.device == backend and mask.dtype == np.bool_
    assert mask.mean().item() == 0.5
    assert np.allclose((T([1, 2]) * 0.5).numpy(), [0.5, 1.0])
    assert (T([1, 2]) + 1).dtype == np.int64
    assert (T([1.0, 2.0]) * 0.5).dtype == np.float32, "float32 stays float32"


def test_numbers_and_arrays_out_of_a_tensor(backend):
    assert float(minicnn.tensor(2.5, device=backend)) == 2.5
    assert int(minicnn.tensor(3, device=backend)) == 3
    a = np.asarray(minicnn.tensor([[1.0, 2.0]], device=backend))
    assert a.dtype == np.float32 and a.shape == (1, 2), "np.asarray gives the values"
    y = np.ones(2, np.float32) * leaf([1.0, 2.0], device=backend)  # numpy defers to Tensor
    assert isinstance(y, minicnn.Tensor) and y.requires_grad and y.device == backend


def test_gradient_flows_back_across_devices(backend):
    """x on cpu -> .to(device) mid-graph -> loss there: x.grad arrives on cpu."""
    x = leaf([[1.0, -2.0], [3.0, 4.0]])
    y = (x * 2.0).to(backend)
    assert y.device == backend
    loss = F.relu(y).sum()
    assert loss.device == backend
    loss.backward()
    assert x.grad.device == "cpu"
    assert_equal(grad_of(x), [[2.0, 0.0], [2.0, 2.0]], "2 where x > 0")
