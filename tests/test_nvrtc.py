"""Every CUDA kernel file compiles for real GPUs, and uses no spills or local memory.

No GPU is needed: NVRTC (the compiler cupy uses, from the nvidia-cuda-nvrtc wheel)
runs on any machine. Each kernels/cuda/*.cu (not broken/) is compiled
  - to PTX for compute_75 (Turing) and compute_90 (Hopper) with the options cupy's
    RawModule adds (-std=c++17, -ftz=true): what runs on a GPU newer than the compiler;
  - to machine code for sm_75 and sm_90, which runs ptxas (built into NVRTC) with -v:
    its report gives, per kernel, registers, static shared memory, stack frame and
    spills. --warn-on-spills --warning-as-error turns any spill into a failure, and the
    test also asserts a 0-byte stack frame (no local memory) and that a block of the
    size the launcher uses fits in one SM's registers.
Where NVRTC is missing, nvcc (-cubin -Xptxas -v) stands in; skipped only where neither
is installed.

Also checked here, on the text of the files: each opens with its formula, its index
map and lesson 10; no dynamic shared memory (extern __shared__: the emulator has none,
and static sizes show the resource use above); every kernel the backends launch exists
with that name, and every kernel in the files is launched.

Figures from ptxas (NVRTC 13.x, -std=c++17 -ftz=true): registers per thread and
static shared memory per block; every kernel has a 0-byte stack frame (no local
memory), 0 bytes of spill stores and 0 bytes of spill loads.

  file           kernel                    sm_75 regs  sm_90 regs  smem (bytes)
  gemm.cu        sgemm                         64          55         8320
                 sum_partials                  38          32            0
                 bias_grad                     15          19         1024
                 add_bias                      14          13            0
  conv.cu        im2col                        23          26            0
                 col2im                        25          28            0
                 nfl_to_fnl                    20          20            0
                 fnl_to_nfl                    18          22            0
  pool.cu        max_pool2d_forward            25          26            0
                 max_pool2d_backward           39          32            0
                 max_pool2d_backward_planes    22          24            0
                 avg_pool2d_forward            31          31            0
                 avg_pool2d_backward           49          30            0
  activation.cu  relu_forward                  10          10            0
                 relu_backward                 12          12            0
                 sigmoid_forward               13          14            0
                 sigmoid_backward              12          14            0
  loss.cu        softmax_forward               18          22         1024
                 softmax_backward              13          20         1024
                 log_softmax_forward           18          18         1024
                 log_softmax_backward          15          22         1024
                 cross_entropy_rows            19          19         1024
                 ce_reduce                     12          16         1024
                 ce_weight_sum                 14          18         1024
                 cross_entropy_backward        20          21            0
                 bce_with_logits_forward       16          16            0
                 bce_reduce                    12          14         1024
                 bce_with_logits_backward      23          24            0
  norm.cu        batch_norm_stats              21          24         1024
                 batch_norm_eval_stats         13          13            0
                 batch_norm_apply              18          18            0
                 batch_norm_grad_sums          21          25         1024
                 batch_norm_backward_input     21          22            0
  dropout.cu     dropout_forward               22          24            0
                 dropout_backward              12          12            0
  adaptive_pool.cu adaptive_avg_pool2d_forward 52          32            0
                 adaptive_avg_pool2d_backward  45          39            0
  optim.cu       sgd_step                      11          12            0
                 adam_step                     16          20            0
sgemm's 8320 bytes are its two 16 x 65 float slabs; the 1024 bytes of the reductions
are one float per thread of a 256-thread block.

Print the current table with:  python tests/test_nvrtc.py
"""
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from minicnn.backends import _cuda_glue as glue

CUDA_FILES = sorted(p for p in glue.KERNEL_DIR.glob("*.cu"))
OPTIONS = ["-std=c++17", "-ftz=true"]          # what cupy's RawModule passes besides -arch
ARCHS = (75, 90)
REGISTERS_PER_SM = 65536
MAX_STATIC_SHARED = 48 * 1024


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception:
        return None


NVRTC = _nvrtc()
NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVRTC is None and NVCC is None,
                                reason="neither NVRTC (pip install nvidia-cuda-nvrtc) nor "
                                       "nvcc is installed")


def nvrtc_compile(path, arch_option, extra=()):
    """Compile with NVRTC; return the log. Raises AssertionError with the log on failure."""
    prog = NVRTC.createProgram(path.read_text(), path.name, [], [])
    try:
        try:
            NVRTC.compileProgram(prog, [*OPTIONS, arch_option, *extra])
        except Exception as exc:
            raise AssertionError(f"{path.name} ({arch_option}) does not compile: {exc}\n"
                                 f"{NVRTC.getProgramLog(prog)}") from None
        return NVRTC.getProgramLog(prog)
    finally:
        NVRTC.destroyProgram(prog)


def ptxas_report(path, arch):
    """The text of ptxas -v for path on sm_<arch>, spills made errors."""
    flags = ["-v", "--warn-on-spills", "--warning-as-error"]
    if NVRTC is not None:
        extra = [f for flag in flags for f in ("-Xptxas", flag)]
        return nvrtc_compile(path, f"-arch=sm_{arch}", extra)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([NVCC, "-cubin", f"-arch=sm_{arch}", *OPTIONS,
                            "-Xptxas", ",".join(flags), str(path), "-o", f"{tmp}/out.cubin"],
                           capture_output=True, text=True)
    assert r.returncode == 0, f"nvcc cannot compile {path.name} for sm_{arch}:\n{r.stderr}"
    return r.stdout + r.stderr


def parse_report(text):
    """{kernel: {"registers", "smem", "stack", "spill_stores", "spill_loads"}} from ptxas -v."""
    kernels, name = {}, None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\w+)", line)
        if m:
            name = m.group(1)
            kernels[name] = {"smem": 0}
            continue
        if name is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            kernels[name].update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                                 spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            kernels[name]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            kernels[name]["smem"] = int(s.group(1)) if s else 0
    return kernels


def _kernel_names(path):
    text = re.sub(r"//[^\n]*", "", path.read_text())
    return re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(', text)


def _threads_per_block(kernel):
    return glue.GEMM_THREADS ** 2 if kernel == "sgemm" else glue.THREADS


def test_there_are_kernel_files():
    names = {p.stem for p in CUDA_FILES}
    assert {"conv", "gemm", "pool", "activation", "loss", "optim"} <= names, names


@pytest.mark.skipif(NVRTC is None, reason="NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", CUDA_FILES, ids=lambda p: p.name)
def test_compiles_to_ptx_as_cupy_does(path, arch):
    log = nvrtc_compile(path, f"-arch=compute_{arch}")
    assert "warning" not in log.lower(), f"{path.name} compiles with warnings:\n{log}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", CUDA_FILES, ids=lambda p: p.name)
def test_no_spills_no_local_memory(path, arch):
    report = parse_report(ptxas_report(path, arch))
    assert set(report) == set(_kernel_names(path)), (
        f"{path.name}: ptxas reported {sorted(report)}, the file declares "
        f"{sorted(_kernel_names(path))}")
    for name, r in report.items():
        where = f"{path.name}:{name} on sm_{arch}"
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{where} spills: {r}"
        assert r["stack"] == 0, f"{where} uses a {r['stack']}-byte stack frame (local memory)"
        regs = r["registers"] * _threads_per_block(name)
        assert regs <= REGISTERS_PER_SM, (
            f"{where}: {r['registers']} registers x {_threads_per_block(name)} threads = "
            f"{regs} > {REGISTERS_PER_SM}: the launch would fail")
        assert r["smem"] <= MAX_STATIC_SHARED, f"{where}: {r['smem']} bytes of shared memory"


@pytest.mark.parametrize("path", CUDA_FILES, ids=lambda p: p.name)
def test_file_opens_with_formula_index_map_and_lesson(path):
    text = path.read_text()
    head = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        head.append(line.lower())
    head = "\n".join(head)
    assert "lesson 10" in head.splitlines()[0], f"{path.name}: first line names no lesson 10"
    assert "index map" in head, f"{path.name}: the opening comment gives no index map"
    assert "=" in head, f"{path.name}: the opening comment gives no formula"
    assert not re.search(r"\bextern\s+__shared__", text), \
        f"{path.name}: dynamic shared memory; use static __shared__ arrays"


def test_backends_launch_exactly_the_kernels_in_the_files():
    # the glue, and its mixin for the layer kernels (norm, dropout, adaptive pooling, BCE)
    source = Path(glue.__file__).read_text() + \
        Path(glue.__file__).with_name("_cuda_layers.py").read_text()
    launched = set(re.findall(r'launch\(\s*"(\w+)",\s*"(\w+)"', source))
    # the helpers that launch a kernel of a fixed file by a name given to them
    launched |= {("activation", k) for k in re.findall(r'_elementwise\(\s*"(\w+)"', source)}
    launched |= {("loss", k) for k in re.findall(r'_rows\(\s*"(\w+)"', source)}
    declared = {(p.stem, k) for p in CUDA_FILES for k in _kernel_names(p)}
    assert launched, "found no launches in the glue"
    assert launched <= declared, f"launched but not declared: {sorted(launched - declared)}"
    assert declared <= launched, f"declared but never launched: {sorted(declared - launched)}"


def resource_table():
    """The ptxas figures of every kernel, as text."""
    rows = [f"{'kernel':<26}{'file':<16}" + "".join(f"{'sm_%d regs' % a:>12}" for a in ARCHS)
            + f"{'smem':>8}{'stack':>7}{'spills':>8}"]
    per_arch = {a: {} for a in ARCHS}
    for path in CUDA_FILES:
        for a in ARCHS:
            for name, r in parse_report(ptxas_report(path, a)).items():
                per_arch[a][name] = (path.name, r)
    for name in per_arch[ARCHS[-1]]:
        file, r = per_arch[ARCHS[-1]][name]
        regs = "".join(f"{per_arch[a][name][1]['registers']:>12}" for a in ARCHS)
        spills = r["spill_stores"] + r["spill_loads"]
        rows.append(f"{name:<26}{file:<16}{regs}{r['smem']:>8}{r['stack']:>7}{spills:>8}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(resource_table())
