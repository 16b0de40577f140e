"""`minicnn bench` on the CPU: minicnn's numba backend beside PyTorch, one process.

Parts, each printed as soon as it is measured:
  ops      conv2d (+relu+pool where the model fuses them) forward / backward, max-pool,
           linear, cross-entropy at the layer shapes
  steps    a whole ChestXrayCNN training step at each size and batch
  profile  where the time of one minicnn step goes (kernels vs Python around them)
  startup  numba compile time on a cold cache, and load time on a warm one
  memory   peak memory of a training step, minicnn vs PyTorch, each in its own process
"""
from . import breakdown, ops, report, startup
from .measure import time_ops, time_steps


def run_ops(cfg, say):
    channels, size = cfg["op_input"]
    say(f"\nPer op, at ChestXrayCNN's layer shapes for {size}x{size}x{channels} images, "
        f"batch {max(cfg['batches'])} (minicnn: backend kernel calls; PyTorch: the ATen ops "
        "its autograd runs)")
    section = time_ops(cfg, "cpu")
    say(report.ops_text(section))
    return section


def run_steps(cfg, say):
    say("\nTraining step (forward, cross-entropy, backward, SGD momentum 0.9), ChestXrayCNN")
    rows = time_steps(cfg, "cpu")
    say(report.steps_text(rows, cfg.get("peak_flops")))
    return rows


def run_profile(cfg, say):
    channels, size = cfg["op_input"]
    batch = max(cfg["batches"])
    prof = breakdown.profile(channels, size, batch, reps=max(3, min(cfg["reps"], 10)))
    say(f"\nWhere minicnn's training step goes ({prof['input']}, batch {batch}, median of "
        f"{prof['reps']} steps, kernel calls timed from Python)")
    say(report.profile_text(prof))
    return prof


def run_startup(cfg, say):
    channels, size = cfg["startup_input"]
    batch = min(cfg["batches"])
    say(f"\nStart-up: a fresh process imports minicnn and runs its first training step "
        f"({size}x{size}x{channels}, batch {batch}), NUMBA_CACHE_DIR a new empty folder (cold), "
        "then the same again (warm)")
    res = startup.startup_times(channels, size, batch)
    cold, warm = res["cold"]["seconds"], res["warm"]["seconds"]
    res["cold_status"] = report.verdict(cold, report.COLD_TARGET_S, higher_is_better=False)
    res["warm_status"] = report.verdict(warm, report.WARM_TARGET_S, higher_is_better=False)
    say(f"cold: {cold:.2f} s  (process {res['cold']['process_wall_s']:.2f} s with interpreter "
        f"start)  target < {report.COLD_TARGET_S:g} s  {res['cold_status']}")
    say(f"warm: {warm:.2f} s  (process {res['warm']['process_wall_s']:.2f} s)  "
        f"target < {report.WARM_TARGET_S:g} s  {res['warm_status']}")
    return res


def run_memory(cfg, say):
    channels, size = cfg["memory_input"]
    batch = min(cfg["batches"])
    say(f"\nPeak memory of two training steps, {size}x{size}x{channels}, batch {batch}, each "
        "engine in its own process")
    res = {"input": f"{size}x{size}x{channels}", "batch": batch,
           "minicnn": startup.peak_memory("minicnn", channels, size, batch)}
    has_torch = ops.torch_for("cpu")[0] is not None
    res["torch"] = startup.peak_memory("torch", channels, size, batch) if has_torch else None
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
    if "startup" in cfg["parts"]:
        out["startup"] = run_startup(cfg, say)
    if "memory" in cfg["parts"]:
        out["memory"] = run_memory(cfg, say)
    return out
