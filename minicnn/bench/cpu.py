"""`minicnn bench` on the CPU: minicnn's numba backend beside PyTorch, one process.

Parts, each printed as soon as it is measured:
  ops      conv2d forward / backward, max-pool, linear, cross-entropy at the layer shapes
  steps    a whole ChestXrayCNN training step at each size and batch
  profile  where the time of one minicnn step goes (kernels vs Python around them)
  startup  numba compile time on a cold cache, and load time on a warm one
  memory   peak memory of a training step, minicnn vs PyTorch, each in its own process
"""
import sys

from . import breakdown, ops, report, startup, trace
from . import step as stepmod
from .timing import compare


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def progress(text):
    """A line on stderr while a long part runs (the report itself goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def _per_s(n, s):
    return None if s is None else n / s


def _gflops(flops, s):
    return None if s is None or not flops else flops / s / 1e9


def run_ops(cfg, say):
    channels, size = cfg["op_input"]
    batch = max(cfg["batches"])
    say(f"\nPer op, at ChestXrayCNN's layer shapes for {size}x{size}x{channels} images, "
        f"batch {batch} (minicnn: backend kernel calls; PyTorch: the ATen ops its autograd runs)")
    rows = []
    for case in ops.cases(channels, size, batch):
        progress(f"  {case.op} {case.layer}")
        t = compare(case.ours, case.theirs, reps=cfg["reps"], warmup=cfg["warmup"],
                    budget_s=cfg["budget_s"])
        r = report.ratio(t["a"], t["b"])
        bound = report.CONV_TARGET if case.op.startswith("conv2d") else None
        rows.append({"op": case.op, "layer": case.layer, "shape": case.shape,
                     "images": case.images, "flops": case.flops, "reps": t["reps"],
                     "minicnn_s": t["a"], "torch_s": t["b"],
                     "minicnn_gflops": _gflops(case.flops, t["a"]),
                     "torch_gflops": _gflops(case.flops, t["b"]),
                     "ratio": r, "target": bound, "status": report.verdict(r, bound)})
    section = {"input": f"{size}x{size}x{channels}", "batch": batch, "rows": rows}
    say(report.ops_text(section))
    return section


def _step_flops(run_step):
    """Run one step under trace.record (also its first warm-up) and count its FLOPs."""
    with trace.record("cpu") as calls:
        run_step()
    return sum(trace.flops(c) for c in calls)


def run_steps(cfg, say):
    torch = _torch()
    say("\nTraining step (forward, cross-entropy, backward, SGD momentum 0.9), ChestXrayCNN")
    rows = []
    for channels, size in cfg["inputs"]:
        for batch in cfg["batches"]:
            model = stepmod.make_model(channels, size)
            x, t = stepmod.make_batch(batch, channels, size)
            theirs = None
            if torch is not None:
                twin = stepmod.torch_twin(model)
                stepmod.check_twin(model, twin, x)
                theirs = stepmod.torch_step(twin, x, t)
            ours = stepmod.minicnn_step(model, x, t)
            flops = _step_flops(ours)
            tm = compare(ours, theirs, reps=cfg["reps"], warmup=cfg["warmup"],
                         budget_s=cfg["budget_s"], sample_s=0.0)
            r = report.ratio(tm["a"], tm["b"])
            bound = report.STEP_TARGET if size in report.STEP_TARGET_SIZES else None
            row = {"input": f"{size}x{size}x{channels}", "size": size, "channels": channels,
                   "batch": batch, "flops": flops, "reps": tm["reps"],
                   "minicnn_s": tm["a"], "torch_s": tm["b"],
                   "minicnn_images_per_s": _per_s(batch, tm["a"]),
                   "torch_images_per_s": _per_s(batch, tm["b"]),
                   "minicnn_gflops": _gflops(flops, tm["a"]),
                   "torch_gflops": _gflops(flops, tm["b"]),
                   "ratio": r, "target": bound, "status": report.verdict(r, bound)}
            rows.append(row)
            progress(f"  step {row['input']} batch {batch}: minicnn {tm['a'] * 1e3:.1f} ms")
    say(report.steps_text(rows))
    return rows


def run_profile(cfg, say):
    channels, size = cfg["op_input"]
    batch = max(cfg["batches"])
    prof = breakdown.profile(channels, size, batch, reps=max(3, min(cfg["reps"], 10)))
    say(f"\nWhere minicnn's training step goes ({prof['input']}, batch {batch}, median of "
        f"{prof['reps']} steps, kernel calls timed from Python)")
    say(report.profile_text(prof))
    return prof


def run_startup(cfg, cache, say):
    channels, size = cfg["startup_input"]
    batch = min(cfg["batches"])
    say(f"\nStart-up: a fresh process imports minicnn and runs its first training step "
        f"({size}x{size}x{channels}, batch {batch}), NUMBA_CACHE_DIR a new empty folder (cold), "
        "then the same again (warm)")
    res = startup.startup_times(cache, channels, size, batch)
    cold, warm = res["cold"]["seconds"], res["warm"]["seconds"]
    res["cold_status"] = report.verdict(cold, report.COLD_TARGET_S, higher_is_better=False)
    res["warm_status"] = report.verdict(warm, report.WARM_TARGET_S, higher_is_better=False)
    say(f"cold: {cold:.2f} s  (process {res['cold']['process_wall_s']:.2f} s with interpreter "
        f"start)  target < {report.COLD_TARGET_S:g} s  {res['cold_status']}")
    say(f"warm: {warm:.2f} s  (process {res['warm']['process_wall_s']:.2f} s)  "
        f"target < {report.WARM_TARGET_S:g} s  {res['warm_status']}")
    return res


def run_memory(cfg, cache, say):
    channels, size = cfg["memory_input"]
    batch = min(cfg["batches"])
    say(f"\nPeak memory of two training steps, {size}x{size}x{channels}, batch {batch}, each "
        "engine in its own process")
    res = {"input": f"{size}x{size}x{channels}", "batch": batch,
           "minicnn": startup.peak_memory(cache, "minicnn", channels, size, batch)}
    res["torch"] = startup.peak_memory(cache, "torch", channels, size, batch) \
        if _torch() is not None else None
    ours = res["minicnn"]["step_peak_mib"]
    theirs = res["torch"]["step_peak_mib"] if res["torch"] else None
    res["ratio"] = ours / theirs if theirs else None
    res["target"] = report.MEMORY_TARGET
    res["status"] = report.verdict(res["ratio"], report.MEMORY_TARGET, higher_is_better=False)
    say(f"minicnn: {ours:.1f} MiB above a baseline of {res['minicnn']['baseline_mib']:.1f} MiB")
    if theirs is not None:
        say(f"PyTorch: {theirs:.1f} MiB above a baseline of {res['torch']['baseline_mib']:.1f} MiB")
        say(f"ratio minicnn/PyTorch {res['ratio']:.2f}x  target <= {report.MEMORY_TARGET:g}x  "
            f"{res['status']}")
    say(f"method: {res['minicnn']['method']}; the baseline (after imports, a warm-up at 16 px, "
        "model, optimiser and batch) holds the weights; the figure is what the steps add: "
        "activations, gradients, momentum buffers, workspaces")
    return res


def run(cfg, say):
    """Measure every part named in cfg["parts"]; returns the report's sections."""
    out = {}
    if "ops" in cfg["parts"]:
        out["ops"] = run_ops(cfg, say)
    if "steps" in cfg["parts"]:
        out["steps"] = run_steps(cfg, say)
    if "profile" in cfg["parts"]:
        out["profile"] = run_profile(cfg, say)
    if {"startup", "memory"} & set(cfg["parts"]):
        with startup.FreshCache() as cache:
            if "startup" in cfg["parts"]:
                out["startup"] = run_startup(cfg, cache, say)
            if "memory" in cfg["parts"]:
                out["memory"] = run_memory(cfg, cache, say)
    return out
