"""`minicnn bench --device cuda`: every CUDA kernel checked, then timed on the GPU.

1. Check: one ChestXrayCNN training step runs on the GPU under `trace.record`;
   each distinct kernel call it made runs again, on copies of its arguments,
   on the GPU and in kernels/reference.py (plain numpy), and every output and
   every array argument (in-place updates included) must agree to
   |gpu - ref| <= 1e-4 * max(1, max|ref|) + 1e-3 * |ref| (indices exactly).
   A conv2d call that fuses ReLU and the 2x2 max-pool is checked whole ((yp,
   idx) forward, the gradients backward), and the pool kernels it composes are
   also checked on their own at the conv output's shape. Timing starts only
   when every kernel passes.
2. Time, with CUDA events around each sample (the GPU's own clock, after its
   queue drains): the GEMM (linear_forward, the sgemm kernel) against cuBLAS
   through cupy.matmul; the per-op cases and the whole training step against
   PyTorch on the GPU when a CUDA build of PyTorch is installed.

check_kernels() also runs on "cuda-sim" (the same kernels on the CPU emulator),
which is how the test suite exercises it on machines without a GPU.
"""
import numpy as np

from minicnn import backends
from minicnn.errors import UserError
from minicnn.kernels import reference
from . import report, trace
from . import step as stepmod
from .measure import progress, time_ops, time_steps
from .timing import compare

GEMM_SIZES = (1024, 2048, 4096)
GEMM_SIZES_QUICK = (256,)


class EventClock:
    """Seconds between start() and stop() measured by CUDA events on the current stream."""

    def __init__(self, cupy):
        self.cupy = cupy

    def start(self):
        self.begin = self.cupy.cuda.Event()
        self.begin.record()

    def stop(self):
        end = self.cupy.cuda.Event()
        end.record()
        end.synchronize()
        return self.cupy.cuda.get_elapsed_time(self.begin, end) / 1e3


def gpu_backend():
    """The "cuda" backend, or a UserError that says why this machine cannot run it."""
    try:
        return backends.get("cuda")
    except ImportError as exc:  # the backend raises ImportError (a UserError) with the reason
        raise UserError(f"bench --device cuda: {exc}. `minicnn bench` without --device "
                        "times the CPU backend and needs no GPU; `minicnn doctor` lists what "
                        "this machine has.") from None


# --- 1. correctness -------------------------------------------------------------------------

def _host(a):
    """A numpy copy of a device array (numpy or cupy); other values as they are."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return np.array(a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a)
    return a


def _arrays(value):
    """The arrays in a kernel's result: an array, a tuple of arrays / None, or None."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return [v for v in value]
    return [value]


def _worst(got, ref):
    """(ok, worst element text) for got vs ref under the check's tolerance."""
    if got is None or ref is None:
        return got is None and ref is None, "one side returned None"
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return False, f"shape {got.shape} but the reference has {ref.shape}"
    if got.size == 0:
        return True, ""
    if not np.issubdtype(ref.dtype, np.floating):
        bad = np.flatnonzero(got.astype(np.int64).ravel() != ref.astype(np.int64).ravel())
        if bad.size:
            i = np.unravel_index(bad[0], ref.shape)
            return False, f"at {i}: {got[i]} vs reference {ref[i]}"
        return True, ""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    tol = 1e-4 * max(1.0, float(np.max(np.abs(ref64)))) + 1e-3 * np.abs(ref64)
    err = np.abs(got64 - ref64)
    i = np.unravel_index(np.argmax(err - tol), ref.shape)
    ok = bool(np.all(err <= tol)) and bool(np.all(np.isfinite(got64) == np.isfinite(ref64)))
    return ok, f"worst at {i}: {got[i]!r} vs reference {ref[i]!r}"


_INDICES = {"max_pool2d_backward": 1}   # positional index arrays (the backend's own dtype)


def _check_call(call, be):
    """Run one recorded call again on the device and in numpy; (ok, detail).

    Array arguments, positional or keyword (a fused conv backward's relu_y and
    pool_idx), go to each side as its own copy. Index arrays reach the device as
    it made them and the reference as int64, and are not compared afterwards (read
    only). A result of (y, idx), as a pooling conv2d_forward returns, is compared
    both ways: y to the tolerance, idx exactly."""
    indices = {_INDICES[call.name]} if call.name in _INDICES else set()
    index_keys = {"pool_idx"}
    ref_args, dev_args = [], []
    for k, a in enumerate(call.args):
        r, d = _sides(a, be, k in indices)
        ref_args.append(r)
        dev_args.append(d)
    ref_kw, dev_kw = {}, {}
    for key, a in call.kwargs.items():
        ref_kw[key], dev_kw[key] = _sides(a, be, key in index_keys)
    ref_out = _arrays(getattr(reference, call.name)(*ref_args, **ref_kw))
    dev_out = _arrays(getattr(be, call.name)(*dev_args, **dev_kw))
    if len(dev_out) != len(ref_out):
        return False, f"returned {len(dev_out)} values, the reference {len(ref_out)}"
    pairs = [(f"output {k}", _host(d), r) for k, (d, r) in enumerate(zip(dev_out, ref_out))]
    pairs += [(f"argument {k}", _host(d), r) for k, (d, r) in enumerate(zip(dev_args, ref_args))
              if isinstance(r, np.ndarray) and k not in indices]
    pairs += [(f"argument {key}", _host(dev_kw[key]), r) for key, r in ref_kw.items()
              if isinstance(r, np.ndarray) and key not in index_keys]
    for what, d, r in pairs:
        ok, detail = _worst(d, r)
        if not ok:
            return False, f"{what}: {detail}"
    return True, ""


def _sides(a, be, index):
    """(reference copy, device copy) of one argument; other values as they are."""
    if not (hasattr(a, "shape") and hasattr(a, "dtype")):
        return a, a
    host = _host(a)
    if index:
        return host.astype(np.int64), be.xp.asarray(host)
    return host.copy(), be.xp.asarray(host.copy())


def _pool_calls(call, be):
    """The max-pool kernel calls a pooling conv2d_forward call stands for, as Calls to
    check on their own: max_pool2d_forward on its conv + bias + ReLU output (N,F,Ho,Wo),
    and max_pool2d_backward of a pooled gradient through the indices the device's
    forward returns. Inputs are made here (not traced): the conv output by the
    reference, the gradient from a fixed seed."""
    x, w, b, stride, padding = (_host(a) for a in call.args[:5])
    y = reference.conv2d_forward(x, w, b, stride, padding, relu=True).astype(np.float32)
    win = ((2, 2), (2, 2), (0, 0))
    y_dev = be.xp.asarray(y)
    yp, idx = be.max_pool2d_forward(y_dev, *win)
    gy = np.random.default_rng(0).standard_normal(yp.shape, dtype=np.float32)
    return [trace.Call("max_pool2d_forward", (y_dev,) + win, {}, 0.0),
            trace.Call("max_pool2d_backward", (be.xp.asarray(gy), idx, y.shape), {}, 0.0)]


def _shape_text(call, traced=True):
    shape = "x".join(str(d) for d in getattr(call.args[0], "shape", ()))
    extra = trace.fused(call)
    if not traced:
        return f"{shape} (the pool of a conv2d+relu+pool)"
    return f"{shape} +{extra}" if extra else shape


def check_kernels(device, channels, size, batch):
    """Rows {kernel, shape, ok, detail, traced} for every distinct kernel call of two
    training steps (traced True), and (traced False) the max-pool kernels at the shapes
    each conv2d_forward that pools hands to them: the fused call composes the same pool
    kernels, checked here on their own as well (a model without the fusion calls them)."""
    be = backends.get(device)
    model = stepmod.make_model(channels, size, device=device)
    x, t = stepmod.make_batch(batch, channels, size)
    run_step = stepmod.minicnn_step(model, x, t)
    with trace.record(device) as calls:
        run_step()  # the first SGD step fills the momentum buffers ...
        run_step()  # ... the second updates them: both paths of sgd_step
    rows, seen = [], set()
    todo = [(call, True) for call in calls]
    pooling = {}                        # one conv call per pooled shape
    for call in calls:
        pooling.setdefault(trace.pooled_input_shape(call), call)
    todo += [(pc, False) for shape, call in pooling.items() if shape
             for pc in _pool_calls(call, be)]
    for call, traced in todo:
        key = (call.name, trace.fused(call),
               tuple(getattr(a, "shape", repr(a)) for a in call.args))
        if key in seen:
            continue
        seen.add(key)
        ok, detail = _check_call(call, be)
        rows.append({"kernel": call.name, "shape": _shape_text(call, traced), "ok": ok,
                     "detail": detail, "traced": traced})
    return rows


# --- 2. speed -------------------------------------------------------------------------------

def time_gemm(be, sizes, cfg, clock):
    """linear_forward (x @ w^T by the sgemm kernel) against cupy.matmul (cuBLAS)."""
    import cupy  # lazy: optional dependency (the CUDA backend)
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        a = cupy.asarray(rng.standard_normal((n, n), dtype=np.float32))
        w = cupy.asarray(rng.standard_normal((n, n), dtype=np.float32))
        ok, detail = _worst(_host(be.linear_forward(a, w, None)), _host(a @ w.T))
        if not ok:
            raise RuntimeError(f"bench: sgemm {n}x{n}x{n} disagrees with cuBLAS: {detail}")
        tm = compare(lambda: be.linear_forward(a, w, None), lambda: a @ w.T, reps=cfg["reps"],
                     warmup=cfg["warmup"], budget_s=cfg["budget_s"], clock=clock)
        flops = 2 * n ** 3
        rows.append({"op": "sgemm (linear_forward)", "n": n, "flops": flops, "reps": tm["reps"],
                     "minicnn_s": tm["a"], "cublas_s": tm["b"],
                     "minicnn_gflops": flops / tm["a"] / 1e9,
                     "cublas_gflops": flops / tm["b"] / 1e9,
                     "ratio": report.ratio(tm["a"], tm["b"])})
        progress(f"  sgemm {n}: {rows[-1]['minicnn_gflops']:.0f} GFLOP/s")
    return rows


def _header(cupy):
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    try:
        import torch  # lazy: optional dependency
        tv = f"PyTorch {torch.__version__}, " + ("CUDA available" if torch.cuda.is_available()
                                                  else "no CUDA in this build: no PyTorch column")
    except ImportError:
        tv = "PyTorch not installed: no PyTorch column"
    return (f"minicnn bench --device cuda: {name}, cupy {cupy.__version__}, CUDA runtime "
            f"{cupy.cuda.runtime.runtimeGetVersion()}; {tv}\n"
            "timing: CUDA events around each sample; ratio = minicnn throughput / the other "
            "library's (>1: minicnn faster)")


def run(cfg, say):
    be = gpu_backend()
    import cupy  # lazy: optional dependency; gpu_backend() says clearly when it is missing
    say(_header(cupy))
    channels, size = cfg["op_input"]
    batch = max(cfg["batches"])
    say(f"\nChecking every kernel of a training step ({size}x{size}x{channels}, batch {batch}) "
        "against the numpy reference")
    checks = check_kernels("cuda", channels, size, batch)
    say(report.checks_text(checks))
    out = {"checks": checks}
    if not all(c["ok"] for c in checks):
        say("Some kernels disagree with the reference: not timing them.")
        return out
    clock = EventClock(cupy)
    say("\nGEMM: the sgemm kernel (through linear_forward) vs cuBLAS (cupy.matmul)")
    out["gemm"] = time_gemm(be, GEMM_SIZES_QUICK if cfg["quick"] else GEMM_SIZES, cfg, clock)
    say(report.gemm_text(out["gemm"]))
    if "ops" in cfg["parts"]:
        say(f"\nPer op on the GPU, ChestXrayCNN's layer shapes at {size}x{size}x{channels}, "
            f"batch {batch}")
        out["ops"] = time_ops(cfg, "cuda", clock)
        say(report.ops_text(out["ops"]))
    if "steps" in cfg["parts"]:
        say("\nTraining step on the GPU (forward, cross-entropy, backward, SGD momentum 0.9)")
        out["steps"] = time_steps(cfg, "cuda", clock)
        say(report.steps_text(out["steps"]))
    return out
