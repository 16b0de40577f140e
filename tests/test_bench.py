"""`minicnn bench` runs and reports sanely (never how fast anything is: the bench
itself checks its targets; a timed test on a shared machine would only be noise)."""
import argparse
import json
import math
import sys

import numpy as np
import pytest

import minicnn
from minicnn.cli import bench
from minicnn.cli.bench import cuda as bench_cuda
from minicnn.cli.bench import report, startup, trace
from minicnn.errors import UserError
from minicnn import functional as F


def _run(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


def _ratios(rep):
    """Every ratio in a report: ops, steps, memory."""
    return [r["ratio"] for r in rep["ops"]["rows"] + rep["steps"]] + [rep["memory"]["ratio"]]


def _positive_finite(value, what):
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, \
        f"{what} should be a positive finite number, got {value!r}"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("bench") / "report.json"
    code = _run(["--quick", "--parts", "ops,steps,profile,memory", "--json", str(path)])
    return code, path


def test_quick_report_has_every_part(quick_report):
    code, path = quick_report
    assert code == 0
    rep = json.loads(path.read_text())
    assert rep["schema"] == "minicnn-bench/1" and rep["device"] == "cpu"
    assert [p for p in path.parent.iterdir() if p.name != "report.json"] == [], \
        "the atomic write left a temporary file behind"
    ops = {(r["op"], r["layer"]) for r in rep["ops"]["rows"]}
    # ChestXrayCNN runs each Conv2d -> ReLU -> MaxPool2d as one call: its cases say so, and
    # no separate pool or plain conv case is made up for calls the step never makes
    for op, layer in [("conv2d+relu+pool forward", "conv1"), ("conv2d+relu+pool backward", "conv3"),
                      ("linear fwd+bwd", "fc1"), ("linear fwd+bwd", "fc2"),
                      ("cross_entropy fwd+bwd", "loss")]:
        assert (op, layer) in ops, f"no {op} case for {layer}; cases: {sorted(ops)}"
    assert not {op for op, _ in ops} & {"max_pool2d fwd+bwd", "conv2d forward"}, sorted(ops)
    assert [(r["input"], r["batch"]) for r in rep["steps"]] == [("16x16x1", 4), ("16x16x3", 4)]
    assert rep["memory"]["input"] == "32x32x3"
    assert rep["machine"]["numba_threads"] and rep["machine"]["torch_threads"]
    assert rep["machine"]["numpy_blas"]


def test_quick_report_figures_are_positive_and_finite(quick_report):
    rep = json.loads(quick_report[1].read_text())
    ratios = _ratios(rep)
    assert len(ratios) == len(rep["ops"]["rows"]) + len(rep["steps"]) + 1
    for r in ratios:
        _positive_finite(r, "a ratio")
    for row in rep["ops"]["rows"] + rep["steps"]:
        _positive_finite(row["minicnn_s"], f"minicnn time of {row}")
        _positive_finite(row["torch_s"], f"PyTorch time of {row}")
        assert row["reps"] >= 3
    for row in rep["steps"]:
        _positive_finite(row["flops"], "step FLOPs")
        _positive_finite(row["minicnn_images_per_s"], "images/s")
    # "% peak": each engine's GFLOP/s over the matmul peak measured in the same run
    peak = rep["peak"]["flops"]
    _positive_finite(peak, "the matmul peak")
    assert rep["peak"]["products"] >= 2 and rep["peak"]["n"] == 2048
    for row in rep["steps"]:
        for side in ("minicnn", "torch"):
            assert row[f"{side}_peak_share"] == pytest.approx(row[f"{side}_gflops"] * 1e9 / peak)
    for row in rep["ops"]["rows"]:
        for side in ("minicnn", "torch"):
            want = row["flops"] / row[f"{side}_s"] / peak if row["flops"] else None
            assert row[f"{side}_peak_share"] == (want if want is None else pytest.approx(want))
    prof = rep["profile"]
    assert prof["kernels_s"] <= prof["step_s"] * 1.05
    assert {r["kernel"] for r in prof["rows"]} >= {"conv2d_forward+relu+pool",
                                                   "conv2d_backward+relu+pool", "sgd_step"}
    for side in ("minicnn", "torch"):
        _positive_finite(rep["memory"][side]["baseline_mib"], f"{side} baseline memory")


def test_targets_are_judged_from_the_figures(quick_report):
    rep = json.loads(quick_report[1].read_text())
    conv = [r for r in rep["ops"]["rows"] if r["op"].startswith("conv2d")]
    assert conv and all(r["target"] == report.CONV_TARGET for r in conv)
    for r in conv:
        assert r["status"] == ("PASS" if r["ratio"] >= report.CONV_TARGET else "BELOW")
    assert all(r["target"] is None for r in rep["steps"])  # 16 px is not a target size
    m = rep["memory"]
    assert m["status"] == ("PASS" if m["ratio"] <= report.MEMORY_TARGET else "BELOW")
    assert len(rep["targets"]) == len(conv) + 1


def test_bench_without_pytorch_reports_minicnn_alone(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    path = tmp_path / "r.json"
    assert _run(["--quick", "--parts", "ops,steps", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PyTorch is not installed" in out
    assert "peak: float32 matmul" in out and "% peak" in out
    rep = json.loads(path.read_text())
    assert rep["machine"]["torch"] is None
    for row in rep["ops"]["rows"] + rep["steps"]:
        assert row["torch_s"] is None and row["ratio"] is None and row["torch_peak_share"] is None
        _positive_finite(row["minicnn_s"], "minicnn time")
    for row in rep["steps"]:
        _positive_finite(row["minicnn_peak_share"], "minicnn's share of the peak")
    assert {t["status"] for t in rep["targets"]} == {"n/a"}


def _step_row(**given):
    row = {"input": "28x28x1", "batch": 8, "minicnn_s": 0.01, "minicnn_images_per_s": 800.0,
           "minicnn_gflops": 5.0, "torch_s": 0.02, "torch_images_per_s": 400.0,
           "torch_gflops": 2.5, "ratio": 2.0, "target": None, "status": "n/a"}
    return dict(row, **given)


def test_tables_show_each_engines_share_of_the_peak():
    rows = [_step_row(minicnn_peak_share=0.125, torch_peak_share=0.0625)]
    lines = report.steps_text(rows, peak_flops=40e9).splitlines()
    head = lines[0].split()
    assert head[:5] == ["input", "batch", "minicnn", "ms", "img/s"]
    cells = lines[2].split()
    # input, batch, ms, img/s, GFLOP/s, % peak, torch ms, img/s, GFLOP/s, % peak, ratio
    assert cells[4:6] == ["5.0", "12.5%"] and cells[8:10] == ["2.5", "6.2%"], cells
    assert lines[0].count("% peak") == 2
    assert "% peak" not in report.steps_text(rows)               # no peak measured (CUDA)
    section = {"peak_flops": 40e9, "rows": [
        {"op": "conv2d forward", "layer": "conv1", "shape": "x", "minicnn_s": 0.001,
         "minicnn_rate": "20.0 GFLOP/s", "torch_s": 0.002, "torch_rate": "10.0 GFLOP/s",
         "minicnn_peak_share": 0.5, "torch_peak_share": 0.25, "ratio": 2.0, "target": 0.8,
         "status": "PASS"},
        {"op": "max_pool2d fwd+bwd", "layer": "pool1", "shape": "x", "minicnn_s": 0.001,
         "minicnn_rate": "1.00 GB/s", "torch_s": 0.001, "torch_rate": "1.00 GB/s",
         "minicnn_peak_share": None, "torch_peak_share": None, "ratio": 1.0, "target": None,
         "status": "n/a"}]}
    text = report.ops_text(section)
    conv, pool = (line.split() for line in text.splitlines()[2:4])
    assert conv[5:8] == ["20.0", "GFLOP/s", "50.0%"] and conv[9:12] == ["10.0", "GFLOP/s", "25.0%"]
    assert pool[6:9] == ["GB/s", "-", "1.000"] and pool[10:12] == ["GB/s", "-"], pool
    assert "% peak" not in report.ops_text(dict(section, peak_flops=None))


def test_matmul_peak_is_best_of_a_few_products_within_its_budget():
    from minicnn.cli.bench import machine
    peak = machine.matmul_peak(n=256, most=5, budget_s=0.0)
    assert peak["products"] == 2 and peak["n"] == 256            # the budget stops it at two
    _positive_finite(peak["flops"], "peak")
    assert peak["flops"] >= 2 * 256 ** 3 / peak["seconds"]       # the best beats the average
    assert machine.matmul_peak(n=64, most=3, budget_s=60.0)["products"] == 3


def test_a_blas_pinned_below_the_cpus_vector_width_is_named():
    from minicnn.cli.bench import machine
    avx512, avx2 = {"avx2", "avx512f"}, {"avx2"}
    note = machine.blas_held_back("Haswell", "Haswell", avx512)
    assert "OPENBLAS_CORETYPE=Haswell" in note and "AVX-512" in note and "env -u" in note
    assert machine.blas_held_back("haswell", "Zen", avx512) is not None
    assert machine.blas_held_back(None, "Haswell", avx512) is None        # OpenBLAS chose it
    assert machine.blas_held_back("SkylakeX", "SkylakeX", avx512) is None  # uses AVX-512
    assert machine.blas_held_back("Haswell", "Haswell", avx2) is None      # all the CPU has
    assert machine.blas_held_back("Haswell", None, avx512) is None         # not OpenBLAS
    facts = {"blas_held_back": note, "numba_threads": "2 threads", "numpy_blas": "openblas",
             "torch_threads": "2 threads", "cores": 2, "load_average_1m": 0.1}
    below = [{"status": "BELOW", "what": "training step", "value": 0.9, "target": ">= 1x"}]
    assert f"note: {note}" in report.targets_text(below, facts)
    passed = [dict(below[0], status="PASS", value=1.3)]
    assert "note:" not in report.targets_text(passed, facts)   # nothing to explain
    assert "note:" not in report.targets_text(below, dict(facts, blas_held_back=None))


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="at least 8"):
        _run(["--quick", "--sizes", "4"])
    with pytest.raises(UserError, match="unknown part"):
        _run(["--quick", "--parts", "ops,speed"])
    with pytest.raises(UserError, match="positive integers"):
        _run(["--quick", "--batch", "0"])


def test_device_cuda_without_a_gpu_says_so():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="bench --device cuda: .*GPU"):
        _run(["--quick", "--device", "cuda"])


def _cuda_sim_or_skip():
    try:
        from minicnn.backends import cuda_sim  # noqa: F401
    except Exception as exc:
        pytest.skip(f"cuda-sim backend unavailable: {exc}")


def test_kernel_check_passes_the_cuda_kernels_on_the_emulator():
    _cuda_sim_or_skip()
    rows = bench_cuda.check_kernels("cuda-sim", 1, 8, 2)
    traced = {r["kernel"] for r in rows if r["traced"]}
    # what a fused step calls: the three convs pool inside conv2d_forward / _backward
    assert traced >= {"conv2d_forward", "conv2d_backward", "linear_backward", "relu_backward",
                      "cross_entropy_backward", "sgd_step"}
    assert not traced & {"max_pool2d_forward", "max_pool2d_backward"}
    fused = [r["shape"] for r in rows if r["kernel"] == "conv2d_forward"]
    assert fused == ["2x1x8x8 +relu+pool", "2x16x4x4 +relu+pool", "2x32x2x2 +relu+pool"]
    # the pool kernels the fused calls compose, checked on their own at the conv outputs
    pools = [(r["kernel"], r["shape"].split()[0]) for r in rows if not r["traced"]]
    assert pools == [("max_pool2d_forward", "2x16x8x8"), ("max_pool2d_backward", "2x16x4x4"),
                     ("max_pool2d_forward", "2x32x4x4"), ("max_pool2d_backward", "2x32x2x2"),
                     ("max_pool2d_forward", "2x64x2x2"), ("max_pool2d_backward", "2x64x1x1")]
    bad = [r for r in rows if not r["ok"]]
    assert not bad, f"kernels disagree with the reference: {bad}"


def test_kernel_check_catches_a_wrong_pool_kernel(monkeypatch):
    _cuda_sim_or_skip()
    from minicnn import backends
    from minicnn.backends._cuda_glue import CudaKernels
    be = backends.get("cuda-sim")
    right = CudaKernels.max_pool2d_backward

    def wrong(self, gy, idx, x_shape):
        return right(self, gy, idx, x_shape) * np.float32(1.01)
    # the table entry alone: only the pool's own check can see it
    monkeypatch.setattr(be, "max_pool2d_backward", wrong.__get__(be))
    rows = bench_cuda.check_kernels("cuda-sim", 1, 8, 2)
    assert {r["kernel"] for r in rows if not r["ok"]} == {"max_pool2d_backward"}
    # the glue the fused backward composes (the table entry kept right): the fused check sees it
    monkeypatch.setattr(be, "max_pool2d_backward", right.__get__(be))
    monkeypatch.setattr(CudaKernels, "max_pool2d_backward", wrong)
    rows = bench_cuda.check_kernels("cuda-sim", 1, 8, 2)
    wrong_rows = [r for r in rows if not r["ok"]]
    assert wrong_rows and {r["kernel"] for r in wrong_rows} == {"conv2d_backward"}, wrong_rows
    assert all(r["shape"].endswith("+relu+pool") for r in wrong_rows)


def test_kernel_check_catches_a_wrong_kernel(monkeypatch):
    _cuda_sim_or_skip()
    from minicnn import backends
    be = backends.get("cuda-sim")
    right = be.relu_backward
    monkeypatch.setattr(be, "relu_backward", lambda gy, y: right(gy, y) * np.float32(1.01))
    rows = bench_cuda.check_kernels("cuda-sim", 1, 8, 2)
    wrong = [r for r in rows if not r["ok"]]
    assert wrong and {r["kernel"] for r in wrong} == {"relu_backward"}, wrong
    assert "vs reference" in wrong[0]["detail"]


def test_flop_count_of_a_recorded_conv_and_linear():
    x = minicnn.tensor(np.ones((2, 3, 8, 8), np.float32))
    w = minicnn.tensor(np.ones((4, 3, 3, 3), np.float32), requires_grad=True)
    lw = minicnn.tensor(np.ones((5, 4 * 4 * 4), np.float32), requires_grad=True)
    with trace.record("cpu") as calls:
        y = F.conv2d(x, w, stride=2, padding=1)          # (2, 4, 4, 4)
        F.linear(y.reshape((2, 64)), lw).sum().backward()
    by_name = {c.name: trace.flops(c) for c in calls}
    conv = 2 * 2 * 4 * 3 * 3 * 3 * 4 * 4
    assert by_name["conv2d_forward"] == conv
    assert by_name["conv2d_backward"] == conv        # weight gradient only: x needs none
    assert by_name["linear_forward"] == 2 * 2 * 64 * 5
    assert by_name["linear_backward"] == 2 * (2 * 2 * 64 * 5)


def test_flops_of_a_fused_conv_count_the_conv_not_the_pooled_output():
    x = minicnn.tensor(np.ones((2, 3, 8, 8), np.float32))
    w = minicnn.tensor(np.ones((4, 3, 3, 3), np.float32), requires_grad=True)
    with trace.record("cpu") as calls:
        F.conv2d_relu_pool(x, w, None, 1, 1).sum().backward()   # (2, 4, 8, 8) pooled to 4x4
    by_name = {c.name: c for c in calls}
    assert set(by_name) == {"conv2d_forward", "conv2d_backward"}
    conv = 2 * 2 * 4 * 3 * 3 * 3 * 8 * 8
    assert trace.flops(by_name["conv2d_forward"]) == conv
    assert trace.flops(by_name["conv2d_backward"]) == conv      # weight gradient only
    assert [trace.label(c) for c in calls] == ["conv2d_forward+relu+pool",
                                               "conv2d_backward+relu+pool"]
    assert trace.pooled_input_shape(by_name["conv2d_forward"]) == (2, 4, 8, 8)
    assert trace.backward_of(by_name["conv2d_forward"], calls) is by_name["conv2d_backward"]


def _outputs(value):
    return value if isinstance(value, tuple) else (value,)


def test_fused_conv_cases_run_what_pytorch_runs_for_the_three_layers():
    pytest.importorskip("torch")
    from minicnn.cli.bench import ops
    cases = {(c.op, c.layer): c for c in ops.cases(1, 16, 4)}
    for k in (1, 2, 3):
        fwd = cases[("conv2d+relu+pool forward", f"conv{k}")]
        bwd = cases[("conv2d+relu+pool backward", f"conv{k}")]
        # the backward does the work the traced step did: conv1 has no input gradient
        assert bwd.flops == fwd.flops * (1 if k == 1 else 2)
        (yp, _), (typ, _) = fwd.ours(), fwd.theirs()
        assert yp.shape == tuple(typ.shape) and yp.shape[2] == 16 // 2 ** k
        np.testing.assert_allclose(yp, typ.numpy(), rtol=1e-4, atol=1e-5)
        ours, theirs = bwd.ours(), bwd.theirs()
        assert (ours[0] is None) == (theirs[0] is None) == (k == 1)
        for g, tg in zip(ours, theirs):
            if g is not None:
                np.testing.assert_allclose(g, tg.numpy(), rtol=1e-4, atol=1e-4)


def test_a_model_without_the_fusion_keeps_its_conv_and_pool_cases():
    pytest.importorskip("torch")
    from minicnn.cli.bench import ops
    rng = np.random.default_rng(0)
    x = minicnn.tensor(rng.standard_normal((2, 1, 8, 8), dtype=np.float32))
    w = minicnn.tensor(rng.standard_normal((4, 1, 3, 3), dtype=np.float32), requires_grad=True)
    with trace.record("cpu") as calls:
        F.max_pool2d(F.relu(F.conv2d(x, w, None, 1, 1)), 2).sum().backward()
    cases = ops.cases_of(calls)
    assert [(c.op, c.layer) for c in cases] == [
        ("conv2d forward", "conv1"), ("conv2d backward", "conv1"), ("max_pool2d fwd+bwd", "pool1")]
    assert cases[1].flops == cases[0].flops                      # x needs no gradient
    for c in cases:
        c.ours()
        c.theirs()


def test_child_process_failure_is_reported_with_its_last_line():
    with pytest.raises(RuntimeError, match="ValueError: no such engine"):
        startup._child("raise ValueError('no such engine')", None, 60)
    assert startup._child("print('{\"seconds\": 1.5}')", None, 60)["seconds"] == 1.5


def test_compare_alternates_and_settles_each_side_before_its_sample():
    from minicnn.cli.bench.timing import compare
    log = []

    class Clock:                       # every sample "takes" one second: the order is what counts
        def start(self):
            log.append("|")

        def stop(self):
            return 1.0

    res = compare(lambda: log.append("a"), lambda: log.append("b"), reps=3, warmup=1,
                  sample_s=0.0, settle_s=1e-9, clock=Clock())
    assert res["reps"] == 3 and res["a"] == res["b"] == 1.0
    # warm-up a, b; then per rep each side: a settling call, then the timed call after "|"
    assert "".join(log) == "ab" + "a|ab|b" + "b|ba|a" + "a|ab|b"
    log.clear()
    compare(lambda: log.append("a"), lambda: log.append("b"), reps=2, warmup=0,
            sample_s=0.0, settle_s=0.0, clock=Clock())
    assert "".join(log) == "|a|b" + "|b|a"                       # settle_s=0: no settling


# ----------------------------------------------------------------------------- bench --ladder OP

def _table_rows(text, rung_names):
    """{(block, rung name): [cells]} of the ladder table: the rows under each block header."""
    rows, block = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and ": " in line and not line.startswith("layer"):
            block = line.split(":")[0]
        parts = line.split()
        if block and parts and parts[0] in rung_names and "|" in line:
            rows[(block, parts[0])] = [c.split() for c in line.split("|")]
    return rows


def test_ladder_times_every_rung_checked(capsys, tmp_path):
    from minicnn.cli.bench import ladder as bench_ladder
    from minicnn.kernels.cpu import ladder

    path = tmp_path / "ladder.json"
    assert _run(["--ladder", "conv2d", "--quick", "--reps", "1", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert "float32 matmul peak" in text and "copy bandwidth" in text
    names = [r.name for r in ladder.rungs("conv2d")]
    rows = _table_rows(text, names)
    blocks = ("conv1", "conv2", "conv3", "all")
    for block in blocks:
        for k, name in enumerate(names):
            cells = rows.get((block, name))
            assert cells, f"no row for {block} {name} in:\n{text}"
            assert cells[0][-1] == "ok", cells
            for pas in (1, 2):                      # fwd, bwd: ms, GFLOP/s, x prev, %peak
                ms, rate, up, share = cells[pas]
                _positive_finite(float(ms), f"{block} {name} ms")
                _positive_finite(float(rate), f"{block} {name} GFLOP/s")
                assert (up == "-") == (k == 0) and (k == 0 or up.endswith("x")), up
                assert share.endswith("%") and float(share[:-1]) > 0
    rep = json.loads(path.read_text())
    assert rep["schema"] == "minicnn-bench-ladder/1" and rep["op"] == "conv2d"
    _positive_finite(rep["peak"], "peak")
    _positive_finite(rep["bandwidth"], "bandwidth")
    # the shares printed are the times against the peak measured in the same run
    conv2 = rep["layers"][1]
    v3 = conv2["rungs"][2]
    share = conv2["flops"]["fwd"] / v3["fwd_s"] / rep["peak"] * 100
    assert float(rows[("conv2", "v3")][1][3][:-1]) == pytest.approx(share, abs=0.06)
    # the layers are ChestXrayCNN's at 16x16, batch 4 (from a traced forward pass)
    assert [l["shape"] for l in rep["layers"]] == [
        "4x1x16x16 * 16x1x3x3 s1 p1", "4x16x8x8 * 32x16x3x3 s1 p1", "4x32x4x4 * 64x32x3x3 s1 p1"]
    assert bench_ladder.totals(rep)["rungs"][0]["fwd_s"] == pytest.approx(
        sum(l["rungs"][0]["fwd_s"] for l in rep["layers"]))


def test_ladder_reports_a_wrong_rung_and_fails(capsys, monkeypatch):
    from minicnn.kernels.cpu import ladder

    v1, v2, v3 = ladder.RUNGS["linear"]
    broken = v2._replace(forward=lambda x, w, b: v2.forward(x, w, b) + 1e-2)
    monkeypatch.setitem(ladder.RUNGS, "linear", (v1, broken, v3))
    assert _run(["--ladder", "linear", "--quick", "--reps", "1"]) == 1
    rows = _table_rows(capsys.readouterr().out, ("v1", "v2", "v3"))
    for block in ("fc1", "fc2"):
        assert rows[(block, "v2")][0][-1] == "WRONG"
        assert rows[(block, "v2")][1] == ["-"] * 4, "a wrong rung must not be timed"
        assert rows[(block, "v1")][0][-1] == "ok" and rows[(block, "v3")][0][-1] == "ok"
        assert rows[(block, "v3")][1][2] == "-", "no speed-up over a rung that was not timed"


def test_ladder_pooling_is_judged_against_bandwidth(capsys):
    assert _run(["--ladder", "max_pool2d", "--quick", "--reps", "1"]) == 0
    text = capsys.readouterr().out
    assert "GB/s" in text and "%bandwidth" in text and "GFLOP/s  x prev" not in text
    rows = _table_rows(text, ("v1", "v2", "v3"))
    assert {b for b, _ in rows} == {"pool1", "pool2", "pool3", "all"}
    # each pool layer is the one inside a fused conv call: 2x2 over that conv's output
    for block in ("pool1: 4x16x16x16 k2 s2", "pool2: 4x32x8x8 k2 s2", "pool3: 4x64x4x4 k2 s2"):
        assert block in text.splitlines(), f"no block {block!r} in:\n{text}"
    # v3's backward is v2's own code: said so, not passed off as a speed-up
    assert rows[("pool1", "v3")][2][2] == "same" and rows[("pool1", "v3")][1][2].endswith("x")


def test_ladder_bad_options_are_user_errors():
    with pytest.raises(UserError, match="--op-size takes one image size of at least 8.*'4'"):
        _run(["--ladder", "conv2d", "--op-size", "4"])
    with pytest.raises(UserError, match="--batch takes one positive batch size.*'32,64'"):
        _run(["--ladder", "conv2d", "--batch", "32,64"])
    with pytest.raises(UserError, match="kernel ladder is the CPU's.*--device cuda"):
        _run(["--ladder", "conv2d", "--device", "cuda"])
    with pytest.raises(SystemExit):                 # argparse: not an op of the ladder
        _run(["--ladder", "conv3d"])
