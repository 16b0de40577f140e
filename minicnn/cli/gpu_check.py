"""`minicnn doctor --gpu`: the first real GPU, checked in one command, on one page.

On a machine with an NVIDIA GPU and cupy, in under five minutes (BUDGET_S):

  1. start-up      import the "cuda" backend: it compiles and launches a one-line kernel
                   (minicnn/backends/cuda.py) or says why, with the versions;
  2. tests         every test that runs on device "cuda" (the `backend` fixture's "cuda"
                   parameter, and the tests marked gpu), in a pytest subprocess;
  3. twin          ChestXrayCNN trained TWIN_STEPS steps on "cpu" and on "cuda" from the
                   same weights on the same batches: losses and final weights compared;
  4. speed         with a CUDA build of PyTorch: sgemm (linear_forward) against cuBLAS
                   (torch.matmul), conv2d forward against cuDNN at ChestXrayCNN's layer
                   shapes, and a 224-px RGB training step against the same step on the
                   "cpu" device; each ratio held to its target (TARGETS); the other
                   kernels of that step (conv2d backward, pooling, linear, the loss)
                   timed against PyTorch too, shown without a target;
  5. sanitizer     the kernel tests again under compute-sanitizer's memcheck, initcheck,
                   racecheck and synccheck, where the CUDA toolkit's compute-sanitizer
                   is on PATH (cupy's memory pool off, so every array is its own
                   allocation and an access past its end is seen).

Then one page (format_report): what passed, failed or was skipped and why, and the
ratios against the targets. Without a GPU it prints what it would run, why it cannot
(cupy's own words), the facts that need no GPU (cupy and NVRTC versions, whether every
.cu file compiles under NVRTC), and exits with EXIT_NO_GPU.

Every ratio is "how fast minicnn is next to the other side": the other side's time
divided by minicnn's (0.5 = half the speed of cuBLAS; 10 = ten times the CPU step).

This module is also a pytest plugin (pytest -p minicnn.cli.gpu_check): loaded that way it
keeps only the tests that run on device "cuda".
"""
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

import minicnn
from minicnn import backends
from minicnn import functional as F
from minicnn.backends._cuda_glue import KERNEL_DIR
from minicnn.cli.bench import ops
from minicnn.cli.bench import step as stepmod
from minicnn.cli.bench.cuda import EventClock, _worst
from minicnn.cli.bench.ops import torch_for
from minicnn.cli.bench.timing import WallClock, compare
from minicnn.nn.models import ChestXrayCNN
from minicnn.optim import SGD

EXIT_OK = 0             # every check passed and every target was met
EXIT_FAILED = 1         # a check failed (a test, the twin, a sanitizer, the start-up)
EXIT_NO_GPU = 3         # no usable GPU here: nothing that needs one ran
EXIT_BELOW_TARGET = 4   # every check passed, but a speed target was missed
EXIT_CODES_HELP = f"""exit codes of --gpu:
  {EXIT_OK}  every check passed and every speed target was met
  {EXIT_FAILED}  a check failed (start-up kernel, a cuda-device test, the twin training,
     compute-sanitizer)
  2  bad usage
  {EXIT_NO_GPU}  no usable GPU: cupy is missing, sees no GPU or driver, or cannot
     compile and launch a kernel; the page says which, in cupy's words (nothing
     that needs a GPU ran)
  {EXIT_BELOW_TARGET}  every check passed, but a speed ratio is below its target"""

BUDGET_S = 285                      # the whole --gpu run, start to page
TARGETS = {"sgemm": 0.5, "conv2d forward": 0.3, "training step": 10.0}
TARGET_TEXT = {"sgemm": "of cuBLAS", "conv2d forward": "of cuDNN", "training step": "x cpu"}
OTHER_OPS = "op"                    # the kind of the kernels timed without a target
SGEMM_SIZES = (1024, 2048, 4096)
CONV_INPUT = (1, 224, 32)           # ChestXrayCNN on 224-px X-rays: channels, size, batch
STEP_INPUT = (3, 224, 16)           # the 224-px RGB training step: channels, size, batch
TWIN_STEPS, TWIN_INPUT = 5, (1, 64, 8)
TWIN_ATOL, TWIN_RTOL = 1e-5, 1e-4   # as the cpu / cuda-sim training test
SANITIZER_TOOLS = ("memcheck", "initcheck", "racecheck", "synccheck")
SANITIZER_TESTS = "tests/test_cuda_gpu.py"   # the kernel cases, few examples each
SANITIZER_EXAMPLES = "2"
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


class Result:
    """One check: name, PASS / FAIL / SKIP, and a one-line detail (why, or figures)."""

    def __init__(self, name, status, detail=""):
        assert status in (PASS, FAIL, SKIP), status
        self.name, self.status, self.detail = name, status, detail

    def __repr__(self):
        return f"Result({self.name!r}, {self.status}, {self.detail!r})"


class Ratio:
    """One timed comparison: minicnn's seconds, the other side's, and the target.

    ratio = other_s / minicnn_s: minicnn's speed as a multiple of the other side's."""

    def __init__(self, kind, case, minicnn_s, other_s, other):
        assert kind in TARGETS or kind == OTHER_OPS, kind
        self.kind, self.case, self.other = kind, case, other
        self.minicnn_s, self.other_s = float(minicnn_s), float(other_s)

    @property
    def ratio(self):
        return self.other_s / self.minicnn_s

    @property
    def target(self):
        return TARGETS.get(self.kind)          # None: timed for information only

    @property
    def met(self):
        return self.target is None or self.ratio >= self.target


# ---------------------------------------------------------------- facts that need no GPU

def _first_line(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _cuda_version(value):
    return f"{value // 1000}.{value % 1000 // 10}"


def toolchain():
    """{cupy, cuda_runtime, nvrtc, driver: text, pair_ok: bool or None} without a GPU."""
    out = {"cupy": None, "cuda_runtime": None, "nvrtc": None, "driver": None, "pair_ok": None}
    try:
        import cupy  # lazy: cupy is optional; its absence is one of the answers
    except Exception as exc:
        out["cupy"] = f"not installed ({_first_line(exc)}): pip install -e '.[cuda]'"
        return out
    out["cupy"] = cupy.__version__
    rt = nv = None
    try:
        rt = cupy.cuda.runtime.runtimeGetVersion()
        out["cuda_runtime"] = _cuda_version(rt)
    except Exception as exc:
        out["cuda_runtime"] = f"unknown ({_first_line(exc)})"
    try:
        from cupy_backends.cuda.libs import nvrtc  # lazy: comes with cupy, optional
        nv = nvrtc.getVersion()
        out["nvrtc"] = f"{nv[0]}.{nv[1]}"
    except Exception as exc:
        out["nvrtc"] = f"not loadable ({_first_line(exc)}): pip install -e '.[cuda]'"
    try:
        d = cupy.cuda.runtime.driverGetVersion()
        out["driver"] = _cuda_version(d) if d else "none (no libcuda.so.1: no NVIDIA driver)"
    except Exception as exc:
        out["driver"] = f"unknown ({_first_line(exc)})"
    if rt is not None and nv is not None:
        out["pair_ok"] = nv[0] == rt // 1000
    return out


@functools.lru_cache(maxsize=None)
def nvrtc_compiles(archs=("compute_75", "compute_90")):
    """(ok, text): every kernels/cuda/*.cu compiled to PTX by NVRTC, as cupy would
    (once a process: the files do not change under a running check)."""
    try:
        from cupy_backends.cuda.libs import nvrtc  # lazy: comes with cupy, optional
        nvrtc.getVersion()
    except Exception as exc:
        return None, f"not checked: NVRTC not loadable ({_first_line(exc)})"
    files = sorted(KERNEL_DIR.glob("*.cu"))
    bad = []
    for path in files:
        for arch in archs:
            prog = nvrtc.createProgram(path.read_text(), path.name, [], [])
            try:
                nvrtc.compileProgram(prog, ["-std=c++17", "-ftz=true", f"-arch={arch}"])
            except Exception:
                log = nvrtc.getProgramLog(prog).strip().splitlines()
                bad.append(f"{path.name} ({arch}): {log[0] if log else 'no log'}")
            finally:
                nvrtc.destroyProgram(prog)
    if bad:
        return False, f"{len(bad)} compile(s) failed: " + "; ".join(bad[:3])
    return True, f"all {len(files)} .cu files compile ({', '.join(archs)}, -ftz=true)"


def _torch_text():
    try:
        import torch  # lazy: PyTorch is optional (only the speed comparison needs it)
    except Exception:
        return "not installed: no cuBLAS / cuDNN comparison"
    try:
        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    return f"{torch.__version__}, " + ("CUDA available" if cuda else
                                       "no CUDA in this build: no cuBLAS / cuDNN comparison")


def facts():
    """[(key, value)]: what this machine has, all of it found without a GPU."""
    tc = toolchain()
    pair = {True: "matches cupy's CUDA major version", None: "match not known",
            False: "DOES NOT MATCH cupy's CUDA major version: pip install -e '.[cuda]'"}
    rows = [("python", sys.version.split()[0]),
            ("cupy", tc["cupy"] + (f" (built for CUDA {tc['cuda_runtime']})"
                                   if tc["cuda_runtime"] else ""))]
    if tc["nvrtc"] is not None:
        rows.append(("NVRTC", f"{tc['nvrtc']} ({pair[tc['pair_ok']]})"))
        rows.append(("CUDA driver", tc["driver"]))
        rows.append(("kernels under NVRTC", nvrtc_compiles()[1]))
    rows.append(("compute-sanitizer", shutil.which("compute-sanitizer") or "not on PATH"))
    rows.append(("PyTorch", _torch_text()))
    return rows


def gpu_problem():
    """None when device "cuda" works (its start-up kernel ran), else why not, in words."""
    try:
        backends.get("cuda")
    except ImportError as exc:
        return str(exc)
    except Exception as exc:  # anything else the start-up raised is as much an answer
        return f"device 'cuda' failed to start: {_first_line(exc)}"
    return None


def gpu_name():
    import cupy  # lazy: cupy is optional; called only once device "cuda" started
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"{name}, {props['multiProcessorCount']} SMs"


PLAN = (
    "start-up: compile and launch a one-line kernel with NVRTC",
    "every cuda-device test (pytest on the `cuda` backend parameter and the gpu marker)",
    f"twin training: ChestXrayCNN, {TWIN_STEPS} steps on cpu and on cuda, losses and weights "
    "compared",
    "speed, with a CUDA build of PyTorch: sgemm vs cuBLAS (target >= 50%), conv2d forward "
    "vs cuDNN (>= 30%), 224-px RGB training step vs the cpu device (>= 10x)",
    "compute-sanitizer memcheck, initcheck, racecheck, synccheck on the kernel tests, where "
    "compute-sanitizer is on PATH",
)


# ------------------------------------------------------------------------- the page

def _fmt_s(s):
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def exit_code(results, ratios):
    """EXIT_FAILED if a check failed, else EXIT_BELOW_TARGET if a target was missed."""
    if any(r.status == FAIL for r in results):
        return EXIT_FAILED
    if any(not r.met for r in ratios):
        return EXIT_BELOW_TARGET
    return EXIT_OK


def format_report(header, fact_rows, results, ratios, elapsed_s=None):
    """The one page of `doctor --gpu`: facts, checks, ratios against targets, verdict."""
    lines = [f"minicnn doctor --gpu: {header}", ""]
    width = max([len(k) for k, _ in fact_rows] + [10])
    lines += [f"  {k:<{width}}  {v}" for k, v in fact_rows]
    lines += ["", "checks"]
    nw = max([len(r.name) for r in results] + [10])
    for r in results:
        lines += textwrap.wrap(r.detail or "-", 100, initial_indent=f"  {r.status}  "
                               f"{r.name:<{nw}}  ", subsequent_indent=" " * (nw + 10))
    if ratios:
        label = {id(r): r.case if r.target is None else f"{r.kind} {r.case}" for r in ratios}
        cw = max(len(text) for text in label.values())
        ow = max(len(r.other) for r in ratios)
        lines += ["", "speed: ratio = the other side's time / minicnn's (higher is faster)",
                  f"  {'':5} {'case':<{cw}}  {'minicnn':>10}  {'other side':<{ow}} "
                  f"{'time':>10}  {'ratio':>6}  target"]
        for r in ratios:
            verdict = "-" if r.target is None else "met" if r.met else "BELOW"
            goal = "-" if r.target is None else f">= {r.target:g} {TARGET_TEXT[r.kind]}"
            lines.append(f"  {verdict:<5} {label[id(r)]:<{cw}}  "
                         f"{_fmt_s(r.minicnn_s):>10}  {r.other:<{ow}} {_fmt_s(r.other_s):>10}  "
                         f"{r.ratio:>6.2f}  {goal}")
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP)}
    judged = [r for r in ratios if r.target is not None]
    met = sum(r.met for r in judged)
    code = exit_code(results, ratios)
    took = f" in {elapsed_s:.0f} s" if elapsed_s is not None else ""
    lines += ["", f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped; "
                  f"{met} of {len(judged)} speed targets met{took}; exit {code}"]
    return "\n".join(lines)


def format_no_gpu(fact_rows, reason):
    """The page when there is no usable GPU: facts, the plan, and why it cannot run."""
    width = max([len(k) for k, _ in fact_rows] + [10])
    lines = ["minicnn doctor --gpu: no usable GPU on this machine", ""]
    lines += [f"  {k:<{width}}  {v}" for k, v in fact_rows]
    lines += ["", "with a GPU it would run:"]
    for i, step in enumerate(PLAN, 1):
        lines += textwrap.wrap(step, 96, initial_indent=f"  {i}. ", subsequent_indent="     ")
    lines += ["", "it cannot, because:"]
    lines += textwrap.wrap(reason, 96, initial_indent="  ", subsequent_indent="  ")
    lines += ["",
              f"nothing that needs a GPU ran; exit {EXIT_NO_GPU} (see minicnn doctor --help)"]
    return "\n".join(lines)


# ----------------------------------------------------------------- the checks on a GPU

def repo_tests():
    """The tests/ folder of the source checkout minicnn runs from, or None."""
    tests = Path(minicnn.__file__).resolve().parent.parent / "tests"
    return tests if (tests / "conftest.py").is_file() else None


def _runs_on_cuda(item):
    if item.get_closest_marker("gpu") is not None:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(isinstance(v, str) and v == "cuda"
                                        for v in callspec.params.values())


def pytest_collection_modifyitems(config, items):
    """Plugin hook (pytest -p minicnn.cli.gpu_check): keep the tests that run on "cuda"."""
    keep = [i for i in items if _runs_on_cuda(i)]
    drop = [i for i in items if not _runs_on_cuda(i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _run_check(name, cmd, timeout_s, cwd, env, verdict):
    """The Result of the check `name`: cmd run for at most timeout_s seconds, its outcome
    read by verdict(completed_process, seconds_taken) -> Result; SKIP if it ran out of time.

    cmd runs in a session of its own, so on timeout the whole group is killed
    (compute-sanitizer's python, not only compute-sanitizer)."""
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, cwd=cwd, env=env) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Result(name, SKIP, f"did not finish in {timeout_s:.0f} s (the time left)")
    took = time.perf_counter() - t0
    return verdict(subprocess.CompletedProcess(cmd, proc.returncode, out, err), took)


def summarize_junit(path):
    """(passed, failed, skipped, failed names, {skip reason: count}) from a JUnit XML file."""
    root = ET.parse(path).getroot()
    passed = failed = skipped = 0
    names, reasons = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            names.append(name)
        elif case.find("skipped") is not None:
            skipped += 1
            why = (case.find("skipped").get("message") or "").strip()
            reasons[why] = reasons.get(why, 0) + 1
        else:
            passed += 1
    return passed, failed, skipped, names, reasons


def run_cuda_tests(timeout_s, tests=None, extra_env=None, prefix=(), select=None):
    """Every cuda-device test in a pytest subprocess; a Result."""
    tests = tests or repo_tests()
    name = "cuda-device tests"
    if tests is None:
        return Result(name, SKIP, "the test suite is not next to the package (run from a "
                                  "source checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-p", "minicnn.cli.gpu_check", f"--junitxml={xml}", str(select or tests)]
        return _run_check(name, cmd, timeout_s, tests.parent,
                          dict(os.environ, **(extra_env or {})),
                          functools.partial(_pytest_verdict, name, xml))


def _pytest_verdict(name, xml, r, took):
    """The Result of a cuda-device pytest run that finished: r its CompletedProcess, xml
    the JUnit file it wrote."""
    if not xml.exists():
        tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or ["no output"]
        return Result(name, FAIL, f"pytest exited {r.returncode}: {tail[0]}")
    passed, failed, skipped, names, reasons = summarize_junit(xml)
    detail = f"{passed} passed, {failed} failed, {skipped} skipped ({took:.0f} s)"
    if names:
        detail += "; failed: " + ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    if reasons:
        top = max(reasons, key=reasons.get)
        detail += f"; skipped because: {top[:90]}"
    if failed or r.returncode not in (0, 5):
        return Result(name, FAIL, detail)
    if passed == 0:
        return Result(name, FAIL, detail + "; no cuda-device test ran")
    return Result(name, PASS, detail)


def _host(a):
    return np.asarray(a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a)


def _worst_diff(got, ref):
    """(max |got - ref|, max relative difference where |ref| >= 1e-3, share of tolerance)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    err = np.abs(got - ref)
    big = np.abs(ref) >= 1e-3
    rel = float((err[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    share = float((err / (TWIN_ATOL + TWIN_RTOL * np.abs(ref))).max()) if err.size else 0.0
    return float(err.max()) if err.size else 0.0, rel, share


def twin_training(device="cuda", steps=TWIN_STEPS, inputs=TWIN_INPUT, seed=0):
    """ChestXrayCNN trained `steps` SGD steps on "cpu" and on `device`, same start, same
    batches; Result PASS when every loss and every final weight agree to
    TWIN_ATOL + TWIN_RTOL * |cpu's|."""
    channels, size, batch = inputs

    def train(dev):
        minicnn.manual_seed(seed)
        model = ChestXrayCNN(in_channels=channels, num_classes=2, image_size=size).to(dev)
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(steps):
            x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
            t = rng.integers(0, 2, size=batch)
            opt.zero_grad()
            loss = F.cross_entropy(model(minicnn.tensor(x, device=dev)),
                                   minicnn.tensor(t, device=dev))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses), {k: _host(v) for k, v in model.state_dict().items()}

    name = f"twin training cpu/{device}"
    try:
        ref_losses, ref_state = train("cpu")
        losses, state = train(device)
    except Exception as exc:
        return Result(name, FAIL, f"training raised {_first_line(exc)}")
    la, lr, ls = _worst_diff(losses, ref_losses)
    worst = [(_worst_diff(state[k], ref_state[k]), k) for k in ref_state]
    (wa, wr, ws), key = max(worst, key=lambda p: p[0][2])
    detail = (f"{steps} steps at {size}x{size}x{channels}, batch {batch}: losses max abs "
              f"{la:.2e} rel {lr:.2e}; weights max abs {max(w[0][0] for w in worst):.2e} "
              f"rel {max(w[0][1] for w in worst):.2e} (worst share of tolerance {ws:.2f} "
              f"in {key})")
    ok = ls <= 1 and ws <= 1 and np.all(np.isfinite(losses))
    return Result(name, PASS if ok else FAIL, detail)


def _clock(device):
    if device == "cuda":
        import cupy  # lazy: cupy is optional; only device "cuda" is timed on its events
        return EventClock(cupy)
    return WallClock()


def time_sgemm(device="cuda", sizes=SGEMM_SIZES, budget_s=4.0):
    """[Ratio]: linear_forward (x @ w^T by the sgemm kernel) against torch.matmul
    (cuBLAS on a GPU), after checking that the two agree."""
    import torch  # lazy: PyTorch is optional; check_gpu times only where it has CUDA
    be, as_torch = backends.get(device), torch_for(device)[1]
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        a = be.xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        w = be.xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        ta, tw = as_torch(a), as_torch(w)
        ok, detail = _worst(_host(be.linear_forward(a, w, None)),
                            torch.matmul(ta, tw.T).cpu().numpy())
        if not ok:
            raise RuntimeError(f"sgemm {n}x{n}x{n} disagrees with torch.matmul: {detail}")
        tm = compare(lambda: be.linear_forward(a, w, None), lambda: torch.matmul(ta, tw.T),
                     reps=10, warmup=2, budget_s=budget_s, clock=_clock(device), settle_s=0.0)
        out.append(Ratio("sgemm", f"{n}x{n}x{n}", tm["a"], tm["b"], "cuBLAS"))
    return out


def time_conv(device="cuda", inputs=CONV_INPUT, budget_s=3.0, other_budget_s=1.0):
    """[Ratio]: conv2d forward against torch's conv2d (cuDNN) at every conv layer of
    ChestXrayCNN's training step at `inputs` (channels, size, batch), then the step's
    other kernels against the ATen ops PyTorch runs for them (kind OTHER_OPS)."""
    channels, size, batch = inputs
    out = []
    cases = [c for c in ops.cases(channels, size, batch, device=device)
             if c.theirs is not None]
    for case in sorted(cases, key=lambda c: c.op != "conv2d forward"):
        forward = case.op == "conv2d forward"
        tm = compare(case.ours, case.theirs, reps=10, warmup=2, clock=_clock(device),
                     budget_s=budget_s if forward else other_budget_s, settle_s=0.0)
        if forward:
            out.append(Ratio("conv2d forward", f"{case.layer} {case.shape}", tm["a"], tm["b"],
                             "cuDNN"))
        else:
            out.append(Ratio(OTHER_OPS, f"{case.op} {case.layer}", tm["a"], tm["b"],
                             "PyTorch"))
    return out


def time_step(device="cuda", inputs=STEP_INPUT, reference="cpu", budget_s=20.0):
    """Ratio: one ChestXrayCNN training step on `device` against the same on `reference`."""
    channels, size, batch = inputs
    x, t = stepmod.make_batch(batch, channels, size)
    secs = {}
    for dev in (device, reference):
        run_step = stepmod.minicnn_step(stepmod.make_model(channels, size, device=dev), x, t)
        secs[dev] = compare(run_step, reps=5, warmup=1, budget_s=budget_s / 2, sample_s=0.0,
                            clock=_clock(dev), settle_s=0.0)["a"]
    cores = os.cpu_count()
    return Ratio("training step", f"{size}x{size}x{channels} batch {batch}", secs[device],
                 secs[reference], f"{reference}, {cores} cores")


def measure_speed(device="cuda"):
    """(results, ratios) of the three timings; a timing that fails is a FAIL Result."""
    results, ratios = [], []
    for what, fn in (("sgemm vs cuBLAS", time_sgemm),
                     ("the step's kernels vs cuDNN and PyTorch", time_conv),
                     ("training step vs cpu", time_step)):
        try:
            got = fn(device)
        except Exception as exc:
            results.append(Result(f"timing: {what}", FAIL, _first_line(exc)))
            continue
        ratios.extend(got if isinstance(got, list) else [got])
    return results, ratios


_SANITIZED_PYTEST = ("import cupy, sys, pytest; cupy.cuda.set_allocator(None); "
                     "sys.exit(pytest.main(sys.argv[1:]))")


def run_sanitizer(tool, timeout_s, tests=None):
    """The kernel tests under `compute-sanitizer --tool TOOL`; a Result."""
    name = f"compute-sanitizer {tool}"
    exe = shutil.which("compute-sanitizer")
    tests = tests or repo_tests()
    if exe is None:
        return Result(name, SKIP, "compute-sanitizer is not on PATH (it comes with the CUDA "
                                  "toolkit: add its bin/ to PATH)")
    if tests is None:
        return Result(name, SKIP, "the test suite is not next to the package")
    cmd = [exe, "--tool", tool, "--error-exitcode", "86", "--print-limit", "10",
           sys.executable, "-c", _SANITIZED_PYTEST, "-q", "-p", "no:cacheprovider",
           "-p", "minicnn.cli.gpu_check", "-x", str(tests.parent / SANITIZER_TESTS)]
    env = dict(os.environ, MINICNN_EXAMPLES=SANITIZER_EXAMPLES, MINICNN_CUDA_SYNC="1")
    return _run_check(name, cmd, timeout_s, tests.parent, env,
                      functools.partial(_sanitizer_verdict, name))


def _sanitizer_verdict(name, r, took):
    """The Result of a compute-sanitizer run that finished: r its CompletedProcess."""
    text = r.stdout + r.stderr
    summary = [ln for ln in text.splitlines() if "ERROR SUMMARY" in ln]
    summary = summary[-1].strip("= ").strip() if summary else "no summary"
    if r.returncode == 0:
        return Result(name, PASS, f"{summary} ({took:.0f} s, {SANITIZER_TESTS}, "
                                  f"{SANITIZER_EXAMPLES} examples a case)")
    first = next((ln.strip("= ").strip() for ln in text.splitlines()
                  if ln.startswith("=========") and ("Invalid" in ln or "hazard" in ln.lower()
                                                      or "Uninitialized" in ln or "Barrier" in ln
                                                      or "error" in ln.lower())), "")
    why = "sanitizer found errors" if r.returncode == 86 else f"exit {r.returncode}"
    return Result(name, FAIL, f"{why}: {first or summary}")


def check_gpu(no_sanitizer=False, budget_s=BUDGET_S, say=print):
    """Run every check on the GPU; (header, results, ratios)."""
    start = time.perf_counter()

    def left():
        return budget_s - (time.perf_counter() - start)

    results = [Result("start-up kernel", PASS, "a one-line kernel compiled with NVRTC, "
                                               "launched and wrote y[i] = 2i")]
    say("doctor --gpu: twin training ...", file=sys.stderr)
    results.append(twin_training("cuda"))
    try:
        import torch  # lazy: PyTorch is optional
        has_torch_cuda = torch.cuda.is_available()
    except Exception:
        has_torch_cuda = False
    ratios = []
    if has_torch_cuda:
        say("doctor --gpu: timing sgemm, conv2d, the training step ...", file=sys.stderr)
        timing_results, ratios = measure_speed("cuda")
        results += timing_results
    else:
        results.append(Result("timings vs PyTorch", SKIP, "no CUDA build of PyTorch here "
                                                          "(pip install torch with CUDA)"))
    tools = () if no_sanitizer else SANITIZER_TOOLS
    reserve = 35 * len(tools) if shutil.which("compute-sanitizer") else 0
    say("doctor --gpu: the cuda-device tests ...", file=sys.stderr)
    results.append(run_cuda_tests(max(30.0, min(150.0, left() - reserve))))
    for i, tool in enumerate(tools):
        share = left() / (len(tools) - i)
        if share < 10:
            results.append(Result(f"compute-sanitizer {tool}", SKIP,
                                  f"no time left in the {budget_s} s budget"))
            continue
        say(f"doctor --gpu: compute-sanitizer {tool} ...", file=sys.stderr)
        results.append(run_sanitizer(tool, share))
    if no_sanitizer:
        results.append(Result("compute-sanitizer", SKIP, "--no-sanitizer"))
    return gpu_name(), results, ratios


def run(args):
    """`minicnn doctor --gpu`; returns the exit code (see EXIT_CODES_HELP)."""
    t0 = time.perf_counter()
    fact_rows = facts()
    reason = gpu_problem()
    if reason is not None:
        print(format_no_gpu(fact_rows, reason))
        return EXIT_NO_GPU
    header, results, ratios = check_gpu(no_sanitizer=getattr(args, "no_sanitizer", False))
    print(format_report(header, fact_rows, results, ratios, time.perf_counter() - t0))
    return exit_code(results, ratios)
