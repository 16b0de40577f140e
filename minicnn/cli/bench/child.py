"""What the benchmark runs in a fresh Python process: start-up time and peak memory.

Each function prints one JSON line (its result) as the last line of stdout;
`startup.py` starts the process and reads it. They run in a process of their own
because both measures need one: compile time needs an interpreter that has not
loaded a kernel yet, and a peak-memory figure needs a process that held nothing
but the one engine being measured.
"""
import gc
import json
import resource
import sys
import time

from . import step as stepmod


def startup(t0, channels, size, batch):
    """Seconds from t0 (taken before `import minicnn`) to the end of the first training step."""
    model = stepmod.make_model(channels, size)
    x, t = stepmod.make_batch(batch, channels, size)
    stepmod.minicnn_step(model, x, t)()
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def _status_kib():
    """{"VmRSS": kib, "VmHWM": kib} from /proc/self/status (Linux)."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
    return out


def _reset_peak():
    """Reset the kernel's resident-memory high-water mark (VmHWM) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # macOS counts bytes


def _steps(engine, channels, size, batch):
    """(a function running one training step, what must stay alive) for one engine."""
    model = stepmod.make_model(channels, size)
    x, t = stepmod.make_batch(batch, channels, size)
    if engine == "minicnn":
        return stepmod.minicnn_step(model, x, t), model
    twin = stepmod.torch_twin(model)
    del model
    return stepmod.torch_step(twin, x, t), twin


def memory(engine, channels, size, batch, steps=2):
    """Peak resident memory of `steps` training steps, above the memory held before them.

    Before the baseline: imports, a warm-up at 16 px (so kernels are compiled or
    loaded and lazy initialisation is done), then the model, its optimiser and
    the batch. The peak counts every page the process touches: activations,
    gradients, momentum buffers, workspaces and temporaries of either engine.
    """
    warm, _ = _steps(engine, channels, 16, 2)
    warm()
    warm()
    del warm, _
    run, keep = _steps(engine, channels, size, batch)
    gc.collect()
    if _reset_peak():
        method = "VmHWM after resetting it (/proc/self/clear_refs), minus VmRSS before the steps"
        base = _status_kib()["VmRSS"]
        for _ in range(steps):
            run()
        peak = _status_kib()["VmHWM"]
    else:
        method = "ru_maxrss after minus ru_maxrss before the steps (a lower bound)"
        base = _maxrss_kib()
        for _ in range(steps):
            run()
        peak = _maxrss_kib()
    print(json.dumps({"baseline_mib": base / 1024, "peak_mib": peak / 1024,
                      "step_peak_mib": (peak - base) / 1024, "steps": steps, "method": method}))
