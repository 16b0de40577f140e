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


# --------------------------------------------------------------------------- graphs, both libraries

class Lib:
    """The handful of things minicnn and PyTorch spell differently, so that one graph,
    written once as fn(L, *inputs), runs in both (tinygrad's helper_test_op style).

    L.F              minicnn.functional or torch.nn.functional
    L.const(a)       a constant tensor (no gradient) on the graph's device
    L.stats(a)       running statistics for batch_norm: a device array / a torch tensor,
                     kept in L.kept so the caller can compare them after the graph ran
    L.max(x, axis, keepdims)   minicnn's x.max; torch.amax (ties share the gradient alike)
    L.astype(x, "float64")     minicnn's astype; torch's .to
    L.dropout(x, p)  minicnn's F.dropout in training mode; PyTorch applies the very mask
                     minicnn drew (a random mask cannot be matched otherwise)
    """

    def __init__(self, kind, device="cpu", masks=None):
        self.kind, self.device = kind, device
        self.F = minicnn.functional if kind == "minicnn" else torch.nn.functional
        self.kept = []
        self.masks = [] if masks is None else masks  # dropout masks, in the order drawn
        self._next_mask = 0

    def const(self, a):
        a = np.asarray(a)
        if self.kind == "minicnn":
            return minicnn.tensor(a, device=self.device)
        return torch.tensor(a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a)

    def stats(self, a):
        a = np.asarray(a, np.float32)
        if self.kind == "minicnn":
            out = minicnn.backends.array_module(self.device).array(a)
        else:
            out = torch.tensor(a.astype(np.float64))
        self.kept.append(out)
        return out

    def max(self, x, axis=None, keepdims=False):
        if self.kind == "minicnn":
            return x.max(axis=axis, keepdims=keepdims)
        dims = tuple(range(x.ndim)) if axis is None else axis
        return torch.amax(x, dim=dims, keepdim=keepdims)

    def astype(self, x, dtype):
        if self.kind == "minicnn":
            return x.astype(np.dtype(dtype))
        return x.to(getattr(torch, dtype))

    def dropout(self, x, p):
        if self.kind == "minicnn":
            y = self.F.dropout(x, p=p, training=True)
            self.masks.append(y.numpy() != 0)
            return y
        mask = self.masks[self._next_mask]
        self._next_mask += 1
        return x * torch.tensor(mask.astype(np.float64)) / (1.0 - p)


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def on_numba_cpu():
    """Whether the "cpu" device runs the numba kernels now (not the reference ones)."""
    from minicnn import backends
    return backends._cpu_kernels == "cpu"


class numba_cpu:
    """with numba_cpu(): the "cpu" device runs the numba kernels, put back afterwards."""

    def __enter__(self):
        from minicnn import backends
        self.before = backends._cpu_kernels
        minicnn.use_cpu_kernels("numba")

    def __exit__(self, *exc):
        from minicnn import backends
        backends._cpu_kernels = self.before


def run_minicnn(fn, inputs, device, needs_grad, seed=0, masks=None):
    """fn(L, *tensors) on `device` and backward: (output, grads, L). A 0-d (one-element)
    output gets backward() with no gradient, as a loss does; any other gets a seeded
    normal upstream gradient."""
    L = Lib("minicnn", device, masks)
    ts = [minicnn.tensor(a, requires_grad=g, device=device, dtype=a.dtype)
          for a, g in zip(inputs, needs_grad)]
    minicnn.manual_seed(seed)
    out = fn(L, *ts)
    if out.requires_grad:
        if out.numel() == 1:
            out.backward()
        else:
            up = np.random.default_rng(seed + 1).standard_normal(out.shape)
            out.backward(up.astype(out.dtype))
    return out, ts, L


def compare_graph(fn, inputs, device, name, needs_grad=None, dtype=np.float32,
                  atol=1e-5, rtol=1e-4, seed=0, log=None, log_as=None):
    """Run fn(L, *inputs) through backward on `device`, on cpu (numba kernels) and in
    PyTorch (float64, on the same float32 inputs); hold the output (value, shape, dtype,
    device) and the gradient of every input that needs one (value, shape, dtype, device)
    to both (on the cpu with the reference kernels, the numba run is the cpu result).
    inputs: numpy arrays; the floating ones are leaves needing grad unless
    needs_grad says otherwise. Returns minicnn's output tensor on `device`."""
    inputs = [np.asarray(a) for a in inputs]
    floating = [np.issubdtype(a.dtype, np.floating) for a in inputs]
    needs_grad = floating if needs_grad is None else list(needs_grad)
    who = f"{name} on {log_as or device}"

    out, ts, L = run_minicnn(fn, inputs, device, needs_grad, seed)
    assert out.device == device, f"{who}: output on {out.device!r}"
    assert out.dtype == dtype, f"{who}: output dtype {out.dtype}, expected {np.dtype(dtype)}"
    assert isinstance(out.array, minicnn.backends.array_module(device).ndarray), \
        f"{who}: output holds a {type(out.array).__name__}, not an array of {device}"
    got = out.numpy()
    grads = []
    for k, (t, g) in enumerate(zip(ts, needs_grad)):
        if not g:
            assert t.grad is None, f"{who}: input {k} got a gradient it did not ask for"
            grads.append(None)
            continue
        assert t.grad is not None, f"{who}: input {k} got no gradient"
        assert t.grad.device == device, f"{who}: gradient of input {k} on {t.grad.device!r}"
        assert t.grad.dtype == t.dtype, f"{who}: gradient of input {k} is {t.grad.dtype}"
        grads.append(t.grad.numpy())

    references = []
    if device != "cpu" or not on_numba_cpu():   # cuda-sim, cuda, or the reference kernels
        with numba_cpu():
            c_out, c_ts, c_L = run_minicnn(fn, inputs, "cpu", needs_grad, seed)
        assert c_out.dtype == out.dtype
        references.append(("cpu", c_out.numpy(), [t.grad.numpy() if g else None
                                                  for t, g in zip(c_ts, needs_grad)],
                           [_host(k) for k in c_L.kept]))

    T = Lib("torch", masks=L.masks)
    tts = [torch.tensor(a.astype(np.float64) if f else a, requires_grad=g)
           for a, f, g in zip(inputs, floating, needs_grad)]
    ref = fn(T, *tts)
    if ref.requires_grad:
        if ref.numel() == 1 and out.numel() == 1:
            ref.backward()
        else:
            up = np.random.default_rng(seed + 1).standard_normal(out.shape)
            ref.backward(torch.tensor(up.astype(out.dtype)).to(ref.dtype))
    references.append(("PyTorch", ref.detach().numpy(),
                       [(t.grad.numpy() if t.grad is not None else np.zeros(t.shape)) if g
                        else None for t, g in zip(tts, needs_grad)],
                       [k.numpy() for k in T.kept]))

    for source, want, want_grads, want_kept in references:
        assert_close(got, want, atol, rtol, f"{who}: output against {source}")
        if log is not None:
            log.record(name, log_as or device, got, want, atol, rtol)
        for k, (g, w) in enumerate(zip(grads, want_grads)):
            if g is not None:
                assert_close(g, w, atol, rtol, f"{who}: gradient of input {k} against {source}")
                if log is not None:
                    log.record(name, log_as or device, g, w, atol, rtol)
        assert len(want_kept) == len(L.kept)
        for k, (g, w) in enumerate(zip(L.kept, want_kept)):
            assert_close(_host(g), w, atol, rtol, f"{who}: running statistics {k} against {source}")
    if log is not None:
        log.count_case(name, log_as or device)
    return out
