"""Where the time of one minicnn training step goes: each kernel, and the rest.

The step runs several times under `trace.record`. Kernel time is summed per
(op, shape), each op named with what it fuses ("conv2d_forward+relu+pool": the
conv, its ReLU and its 2x2 max-pool in one call, so the pool has no row of its
own). Whatever the step took beyond its kernels is spent outside them: Python
in autograd, Tensor wrappers, argument checks, the optimiser's loop.
"""
import statistics
import time

from . import step as stepmod
from . import trace


def _shape_of(call):
    first = call.args[0]
    return "x".join(str(d) for d in getattr(first, "shape", ())) or "-"


def profile(channels, size, batch, reps=5):
    """{"step_s", "kernels_s", "outside_s", "rows": [{kernel, shape, calls, seconds, share}]}."""
    model = stepmod.make_model(channels, size)
    x, t = stepmod.make_batch(batch, channels, size)
    run_step = stepmod.minicnn_step(model, x, t)
    run_step()  # warm-up: compile or load every kernel
    totals, in_kernels, per_key = [], [], {}
    for _ in range(reps):
        with trace.record("cpu") as calls:
            t0 = time.perf_counter()
            run_step()
            totals.append(time.perf_counter() - t0)
        in_kernels.append(sum(c.seconds for c in calls))
        step_keys = {}
        for c in calls:
            key = (trace.label(c), _shape_of(c))
            n, s = step_keys.get(key, (0, 0.0))
            step_keys[key] = (n + 1, s + c.seconds)
        for key, (n, s) in step_keys.items():
            per_key.setdefault(key, []).append((n, s))
        del calls
    step_s = statistics.median(totals)
    rows = []
    for (name, shape), samples in per_key.items():
        seconds = statistics.median(s for _, s in samples)
        rows.append({"kernel": name, "shape": shape, "calls": samples[0][0], "seconds": seconds,
                     "share": seconds / step_s})
    rows.sort(key=lambda r: -r["seconds"])
    outside = statistics.median(total - k for total, k in zip(totals, in_kernels))
    return {"input": f"{size}x{size}x{channels}", "batch": batch, "reps": reps, "step_s": step_s,
            "kernels_s": statistics.median(in_kernels), "outside_s": outside, "rows": rows}
