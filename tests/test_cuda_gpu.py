"""The CUDA C kernels on a real GPU (device "cuda") against the numpy reference.

The same checks as test_cuda_kernels.py (tests/cuda_cases.py), run through cupy; the
GPU picks its own thread order, so each case runs once. Skipped, with the reason,
where cupy sees no GPU; there, the import of the backend must fail in words.
"""
import importlib

import pytest

from cuda_cases import CASES, Runner, check_conv2d_layer, run_cases


def _gpu_missing():
    try:
        import cupy
    except Exception as exc:
        return f"cupy is not installed ({type(exc).__name__})"
    try:
        if cupy.cuda.is_available():
            return None
    except Exception as exc:
        return f"cupy cannot reach a GPU ({type(exc).__name__}: {exc})"
    return "no CUDA GPU visible to cupy"


MISSING = _gpu_missing()
needs_gpu = pytest.mark.skipif(MISSING is not None, reason=f"device 'cuda': {MISSING}")


@pytest.fixture
def run():
    from minicnn.backends import cuda
    return Runner(cuda.kernels, ("gpu",))


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(run, name):
    strategy, check = CASES[name]
    run_cases(strategy, lambda case: check(run, case))


@needs_gpu
@pytest.mark.gpu
def test_conv2d_first_layer_of_the_model(run):
    check_conv2d_layer(run, seed=0)


@pytest.mark.skipif(MISSING is None, reason="a GPU is here: the backend imports")
def test_import_without_gpu_fails_in_words():
    from minicnn.errors import UserError
    with pytest.raises(ImportError, match="device 'cuda' needs cupy and an NVIDIA GPU: ") as err:
        importlib.import_module("minicnn.backends.cuda")
    assert isinstance(err.value, UserError)    # the CLI shows the message alone
