"""Timing the per-op cases and the whole training step on one device.

Used by both modes of the bench: "cpu" (numba backend vs PyTorch on the CPU)
and "cuda" (CUDA kernels vs PyTorch on the GPU, timed by CUDA events).
"""
import sys

from . import ops, report, trace
from . import step as stepmod
from .timing import compare


def progress(text):
    """A line on stderr while a long part runs (the report itself goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def _per_s(n, s):
    return None if s is None else n / s


def _gflops(flops, s):
    return None if s is None or not flops else flops / s / 1e9


def _peak_share(flops, s, peak):
    """The share of the machine's measured matmul peak (FLOP/s) that flops in s seconds reach
    (None without FLOPs, a time or a peak: memory-bound ops, PyTorch missing, CUDA mode)."""
    return None if s is None or not flops or not peak else flops / s / peak


def _rate(case, s):
    """"12.3 GFLOP/s" for compute-bound ops, "4.50 GB/s" for memory-bound ones."""
    if s is None:
        return None
    if case.flops:
        return f"{case.flops / s / 1e9:.1f} GFLOP/s"
    return f"{case.nbytes / s / 1e9:.2f} GB/s" if case.nbytes else None


def _settle_s(cfg, device):
    """Settling time before each sample (timing.py): CPU thread pools only; a GPU
    sample waits for its own queue, and settling calls would only queue more work."""
    return cfg.get("settle_s", 0.2) if device == "cpu" else 0.0


def time_ops(cfg, device, clock=None):
    """Time every op case at cfg["op_input"], batch max(cfg["batches"]), on `device`;
    with cfg["peak_flops"] (FLOP/s) each compute-bound row also gets its share of it."""
    channels, size = cfg["op_input"]
    batch = max(cfg["batches"])
    peak = cfg.get("peak_flops")
    rows = []
    for case in ops.cases(channels, size, batch, device=device):
        progress(f"  {case.op} {case.layer}")
        t = compare(case.ours, case.theirs, reps=cfg["reps"], warmup=cfg["warmup"],
                    budget_s=cfg["budget_s"], sample_s=cfg["sample_s"], clock=clock,
                    settle_s=_settle_s(cfg, device))
        r = report.ratio(t["a"], t["b"])
        bound = report.CONV_TARGET if case.op.startswith("conv2d") and device == "cpu" else None
        rows.append({"op": case.op, "layer": case.layer, "shape": case.shape,
                     "images": case.images, "flops": case.flops, "bytes": case.nbytes,
                     "reps": t["reps"], "minicnn_s": t["a"], "torch_s": t["b"],
                     "minicnn_min_s": t["a_min"], "torch_min_s": t["b_min"],
                     "minicnn_rate": _rate(case, t["a"]), "torch_rate": _rate(case, t["b"]),
                     "minicnn_peak_share": _peak_share(case.flops, t["a"], peak),
                     "torch_peak_share": _peak_share(case.flops, t["b"], peak),
                     "ratio": r, "target": bound, "status": report.verdict(r, bound)})
    return {"input": f"{size}x{size}x{channels}", "batch": batch, "peak_flops": peak,
            "rows": rows}


def _step_flops(run_step, device):
    """Run one step under trace.record (also its first warm-up) and count its FLOPs."""
    with trace.record(device) as calls:
        run_step()
    return sum(trace.flops(c) for c in calls)


def time_steps(cfg, device, clock=None):
    """Time a whole training step at every input and batch of cfg on `device` (with
    cfg["peak_flops"], each engine's GFLOP/s also as a share of that peak)."""
    torch = ops.torch_for(device)[0]
    peak = cfg.get("peak_flops")
    rows = []
    for channels, size in cfg["inputs"]:
        for batch in cfg["batches"]:
            model = stepmod.make_model(channels, size, device=device)
            x, t = stepmod.make_batch(batch, channels, size)
            theirs = None
            if torch is not None:
                twin = stepmod.torch_twin(model)
                stepmod.check_twin(model, twin, x)
                theirs = stepmod.torch_step(twin, x, t)
            ours = stepmod.minicnn_step(model, x, t)
            flops = _step_flops(ours, device)  # also minicnn's first warm-up step
            tm = compare(ours, theirs, reps=cfg["reps"], warmup=max(1, cfg["warmup"] - 1),
                         budget_s=cfg["budget_s"], sample_s=0.0, clock=clock,
                         settle_s=_settle_s(cfg, device))
            r = report.ratio(tm["a"], tm["b"])
            bound = report.STEP_TARGETS.get(size) if device == "cpu" else None
            rows.append({"input": f"{size}x{size}x{channels}", "size": size,
                         "channels": channels, "batch": batch, "flops": flops,
                         "reps": tm["reps"], "minicnn_s": tm["a"], "torch_s": tm["b"],
                         "minicnn_min_s": tm["a_min"], "torch_min_s": tm["b_min"],
                         "minicnn_images_per_s": _per_s(batch, tm["a"]),
                         "torch_images_per_s": _per_s(batch, tm["b"]),
                         "minicnn_gflops": _gflops(flops, tm["a"]),
                         "torch_gflops": _gflops(flops, tm["b"]),
                         "minicnn_peak_share": _peak_share(flops, tm["a"], peak),
                         "torch_peak_share": _peak_share(flops, tm["b"], peak),
                         "ratio": r, "target": bound, "status": report.verdict(r, bound)})
            progress(f"  step {size}x{size}x{channels} batch {batch}: "
                     f"minicnn {tm['a'] * 1e3:.1f} ms")
    return rows
