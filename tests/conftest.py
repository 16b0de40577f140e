"""Shared fixtures: the devices every property test runs on, and the error table.

`backend` is parametrised over the devices that work on this machine:

  cpu            the numba kernels (kernels/cpu)
  cpu-reference  the plain numpy kernels (kernels/reference.py), through
                 minicnn.use_cpu_kernels("reference")
  cuda-sim       the CUDA C kernels on the CPU emulator (skipped, with the reason,
                 where its backend does not import)
  cuda           a real GPU through cupy (skipped where cupy sees none)

A test that takes `backend` receives the device name to pass to
minicnn.tensor(..., device=backend); the cpu kernels are chosen for it and put
back to numba afterwards. `cuda_device` gives only cuda-sim and cuda, for tests
that run a whole training on one and compare it with the cpu.

`one_torch_thread` (module scope; a module asks for it with
`pytestmark = pytest.mark.usefixtures("one_torch_thread")`) runs torch's reference
on one thread.

`equivalence_log` collects, per op and device, how many cases were compared with
PyTorch and the worst errors seen; the table is printed at the end of the run.
"""
import importlib

import numpy as np
import pytest

import minicnn
from minicnn import backends

# name shown in test ids -> (device, cpu kernels)
BACKENDS = {
    "cpu": ("cpu", "numba"),
    "cpu-reference": ("cpu", "reference"),
    "cuda-sim": ("cuda-sim", "numba"),
    "cuda": ("cuda", "numba"),
}

# the emulator runs every CUDA thread as a fiber: tests keep its cases few and small
SLOW_DEVICES = ("cuda-sim",)


def _unavailable(name):
    """Why a backend cannot run here, or None when it can."""
    if name == "cuda-sim":
        try:
            importlib.import_module("minicnn.backends.cuda_sim")
        except Exception as exc:  # any import failure means: not on this machine
            return f"cuda-sim backend does not import: {type(exc).__name__}: {exc}"
    if name == "cuda":
        try:
            import cupy
            if not cupy.cuda.is_available():
                return "no CUDA GPU visible to cupy"
        except Exception as exc:
            return f"cupy unusable: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    """The device name to run on; see the module docstring."""
    reason = _unavailable(request.param)
    if reason:
        pytest.skip(reason)
    device, kernels = BACKENDS[request.param]
    minicnn.use_cpu_kernels(kernels)
    try:
        yield device
    finally:
        minicnn.use_cpu_kernels("numba")


@pytest.fixture(params=["cuda-sim", "cuda"])
def cuda_device(request):
    """The CUDA devices only (the emulator, a real GPU), for tests that compare a run on
    one with the same run on the cpu; each skips, with the reason, where it cannot run."""
    reason = _unavailable(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture(params=["numba", "reference"])
def cpu_kernels(request):
    """Run on the cpu device with each of its two kernel sets (for float64 checks)."""
    minicnn.use_cpu_kernels(request.param)
    try:
        yield request.param
    finally:
        minicnn.use_cpu_kernels("numba")


@pytest.fixture
def backend_name(request):
    """The id of the backend parameter ("cpu", "cpu-reference", ...), for tables."""
    callspec = getattr(request.node, "callspec", None)
    return callspec.params.get("backend", "?") if callspec else "?"


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch's reference runs on one thread: on a shared 2-core machine more threads
    fight each other and the rest of the test run (three times slower here)."""
    import torch  # only the modules that compare with torch pay for importing it
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- error table

class EquivalenceLog:
    """Per (op, backend): cases compared and the worst absolute / relative error.

    Relative error is |got - ref| / |ref| over the elements with |ref| >= 1e-3, where
    it means something; "of tol" is the worst |got - ref| / (atol + rtol*|ref|), the
    share of the tolerance used (a value above 1 is a failure).
    """

    def __init__(self):
        self.rows = {}

    def record(self, op, backend, got, ref, atol, rtol):
        got = np.asarray(got, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        row = self.rows.setdefault((op, backend), [0, 0.0, 0.0, 0.0])
        if got.size:
            err = np.abs(got - ref)
            err = np.where(np.isnan(got) & np.isnan(ref), 0.0, err)
            big = np.abs(ref) >= 1e-3
            rel = float((err[big] / np.abs(ref[big])).max()) if big.any() else 0.0
            row[1] = max(row[1], float(err.max()))
            row[2] = max(row[2], rel)
            row[3] = max(row[3], float((err / (atol + rtol * np.abs(ref))).max()))

    def count_case(self, op, backend):
        self.rows.setdefault((op, backend), [0, 0.0, 0.0, 0.0])[0] += 1

    def table(self):
        lines = [f"{'op':<24} | {'backend':<13} | {'cases':>5} | {'worst abs err':>13} | "
                 f"{'worst rel err':>13} | {'of tol':>6}"]
        lines.append("-" * len(lines[0]))
        for (op, be), (cases, abs_err, rel_err, frac) in sorted(self.rows.items()):
            lines.append(f"{op:<24} | {be:<13} | {cases:>5} | {abs_err:>13.3e} | "
                         f"{rel_err:>13.3e} | {frac:>6.3f}")
        return "\n".join(lines)


_LOG = EquivalenceLog()


@pytest.fixture(scope="session")
def equivalence_log():
    return _LOG


def pytest_terminal_summary(terminalreporter):
    if _LOG.rows:
        terminalreporter.section("equivalence with PyTorch (forward and gradients)")
        terminalreporter.write_line(_LOG.table())
