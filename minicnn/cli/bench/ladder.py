"""`minicnn bench --ladder OP`: every rung of the CPU kernel ladder, checked, then timed.

    minicnn bench --ladder conv2d            ChestXrayCNN's conv layers, 64x64, batch 64
    minicnn bench --ladder max_pool2d --quick
    minicnn bench --ladder linear --op-size 28 --batch 32 --json ladder.json

As llm.c's dev/cuda does for its kernels: each rung (kernels/cpu/ladder) first
runs on the layer's inputs and is compared with kernels/reference.py in float64
(forward and backward; a rung that disagrees is reported WRONG and not timed),
then its forward and backward passes are timed. The layers are not written
down here: ChestXrayCNN runs one forward pass under trace.record and every call
of the op becomes a layer, with its own shapes (the max-pool a conv2d call does
within it counts as a max_pool2d layer, at the conv output's shape).

Beside each time: GFLOP/s, the speed-up over the rung below, and the share of
this machine's peak measured in the same run, for the op's kind of limit:
    peak       the best of a few float32 numpy matrix products (n x n, on all cores):
               the multiply-adds per second BLAS reaches here (conv2d, linear)
    bandwidth  the best of a few copies of a large float32 array (numpy, one core):
               bytes read + written per second (max_pool2d, whose comparisons are
               nearly free: its limit is memory, so it shows GB/s against this; a
               layer whose arrays fit in the caches, on several cores, can beat it)
A rung whose pass is the same code as the rung below's says "same" for its speed-up.
Lesson 12 draws the same figures as bars and on a roofline.
"""
import time

import numpy as np

import minicnn
from minicnn.errors import UserError
from minicnn.kernels import reference as R
from minicnn.kernels.cpu import ladder
from minicnn.nn.models import ChestXrayCNN
from minicnn.testing import rel_error
from . import report, trace
from .timing import compare

DEFAULTS = {"size": 64, "batch": 64, "reps": 5, "budget": 2.0, "peak_n": 2048,
            "copy_mb": 64, "settle_s": 0.2}
QUICK = {"size": 16, "batch": 4, "reps": 3, "budget": 0.2, "peak_n": 2048,
         "copy_mb": 32, "settle_s": 0.0}
# float32 rungs against the float64 reference: the largest error, relative to the
# largest value (testing.rel_error); float32 sums of a few thousand terms stay far below
CHECK_TOL = 1e-4
MEMORY_BOUND = ("max_pool2d",)


# ----------------------------------------------------------------------------- the machine

def _best(fn, repeat):
    fn()                                            # warm-up: allocation, threads
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(n=2048, repeat=3):
    """Single-precision matrix-multiply peak: 2*n^3 FLOPs / the best time of numpy's
    float32 (n, n) @ (n, n), in FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    return 2.0 * n ** 3 / _best(lambda: np.matmul(a, b, out=out), repeat)


def copy_bandwidth(megabytes=64, repeat=5):
    """Memory bandwidth: bytes read and written per second by the best numpy copy of a
    float32 array of `megabytes` (larger than the caches), in bytes/s."""
    src = np.ones(megabytes * (1 << 20) // 4, np.float32)
    dst = np.empty_like(src)
    return 2.0 * src.nbytes / _best(lambda: np.copyto(dst, src), repeat)


def measure_machine(quick=False):
    """(peak FLOP/s, bandwidth bytes/s) at the sizes of a full or a --quick run."""
    base = QUICK if quick else DEFAULTS
    return matmul_peak(base["peak_n"]), copy_bandwidth(base["copy_mb"])


# ----------------------------------------------------------------------------- the layers

class Layer:
    """One call of the op in ChestXrayCNN: name, shape text, inputs, and the work of
    each pass: flops[pass], nbytes[pass] (arrays read and written, each once)."""

    def __init__(self, name, shape, inputs, flops, nbytes):
        self.name, self.shape, self.inputs, self.flops, self.nbytes = \
            name, shape, inputs, flops, nbytes


def _dims(shape):
    return "x".join(str(d) for d in shape)


def layers(op, size, batch, channels=1, seed=0):
    """The op's calls in one forward pass of ChestXrayCNN on (batch, channels, size, size)
    images, as Layers with fresh float32 inputs (and a gradient gy for the backward).

    ChestXrayCNN runs each Conv2d -> ReLU -> MaxPool2d as one conv2d call that pools
    too: for max_pool2d, such a call counts as a pool layer at its conv output's shape
    (N, F, Ho, Wo), 2x2 stride 2, beside any max_pool2d call of its own; for conv2d,
    as the conv it starts with."""
    rng = np.random.default_rng(seed)
    model = ChestXrayCNN(in_channels=channels, image_size=size)
    x = minicnn.tensor(rng.standard_normal((batch, channels, size, size), dtype=np.float32))
    with minicnn.no_grad(), trace.record("cpu") as calls:
        model(x)
    shapes, after_relu = [], []
    for c in calls:
        pooled = trace.pooled_input_shape(c)
        if op == "max_pool2d" and pooled:
            # the pool inside a conv2d+relu+pool call: its input is the conv's output
            shapes.append([pooled, (2, 2), (2, 2), (0, 0)])
            after_relu.append(True)
        elif c.name == op + "_forward":
            shapes.append([(a.shape if hasattr(a, "shape") else a) for a in c.args])
            after_relu.append(False)
    randn = lambda s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    out = []
    for k, args in enumerate(shapes, 1):
        if op == "conv2d":
            xs, ws, _, stride, padding = args[:5]
            N, C, H, W = xs
            F, _, KH, KW = ws
            Ho = (H + 2 * padding[0] - KH) // stride[0] + 1
            Wo = (W + 2 * padding[1] - KW) // stride[1] + 1
            ys = (N, F, Ho, Wo)
            flops = 2.0 * N * F * C * KH * KW * Ho * Wo
            n_x, n_w, n_y = np.prod(xs), np.prod(ws), np.prod(ys)
            out.append(Layer(f"conv{k}", f"{_dims(xs)} * {_dims(ws)} "
                             f"s{stride[0]} p{padding[0]}",
                             dict(x=randn(xs), w=randn(ws), b=randn(F), gy=randn(ys),
                                  stride=tuple(stride), padding=tuple(padding)),
                             {"fwd": flops, "bwd": 2 * flops},
                             {"fwd": 4.0 * (n_x + n_w + n_y), "bwd": 4.0 * 2 * (n_x + n_w + n_y)}))
        elif op == "max_pool2d":
            xs, kernel, stride, padding = args[:4]
            x = randn(xs)
            if after_relu[k - 1]:        # a ReLU output, as the fused call pools: ties at 0
                np.maximum(x, 0, out=x)
            N, C, H, W = xs
            Ho, Wo = (H + 2 * padding[0] - kernel[0]) // stride[0] + 1, \
                (W + 2 * padding[1] - kernel[1]) // stride[1] + 1
            n_x, n_y = N * C * H * W, N * C * Ho * Wo
            out.append(Layer(f"pool{k}", f"{_dims(xs)} k{kernel[0]} s{stride[0]}",
                             dict(x=x, kernel=tuple(kernel), stride=tuple(stride),
                                  padding=tuple(padding), gy=randn((N, C, Ho, Wo))),
                             {"fwd": float(n_y * kernel[0] * kernel[1]), "bwd": float(n_y)},
                             # x read, y and int32 idx written; gy and idx read, gx written
                             {"fwd": 4.0 * (n_x + 2 * n_y), "bwd": 4.0 * (2 * n_y + n_x)}))
        elif op == "linear":
            xs, ws = args[0], args[1]
            N, In, Out = xs[0], xs[1], ws[0]
            flops = 2.0 * N * In * Out
            out.append(Layer(f"fc{k}", f"{N}x{In} * {Out}x{In}",
                             dict(x=randn(xs), w=randn(ws), b=randn(Out), gy=randn((N, Out))),
                             {"fwd": flops, "bwd": 2 * flops},
                             {"fwd": 4.0 * (N * In + In * Out + N * Out),
                              "bwd": 4.0 * 2 * (N * In + In * Out + N * Out)}))
    return out


# ----------------------------------------------------------------------------- one rung on one layer

def _calls(op, rung, a):
    """(forward, backward) of the rung on layer inputs a, as functions of no arguments."""
    if op == "conv2d":
        return (lambda: rung.forward(a["x"], a["w"], a["b"], a["stride"], a["padding"]),
                lambda: rung.backward(a["x"], a["w"], a["gy"], a["stride"], a["padding"]))
    if op == "max_pool2d":
        idx = rung.forward(a["x"], a["kernel"], a["stride"], a["padding"])[1]
        return (lambda: rung.forward(a["x"], a["kernel"], a["stride"], a["padding"]),
                lambda: rung.backward(a["gy"], idx, a["x"].shape))
    return (lambda: rung.forward(a["x"], a["w"], a["b"]),
            lambda: rung.backward(a["x"], a["w"], a["gy"]))


def _reference(op, a):
    """The reference's (forward outputs, backward outputs) in float64."""
    d = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in a.items()}
    if op == "conv2d":
        return ((R.conv2d_forward(d["x"], d["w"], d["b"], d["stride"], d["padding"]),),
                R.conv2d_backward(d["x"], d["w"], d["gy"], d["stride"], d["padding"]))
    if op == "max_pool2d":
        y, idx = R.max_pool2d_forward(d["x"], d["kernel"], d["stride"], d["padding"])
        return (y, idx), (R.max_pool2d_backward(d["gy"], idx, d["x"].shape),)
    return ((R.linear_forward(d["x"], d["w"], d["b"]),),
            R.linear_backward(d["x"], d["w"], d["gy"]))


def check(op, rung, a, ref):
    """None when the rung's outputs match the reference's, else what differs (text)."""
    fwd, bwd = _calls(op, rung, a)
    got_f = fwd()
    got_f = got_f if isinstance(got_f, tuple) else (got_f,)
    got_b = bwd()
    got_b = got_b if isinstance(got_b, tuple) else (got_b,)
    names = {"conv2d": (("y",), ("gx", "gw", "gb")), "max_pool2d": (("y", "idx"), ("gx",)),
             "linear": (("y",), ("gx", "gw", "gb"))}[op]
    for got, want, labels in ((got_f, ref[0], names[0]), (got_b, ref[1], names[1])):
        for g, r, name in zip(got, want, labels):
            if np.shape(g) != np.shape(r):
                return f"{name}: shape {np.shape(g)}, reference {np.shape(r)}"
            if name == "idx":
                if not np.array_equal(g, r):
                    return f"idx: {int(np.sum(g != r))} argmax positions differ"
                continue
            err = rel_error(np.asarray(g, np.float64), r)
            if not err <= CHECK_TOL:
                return f"{name}: relative error {err:.1e} > {CHECK_TOL:g}"
    return None


def measure(op, size=None, batch=None, quick=False, reps=None, budget=None, say=None,
            machine=None):
    """Check and time every rung of op on ChestXrayCNN's layers; returns a dict:
    op, size, batch, peak (FLOP/s), bandwidth (bytes/s), layers: [{name, shape, flops,
    nbytes, rungs: [{name, title, reason, file, ok, error, fwd_s, bwd_s}]}], total (the
    same for all layers together). machine: (peak, bandwidth) measured already, or None
    to measure them now."""
    base = QUICK if quick else DEFAULTS
    size, batch = size or base["size"], batch or base["batch"]
    reps, budget = reps or base["reps"], base["budget"] if budget is None else budget
    say = say or (lambda text: None)
    rungs = ladder.rungs(op)
    same = {(r.name, "bwd") for below, r in zip(rungs, rungs[1:]) if r.backward is below.backward}
    same |= {(r.name, "fwd") for below, r in zip(rungs, rungs[1:]) if r.forward is below.forward}
    if machine is None:
        say(f"measuring the machine: float32 matmul {base['peak_n']}^3, copy of "
            f"{base['copy_mb']} MB ...")
        machine = measure_machine(quick)
    peak, bandwidth = machine
    out = {"op": op, "size": size, "batch": batch, "peak": peak, "bandwidth": bandwidth,
           "memory_bound": op in MEMORY_BOUND, "layers": []}
    for layer in layers(op, size, batch):
        ref = _reference(op, layer.inputs)
        rows = []
        for rung in rungs:
            say(f"  {layer.name} {rung.name} {rung.title} ...")
            row = {"name": rung.name, "title": rung.title, "reason": rung.reason,
                   "file": rung.file, "ok": False, "error": None, "fwd_s": None, "bwd_s": None,
                   "same_as_below": sorted(p for name, p in same if name == rung.name)}
            try:
                row["error"] = check(op, rung, layer.inputs, ref)   # also compiles it
            except Exception as e:                                   # a rung that crashes
                row["error"] = f"{type(e).__name__}: {e}"
            row["ok"] = row["error"] is None
            if row["ok"]:
                fwd, bwd = _calls(op, rung, layer.inputs)
                for key, fn in (("fwd_s", fwd), ("bwd_s", bwd)):
                    time.sleep(base["settle_s"])    # the previous rung's BLAS threads go quiet
                    row[key] = compare(fn, reps=reps, warmup=1, budget_s=budget,
                                       sample_s=0.002 if quick else 0.01, min_reps=1)["a"]
            rows.append(row)
        out["layers"].append({"name": layer.name, "shape": layer.shape, "flops": layer.flops,
                              "nbytes": layer.nbytes, "rungs": rows})
    out["total"] = totals(out)
    return out


def totals(result):
    """Per rung, the time of all layers together (None if a layer's rung failed)."""
    names = [r["name"] for r in result["layers"][0]["rungs"]] if result["layers"] else []
    flops = {p: sum(layer["flops"][p] for layer in result["layers"]) for p in ("fwd", "bwd")}
    nbytes = {p: sum(layer["nbytes"][p] for layer in result["layers"]) for p in ("fwd", "bwd")}
    rows = []
    for k, name in enumerate(names):
        per = [layer["rungs"][k] for layer in result["layers"]]
        row = dict(per[0], ok=all(r["ok"] for r in per), error=None)
        for key in ("fwd_s", "bwd_s"):
            row[key] = sum(r[key] for r in per) if row["ok"] else None
        rows.append(row)
    return {"name": "all", "shape": f"{len(result['layers'])} layers", "flops": flops,
            "nbytes": nbytes, "rungs": rows}


# ----------------------------------------------------------------------------- the table

def rate(result, layer, row, pas):
    """(work per second, its share of the machine's limit) of one pass: FLOP/s against
    the matmul peak, or for a memory-bound op bytes/s against the copy bandwidth."""
    t = row[pas + "_s"]
    if result["memory_bound"]:
        r = layer["nbytes"][pas] / t
        return r, r / result["bandwidth"]
    r = layer["flops"][pas] / t
    return r, r / result["peak"]


def speedups(rows, pas):
    """Each rung's time over the one below's (None for v1 or where a time is missing)."""
    out, before = [], None
    for row in rows:
        t = row[pas + "_s"]
        out.append(before / t if (before and t) else None)
        before = t
    return out


def table(result):
    """The report as text: one block per layer and one for all layers, a row per rung."""
    bound = result["memory_bound"]
    unit, limit = ("GB/s", "bandwidth") if bound else ("GFLOP/s", "peak")
    lines = [f"{result['op']} ladder: ChestXrayCNN at {result['size']}x{result['size']}, "
             f"batch {result['batch']}, float32",
             f"this machine: float32 matmul peak {result['peak'] / 1e9:.1f} GFLOP/s, copy "
             f"bandwidth {result['bandwidth'] / 1e9:.1f} GB/s"
             + ("  (pooling is memory-bound: rates are GB/s against the bandwidth)" if bound
                else ""),
             "each rung checked against kernels/reference.py (float64) before it is timed", ""]
    head = (f"{'layer':6s} {'rung':28s} {'check':6s} | {'fwd ms':>9s} {unit:>8s} {'x prev':>7s} "
            f"{'%' + limit:>10s} | {'bwd ms':>9s} {unit:>8s} {'x prev':>7s} {'%' + limit:>10s}")
    for layer in result["layers"] + [result["total"]]:
        lines.append(f"{layer['name']}: {layer['shape']}")
        lines.append(head)
        ups = {p: speedups(layer["rungs"], p) for p in ("fwd", "bwd")}
        for k, row in enumerate(layer["rungs"]):
            cells = []
            for pas in ("fwd", "bwd"):
                if row[pas + "_s"] is None:
                    cells.append(f"{'-':>9s} {'-':>8s} {'-':>7s} {'-':>10s}")
                    continue
                r, share = rate(result, layer, row, pas)
                up = ups[pas][k]
                up = "same" if pas in row.get("same_as_below", ()) else \
                    (f"{up:.2f}x" if up else "-")
                cells.append(f"{row[pas + '_s'] * 1e3:9.3f} {r / 1e9:8.2f} {up:>7s} "
                             f"{share * 100:9.1f}%")
            check_text = "ok" if row["ok"] else "WRONG"
            lines.append(f"{'':6s} {row['name'] + ' ' + row['title']:28s} {check_text:6s} | "
                         + " | ".join(cells))
            if row["error"]:
                lines.append(f"{'':6s}   {row['error']}")
        lines.append("")
    lines.append("why each rung should beat the one below (the table says whether it did here):")
    for row in result["total"]["rungs"]:
        lines.append(f"  {row['name']} {row['title']:25s} {row['reason']}  ({row['file']})")
    return "\n".join(lines)


def run(args, say=print):
    """`minicnn bench --ladder OP`: exit status 1 when a rung fails its check."""
    if args.device != "cpu":
        raise UserError(f"bench --ladder: the kernel ladder is the CPU's (kernels/cpu/ladder); "
                        f"drop --device {args.device}")
    size = batch = None
    if args.op_size is not None:
        text = str(args.op_size).strip().lower()
        if not text.isdigit() or int(text) < 8:
            raise UserError(f"bench --ladder: --op-size takes one image size of at least 8 "
                            f"(grayscale, as ChestXrayCNN's input), like 64; got {args.op_size!r}")
        size = int(text)
    if args.batch is not None:
        text = str(args.batch).strip()
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"bench --ladder: --batch takes one positive batch size, like 64; "
                            f"got {args.batch!r}")
        batch = int(text)
    if args.reps is not None and args.reps < 1:
        raise UserError(f"bench --ladder: --reps must be at least 1, got {args.reps}")
    result = measure(args.ladder, size, batch, quick=args.quick, reps=args.reps,
                     budget=args.budget, say=lambda text: say(text, flush=True))
    say("")
    say(table(result))
    if args.json:
        report.write_json({"schema": "minicnn-bench-ladder/1", **result}, args.json)
        say(f"\nreport written to {args.json}")
    return 0 if all(row["ok"] for layer in result["layers"] for row in layer["rungs"]) else 1
