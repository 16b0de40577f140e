"""Timing two implementations of the same work fairly, in one process.

Both sides get the same inputs and the same warm-up. Repetitions alternate
(A B, B A, A B, ...) so that drift on a shared machine (another process waking
up, the CPU clocking down) falls on both sides alike, and the median of each
side is reported: one slow outlier does not move it.

Before each timed sample the side about to be timed runs untimed for a moment
(at least one call and settle_s seconds, 0.2 s by default). Both engines keep
pools of threads that stay busy after a call, waiting for the next one:
PyTorch's OpenMP threads spin for milliseconds, and the threads of numpy's
OpenBLAS keep polling for about 0.1 s (2**28 cycles). A sample taken sooner
after the other engine's call shares the cores with those threads: measured
here, that made PyTorch's conv2d backward take 17 ms instead of 8 ms after
minicnn's (and minicnn's 26 ms instead of 13 ms after PyTorch's). After the
settling calls the other engine's threads have gone quiet and this engine's
are awake, so each sample measures one engine in its steady state, as a
training loop running that engine alone would see it.

A call that takes microseconds is timed in a loop of `inner` calls, chosen so
that one sample lasts a few milliseconds (sample_s); the figure is still per
call. With sample_s=0 every sample is one call (for calls that take seconds).
"""
import math
import statistics
import time


class WallClock:
    """Seconds between start() and stop(), by the CPU's monotonic clock."""

    def start(self):
        self.t0 = time.perf_counter()

    def stop(self):
        return time.perf_counter() - self.t0


def _calls_per_sample(fn, target_s, clock):
    """How many calls of fn make one sample of about target_s seconds."""
    clock.start()
    fn()
    once = max(clock.stop(), 1e-7)
    return max(1, min(10_000, math.ceil(target_s / once)))


def _settle(fn, settle_s):
    """Run fn untimed: at least once, and until settle_s seconds have passed
    (not at all when settle_s is 0)."""
    if settle_s <= 0:
        return
    end = time.perf_counter() + settle_s
    fn()
    while time.perf_counter() < end:
        fn()


def _sample(fn, inner, clock):
    clock.start()
    for _ in range(inner):
        fn()
    return clock.stop() / inner


def compare(a, b=None, reps=10, warmup=2, budget_s=30.0, sample_s=0.005, min_reps=3,
            clock=None, settle_s=0.2):
    """Median seconds per call of a() and of b() (None when b is None).

    a, b: functions of no arguments doing the same work. Each runs `warmup`
    times first (compilation, caches, allocator), then up to `reps` timed
    samples each, alternating which goes first, each after settle_s of untimed
    calls of its own (when there are two sides); stops early once `budget_s`
    has passed and both have at least `min_reps` samples. `clock` times a sample
    (WallClock by default; a GPU needs one that waits for its queue).
    Returns {"a": seconds, "b": seconds or None, "reps": samples per side,
    "a_min", "b_min": the fastest sample of each (a second opinion when the
    machine is busy)}.
    """
    clock = clock or WallClock()
    sides = [f for f in (a, b) if f is not None]
    for f in sides:
        for _ in range(warmup):
            f()
    inner = [_calls_per_sample(f, sample_s, clock) if sample_s > 0 else 1 for f in sides]
    times = [[] for _ in sides]
    start = time.perf_counter()
    for rep in range(reps):
        order = range(len(sides)) if rep % 2 == 0 else reversed(range(len(sides)))
        for k in order:
            if len(sides) > 1:
                _settle(sides[k], settle_s)
            times[k].append(_sample(sides[k], inner[k], clock))
        if rep + 1 >= min_reps and time.perf_counter() - start > budget_s:
            break
    medians = [statistics.median(t) for t in times]
    best = [min(t) for t in times]
    two = b is not None
    return {"a": medians[0], "b": medians[1] if two else None, "reps": len(times[0]),
            "a_min": best[0], "b_min": best[1] if two else None}
