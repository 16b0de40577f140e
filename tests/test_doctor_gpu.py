"""`minicnn doctor --gpu` (minicnn/cli/gpu_check.py) and the cuda device's start-up proof.

On a machine without a GPU the command must explain itself: exit EXIT_NO_GPU (documented
in --help), name what is missing in cupy's words, list what it would run, print the facts
that need no GPU, and show no traceback. The one-page report is a pure function, tested
here on fabricated results with the ratios worked out from the given times. The start-up
proof of minicnn/backends/cuda.py runs against a stand-in cupy that sees a GPU but cannot
compile, or runs the kernel and writes the wrong values.
"""
import contextlib
import importlib.util
import io
import os
import re
import sys
import textwrap
import types

import pytest

from minicnn import cli
from minicnn.cli import gpu_check as G

from cli_run import run_cli

NO_GPU = G.gpu_problem()
needs_no_gpu = pytest.mark.skipif(NO_GPU is None, reason="a GPU works here: doctor --gpu "
                                                         "runs the checks instead")


def _flat(text):
    return " ".join(text.split())


@needs_no_gpu
def test_without_gpu_it_explains_itself_and_exits_with_the_documented_code():
    code, out, err = run_cli("doctor", "--gpu")   # an exception would fail the test here
    assert code == G.EXIT_NO_GPU, out + err
    assert "Traceback" not in out + err
    flat = _flat(out)
    assert "no usable GPU" in flat
    assert _flat(NO_GPU) in flat, "the page does not give the reason, in cupy's words"
    assert "cupy" in NO_GPU
    for step in G.PLAN:
        assert _flat(step) in flat, f"the page does not say it would run: {step}"
    for key, _ in G.facts():
        assert re.search(rf"^\s+{re.escape(key)}\s", out, re.M), f"no fact {key!r}"
    buf = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(buf):
        cli.main(["doctor", "--help"])
    assert done.value.code == 0
    help_text = buf.getvalue()
    assert re.search(rf"^\s+{G.EXIT_NO_GPU}\s+no usable GPU", help_text, re.M), help_text


def test_without_cupy_the_reason_names_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)      # import cupy -> ImportError
    monkeypatch.delitem(sys.modules, "minicnn.backends.cuda", raising=False)
    from minicnn import backends
    monkeypatch.setattr(backends, "_loaded", {k: v for k, v in backends._loaded.items()
                                              if k != "cuda"})
    reason = G.gpu_problem()
    assert reason is not None and "cupy is not installed" in reason
    assert "pip install" in reason
    rows = dict(G.facts())
    assert rows["cupy"].startswith("not installed")
    page = G.format_no_gpu(list(rows.items()), reason)
    assert _flat(reason) in _flat(page) and f"exit {G.EXIT_NO_GPU}" in page


def test_nvrtc_facts_say_whether_every_kernel_file_compiles():
    ok, text = G.nvrtc_compiles(archs=("compute_75",))
    if ok is None:
        pytest.skip(f"NVRTC is not loadable here: {text}")
    from minicnn.backends._cuda_glue import KERNEL_DIR
    n = len(list(KERNEL_DIR.glob("*.cu")))
    assert ok is True and f"all {n} .cu files compile" in text
    tc = G.toolchain()
    assert tc["nvrtc"] and re.fullmatch(r"\d+\.\d+", tc["nvrtc"]), tc
    assert tc["pair_ok"] == (int(tc["nvrtc"].split(".")[0]) ==
                             int(tc["cuda_runtime"].split(".")[0]))


# ------------------------------------------------------------ the page, on given results

def _fabricated():
    results = [G.Result("start-up kernel", G.PASS, "ran"),
               G.Result("cuda-device tests", G.PASS, "412 passed"),
               G.Result("twin training cpu/cuda", G.FAIL, "losses differ at step 3"),
               G.Result("compute-sanitizer racecheck", G.SKIP, "did not finish in 35 s")]
    ratios = [G.Ratio("sgemm", "4096x4096x4096", 2.0e-3, 1.3e-3, "cuBLAS"),
              G.Ratio("conv2d forward", "conv2 x 32x16x112x112", 4.0e-4, 1.0e-4, "cuDNN"),
              G.Ratio("training step", "224x224x3 batch 16", 0.05, 0.8, "cpu, 16 cores"),
              G.Ratio(G.OTHER_OPS, "conv2d backward conv1", 1.0e-3, 5.0e-4, "PyTorch")]
    return results, ratios


def _row(page, case):
    rows = [ln for ln in page.splitlines() if case in ln]
    assert len(rows) == 1, f"{case!r}: {rows}"
    return rows[0]


def test_report_states_each_ratio_against_its_target():
    results, ratios = _fabricated()
    page = G.format_report("NVIDIA test GPU, 132 SMs", [("cupy", "14.2.0")], results, ratios,
                           elapsed_s=201.0)
    given = [(2.0e-3, 1.3e-3), (4.0e-4, 1.0e-4), (0.05, 0.8), (1.0e-3, 5.0e-4)]
    for r, (mine, other) in zip(ratios, given):
        want = other / mine
        assert r.ratio == pytest.approx(want)
        row = _row(page, r.case)
        assert f"{want:.2f}" in row.split(), row
        if r.kind == G.OTHER_OPS:               # timed for information: no verdict
            assert row.split()[0] == "-" and row.split()[-1] == "-", row
            continue
        assert row.split()[0] == ("met" if want >= G.TARGETS[r.kind] else "BELOW"), row
        assert f">= {G.TARGETS[r.kind]:g}" in row
    for r in results:
        assert re.search(rf"^\s+{r.status}\s+{re.escape(r.name)}\s+{re.escape(r.detail)}",
                         page, re.M), r
    assert "2 passed, 1 failed, 1 skipped; 2 of 3 speed targets met in 201 s; exit 1" in page
    assert page.startswith("minicnn doctor --gpu: NVIDIA test GPU")
    assert len(page.splitlines()) < 60, "not one page"


def test_exit_code_orders_failures_before_missed_targets():
    results, ratios = _fabricated()
    assert G.exit_code(results, ratios) == G.EXIT_FAILED
    passed = [r for r in results if r.status != G.FAIL]
    assert G.exit_code(passed, ratios) == G.EXIT_BELOW_TARGET
    fast = [r for r in ratios if r.met]
    assert len(fast) == 3 and G.exit_code(passed, fast) == G.EXIT_OK


def test_junit_summary_counts_and_reasons(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(textwrap.dedent("""\
        <testsuites><testsuite name="pytest" tests="4">
          <testcase classname="tests.test_a" name="test_one[cuda]"/>
          <testcase classname="tests.test_a" name="test_two[cuda]"/>
          <testcase classname="tests.test_b" name="test_bad[cuda]"><failure message="x"/></testcase>
          <testcase classname="tests.test_b" name="test_skip[cuda]">
            <skipped message="no CUDA GPU visible to cupy"/></testcase>
        </testsuite></testsuites>"""))
    passed, failed, skipped, names, reasons = G.summarize_junit(xml)
    assert (passed, failed, skipped) == (2, 1, 1)
    assert names == ["test_b::test_bad[cuda]"]
    assert reasons == {"no CUDA GPU visible to cupy": 1}


def test_cuda_tests_run_only_the_cuda_cases_and_report_each_outcome(tmp_path):
    """run_cuda_tests end to end on a tiny suite: the plugin keeps the "cuda" cases and
    the gpu-marked test (a case that ran on another device would fail), and the JUnit
    counts and the failing test's name reach the Result."""
    (tmp_path / "conftest.py").write_text(
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'gpu: needs a GPU')\n")
    (tmp_path / "test_sel.py").write_text(textwrap.dedent("""\
        import pytest

        @pytest.fixture(params=["cpu", "cuda-sim", "cuda"])
        def backend(request):
            return request.param

        def test_every_device(backend):
            assert backend == "cuda"

        @pytest.mark.parametrize("device", ["cpu", "cuda"])
        def test_named(device):
            assert device == "cpu", "fails on cuda, on purpose"

        @pytest.mark.gpu
        def test_marked():
            pass

        @pytest.mark.skipif(True, reason="not on this machine")
        @pytest.mark.gpu
        def test_skipped():
            pass

        def test_plain():
            assert False, "not a cuda test: must not run"
        """))
    r = G.run_cuda_tests(120, tests=tmp_path, select=tmp_path / "test_sel.py")
    assert r.status == G.FAIL, r
    assert r.detail.startswith("2 passed, 1 failed, 1 skipped"), r.detail
    assert "failed: test_sel::test_named[cuda]" in r.detail
    assert "skipped because: not on this machine" in r.detail


def test_sanitizer_runs_each_tool_and_reads_its_verdict(tmp_path, monkeypatch):
    """A stand-in compute-sanitizer on PATH: the command it gets (tool, error exit code,
    cupy's pool off, the kernel tests) and the verdicts read from its output."""
    log = tmp_path / "argv"
    exe = tmp_path / "compute-sanitizer"
    exe.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s\\n' "$@" > {log}
        if [ "$FAKE_SLOW" = 1 ]; then sleep 30; fi
        if [ "$FAKE_ERRORS" = 1 ]; then
            echo "========= Invalid __global__ read of size 4 bytes"
            echo "========= ERROR SUMMARY: 1 error"
            exit 86
        fi
        echo "========= ERROR SUMMARY: 0 errors"
        """))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    tests = G.repo_tests()
    ok = G.run_sanitizer("racecheck", 60, tests=tests)
    argv = log.read_text().splitlines()
    assert ok.status == G.PASS and "ERROR SUMMARY: 0 errors" in ok.detail, ok
    assert argv[:4] == ["--tool", "racecheck", "--error-exitcode", "86"], argv
    assert any("set_allocator(None)" in a for a in argv)
    assert argv[-1] == str(tests.parent / G.SANITIZER_TESTS)
    monkeypatch.setenv("FAKE_ERRORS", "1")
    bad = G.run_sanitizer("memcheck", 60, tests=tests)
    assert bad.status == G.FAIL and "Invalid __global__ read of size 4 bytes" in bad.detail, bad
    monkeypatch.setenv("FAKE_SLOW", "1")
    slow = G.run_sanitizer("initcheck", 1, tests=tests)
    assert slow.status == G.SKIP and slow.detail.startswith("did not finish in 1 s"), slow


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """Every check of check_gpu replaced by a stand-in that records its call and uses
    all of the time it is given (on a clock of its own): the worst case of the budget."""
    calls, now = [], [0.0]

    def spend(what, timeout):
        calls.append((what, timeout))
        now[0] += timeout
    which = G.shutil.which
    monkeypatch.setattr(G, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(G, "gpu_problem", lambda: None)
    monkeypatch.setattr(G, "gpu_name", lambda: "Stand-in GPU, 2 SMs")
    monkeypatch.setattr(G, "twin_training",
                        lambda device: G.Result(f"twin training cpu/{device}", G.PASS, "agree"))
    monkeypatch.setattr(G, "run_cuda_tests", lambda timeout: spend("tests", timeout)
                        or G.Result("cuda-device tests", G.PASS, "9 passed"))
    monkeypatch.setattr(G, "run_sanitizer", lambda tool, timeout: spend(tool, timeout)
                        or G.Result(f"compute-sanitizer {tool}", G.PASS, "0 errors"))
    monkeypatch.setattr(G, "measure_speed", lambda device: (
        [], [G.Ratio("sgemm", "1024x1024x1024", 1.0e-3, 4.0e-4, "cuBLAS")]))
    monkeypatch.setattr(G.shutil, "which", lambda name: "/stand-in/compute-sanitizer"
                        if name == "compute-sanitizer" else which(name))
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return calls


def test_with_a_gpu_every_check_runs_and_the_page_gives_the_exit_code(stand_in_gpu):
    code, out, _ = run_cli("doctor", "--gpu")
    assert code == G.EXIT_BELOW_TARGET, out          # all passed, sgemm at 0.40 < 0.5
    assert out.startswith("minicnn doctor --gpu: Stand-in GPU, 2 SMs")
    assert [c[0] for c in stand_in_gpu] == ["tests", *G.SANITIZER_TOOLS]
    assert sum(t for _, t in stand_in_gpu) <= G.BUDGET_S + 1e-9   # each used all it got
    assert min(t for _, t in stand_in_gpu) >= 10
    for tool in G.SANITIZER_TOOLS:
        assert re.search(rf"^\s+PASS\s+compute-sanitizer {tool}\s", out, re.M), out
    assert re.search(r"^\s+BELOW\s+sgemm 1024x1024x1024\s.*\s0\.40\s", out, re.M), out
    assert f"7 passed, 0 failed, 0 skipped; 0 of 1 speed targets met in {G.BUDGET_S} s" in out


def test_with_a_gpu_the_budget_bounds_the_sanitizer_runs(stand_in_gpu):
    _, results, _ = G.check_gpu(budget_s=20, say=lambda *a, **k: None)
    skipped = [r for r in results if r.name.startswith("compute-sanitizer")]
    assert [r.status for r in skipped] == [G.SKIP] * len(G.SANITIZER_TOOLS)
    assert all("no time left in the 20 s budget" in r.detail for r in skipped)
    _, results, _ = G.check_gpu(no_sanitizer=True, say=lambda *a, **k: None)
    assert [c[0] for c in stand_in_gpu] == ["tests", "tests"]
    assert results[-1].status == G.SKIP and results[-1].detail == "--no-sanitizer"


def test_twin_training_compares_losses_and_weights_on_the_emulator():
    pytest.importorskip("minicnn.backends.cuda_sim", reason="the CUDA emulator needs g++")
    r = G.twin_training("cuda-sim", steps=2, inputs=(1, 16, 2))
    assert r.status == G.PASS, r
    assert re.search(r"losses max abs \S+ rel \S+; weights max abs \S+ rel \S+", r.detail)


# ---------------------------------------------- the cuda device's start-up proof

class _FakeArray:
    def __init__(self, values):
        self.values = values

    def get(self):
        return self.values


def _fake_cupy(kernel_error=None, writes=True):
    """A cupy that sees one GPU; its NVRTC compile raises kernel_error, or its kernel
    writes 2*i (writes=True) or nothing."""
    import numpy as np

    class RawKernel:
        def __init__(self, code, name, options=()):
            self.code = code

        def compile(self):
            if kernel_error is not None:
                raise kernel_error

        def __call__(self, grid, block, args):
            y, n = args
            if writes:
                y.values[:int(n)] = 2.0 * np.arange(int(n), dtype=np.float32)

    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 12090,
                                    driverGetVersion=lambda: 12040)
    cuda = types.SimpleNamespace(is_available=lambda: True, runtime=runtime,
                                 Device=lambda: types.SimpleNamespace(synchronize=lambda: None))
    return types.SimpleNamespace(
        __version__="99.0-fake", cuda=cuda, RawKernel=RawKernel, float32=np.float32,
        full=lambda n, v, dtype: _FakeArray(np.full(n, v, dtype=dtype)))


def _import_cuda_backend(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "cupy", fake)
    import minicnn.backends
    path = minicnn.backends.__path__[0] + "/cuda.py"
    spec = importlib.util.spec_from_file_location("minicnn_cuda_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_startup_says_why_a_kernel_does_not_compile(monkeypatch):
    err = RuntimeError("NVRTC_ERROR_INVALID_OPTION (5)\nmore lines")
    with pytest.raises(ImportError) as info:
        _import_cuda_backend(monkeypatch, _fake_cupy(kernel_error=err))
    msg = str(info.value)
    from minicnn.errors import UserError
    assert isinstance(info.value, UserError)
    assert msg.startswith("device 'cuda' needs cupy and an NVIDIA GPU: ")
    assert "could not compile a one-line kernel with NVRTC" in msg
    assert "RuntimeError: NVRTC_ERROR_INVALID_OPTION (5)" in msg and "more lines" not in msg
    assert "cupy 99.0-fake" in msg and "CUDA runtime 12.9" in msg
    assert "driver (CUDA) 12.4" in msg and "NVRTC" in msg


def test_startup_checks_what_the_kernel_wrote(monkeypatch):
    with pytest.raises(ImportError, match=r"the one-line kernel ran but wrote y\[0\] = "
                                          r"-1\.0, not 0\.0"):
        _import_cuda_backend(monkeypatch, _fake_cupy(writes=False))
