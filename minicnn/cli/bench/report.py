"""Targets, tables and the JSON report of `minicnn bench`.

Ratios are minicnn/PyTorch throughput (PyTorch's time over minicnn's): above 1
means minicnn is faster. Memory is the other way round: minicnn's peak over
PyTorch's, so below 1 means minicnn needs less.
"""
import json
import math
import os
import tempfile

# (what, comparison, bound): the goals minicnn's CPU backend is held to
# training step throughput, x PyTorch, by image size: the file's own 28 px (what
# `minicnn train --data pneumoniamnist.npz` runs) at least even, the larger sizes 1.2x
STEP_TARGETS = {28: 1.0, 64: 1.2, 128: 1.2, 224: 1.2}
CONV_TARGET = 0.8        # conv2d forward and backward, each layer, x PyTorch
MEMORY_TARGET = 1.2      # 224-px RGB training step peak memory, x PyTorch's (at most)
COLD_TARGET_S = 20.0     # import + first training step, numba cache empty
WARM_TARGET_S = 3.0      # the same with the cache filled


def verdict(value, bound, higher_is_better=True):
    """"PASS" or "BELOW" (missing its target); "n/a" when there is no value."""
    if value is None or bound is None or not math.isfinite(value):
        return "n/a"
    ok = value >= bound if higher_is_better else value <= bound
    return "PASS" if ok else "BELOW"


def ratio(ours_s, theirs_s):
    """Throughput ratio minicnn/PyTorch from the two times (None without PyTorch)."""
    if ours_s is None or theirs_s is None or ours_s <= 0:
        return None
    return theirs_s / ours_s


def _ms(s):
    return "-" if s is None else f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.1f}"


def _num(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def _x(r):
    return "-" if r is None else f"{r:.2f}x"


def _target(bound, kind=">="):
    return "" if bound is None else f"{kind}{bound:g}x"


def table(header, rows):
    """Columns padded to fit; numbers right-aligned, text left-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells):
        out = []
        for c, w, h in zip(cells, widths, header):
            out.append(str(c).ljust(w) if h in ("op", "layer", "shape", "input", "status")
                       else str(c).rjust(w))
        return "  ".join(out).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _pct(share):
    return "-" if share is None else f"{share:.1%}"


def _with_peak(head, rows, after, keys, source):
    """head and rows with a "% peak" column after each column index in `after`, its
    values the source rows' keys[0], keys[1], ... in turn."""
    out_head, out_rows = [], [[] for _ in rows]
    col = 0
    for i, h in enumerate(head):
        out_head.append(h)
        for out, row in zip(out_rows, rows):
            out.append(row[i])
        if i in after:
            out_head.append("% peak")
            for out, r in zip(out_rows, source):
                out.append(_pct(r.get(keys[col])))
            col += 1
    return out_head, out_rows


def ops_text(section):
    """The per-op table; with a measured peak, a "% peak" column after each engine's rate."""
    rows = []
    for r in section["rows"]:
        rows.append([r["op"], r["layer"], r["shape"], _ms(r["minicnn_s"]),
                     r["minicnn_rate"] or "-", _ms(r["torch_s"]), r["torch_rate"] or "-",
                     _x(r["ratio"]), _target(r["target"]), r["status"] if r["target"] else ""])
    head = ["op", "layer", "shape", "minicnn ms", "rate", "torch ms", "rate", "ratio",
            "target", "status"]
    if section.get("peak_flops"):
        head, rows = _with_peak(head, rows, (4, 6), ("minicnn_peak_share", "torch_peak_share"),
                                section["rows"])
    return table(head, rows)


def steps_text(rows_in, peak_flops=None):
    """The training-step table; with a measured peak (FLOP/s), a "% peak" column after
    each engine's GFLOP/s."""
    rows = []
    for r in rows_in:
        rows.append([r["input"], r["batch"], _ms(r["minicnn_s"]), _num(r["minicnn_images_per_s"]),
                     _num(r["minicnn_gflops"]), _ms(r["torch_s"]), _num(r["torch_images_per_s"]),
                     _num(r["torch_gflops"]), _x(r["ratio"]), _target(r["target"]),
                     r["status"] if r["target"] else ""])
    head = ["input", "batch", "minicnn ms", "img/s", "GFLOP/s", "torch ms", "img/s", "GFLOP/s",
            "ratio", "target", "status"]
    if peak_flops:
        head, rows = _with_peak(head, rows, (4, 7), ("minicnn_peak_share", "torch_peak_share"),
                                rows_in)
    return table(head, rows)


def profile_text(prof):
    rows = [[p["kernel"], p["shape"], p["calls"], _ms(p["seconds"]), f"{p['share']:.1%}"]
            for p in prof["rows"]]
    body = table(["op", "shape", "calls", "ms/step", "share"], rows)
    return (f"{body}\n"
            f"kernels {_ms(prof['kernels_s'])} ms + outside kernels (Python: autograd, Tensor, "
            f"checks, optimiser loop) {_ms(prof['outside_s'])} ms = step {_ms(prof['step_s'])} ms; "
            f"outside share {prof['outside_s'] / prof['step_s']:.1%}")


def write_json(report, path):
    """Write the report to `path` atomically (a temporary file, then a rename)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def targets(report):
    """Every target the report can judge: [{what, value, target, status}]."""
    out = []
    for r in report.get("ops", {}).get("rows", []):
        if r["target"] is not None:
            out.append({"what": f"{r['op']} {r['layer']} ({report['ops']['input']})",
                        "value": r["ratio"], "target": f">= {r['target']:g}x", "status": r["status"]})
    for r in report.get("steps", []):
        if r["target"] is not None:
            out.append({"what": f"training step {r['input']} batch {r['batch']}",
                        "value": r["ratio"], "target": f">= {r['target']:g}x", "status": r["status"]})
    if "job" in report:
        j = report["job"]
        out.append({"what": f"training job {j['job']} ({j['epochs']} epochs), PyTorch wall / "
                            "minicnn wall", "value": j["ratio"], "target": f">= {j['target']:g}x",
                    "status": j["status"]})
    if "memory" in report:
        m = report["memory"]
        out.append({"what": f"peak memory {m['input']} batch {m['batch']}", "value": m["ratio"],
                    "target": f"<= {m['target']:g}x", "status": m["status"]})
    if "startup" in report:
        s = report["startup"]
        out.append({"what": "cold start (s)", "value": s["cold"]["seconds"],
                    "target": f"< {COLD_TARGET_S:g} s", "status": s["cold_status"]})
        out.append({"what": "warm start (s)", "value": s["warm"]["seconds"],
                    "target": f"< {WARM_TARGET_S:g} s", "status": s["warm_status"]})
    return out


def targets_text(items, facts):
    passed = sum(t["status"] == "PASS" for t in items)
    below = [t for t in items if t["status"] == "BELOW"]
    unjudged = sum(t["status"] == "n/a" for t in items)
    lines = [f"\nTargets: {passed} PASS, {len(below)} BELOW"
             + (f", {unjudged} not judged (no PyTorch to compare with)" if unjudged else "")]
    for t in below:
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  BELOW  {t['what']}: {value} (target {t['target']})")
    if below and facts.get("blas_held_back"):
        lines.append(f"  note: {facts['blas_held_back']}")
    lines.append(f"threads at the end: numba {facts['numba_threads']}; numpy BLAS "
                 f"{facts['numpy_blas']}; PyTorch {facts['torch_threads'] or 'not installed'}")
    load = facts.get("load_average_1m")
    if load is not None:
        lines.append(f"load average at the end: {load} on {facts['cores']} cores"
                     + (" (the machine was shared: treat small differences as noise)"
                        if load > 0.5 else ""))
    return "\n".join(lines)


def checks_text(rows):
    bad = [r for r in rows if not r["ok"]]
    lines = [f"{len(rows) - len(bad)} of {len(rows)} kernel calls agree with the reference"]
    lines += [f"  WRONG  {r['kernel']} {r['shape']}: {r['detail']}" for r in bad]
    return "\n".join(lines)


def gemm_text(rows):
    body = [[f"{r['n']}x{r['n']}x{r['n']}", _ms(r["minicnn_s"]), _num(r["minicnn_gflops"], "{:.0f}"),
             _ms(r["cublas_s"]), _num(r["cublas_gflops"], "{:.0f}"), _x(r["ratio"])] for r in rows]
    return table(["shape", "sgemm ms", "GFLOP/s", "cuBLAS ms", "GFLOP/s", "ratio"], body)
