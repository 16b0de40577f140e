"""PyTorch's own sample inputs (its OpInfo database) through minicnn, forward and backward.

For every op minicnn shares with PyTorch, each sample PyTorch tests itself with is run
in both libraries. A sample either matches (values, shapes, and the gradient of every
input that requires one) or minicnn refuses it in words (a ValueError, TypeError or
NotImplementedError that says what it does not support). A crash (any other
exception) or a different result fails the test. The counts are printed per op.

The emulated CUDA device runs every 25th sample of each op (the emulator is slow).
"""
import numpy as np
import pytest

import minicnn
import minicnn.nn.functional as F

torch = pytest.importorskip("torch", reason="the samples come from PyTorch")
pytest.importorskip("expecttest", reason="PyTorch's OpInfo database needs expecttest")
try:
    from torch.testing._internal.common_methods_invocations import op_db
except Exception as exc:  # pragma: no cover - depends on the torch build
    pytest.skip(f"PyTorch's OpInfo database does not import: {exc}", allow_module_level=True)

# OpInfo name -> the minicnn function with PyTorch's signature
OPS = {
    "nn.functional.conv2d": "conv2d", "nn.functional.max_pool2d": "max_pool2d",
    "nn.functional.avg_pool2d": "avg_pool2d", "nn.functional.relu": "relu", "sigmoid": "sigmoid",
    "nn.functional.linear": "linear", "softmax": "softmax", "log_softmax": "log_softmax",
    "nn.functional.cross_entropy": "cross_entropy", "nn.functional.batch_norm": "batch_norm",
    "nn.functional.adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "nn.functional.binary_cross_entropy_with_logits": "binary_cross_entropy_with_logits",
    "nn.functional.nll_loss": "nll_loss", "nn.functional.mse_loss": "mse_loss",
}
REFUSALS = (ValueError, TypeError, NotImplementedError)
CUDA_SIM_EVERY = 25


def _ops():
    seen = set()
    for op in op_db:
        if op.name in OPS and (op.name, op.variant_test_name) not in seen:
            seen.add((op.name, op.variant_test_name))
            yield op


OPINFOS = list(_ops())


def _to_minicnn(value, device):
    if isinstance(value, torch.Tensor):
        array = value.detach().numpy()
        floating = np.issubdtype(array.dtype, np.floating)
        return minicnn.tensor(array, device=device, dtype=array.dtype,
                              requires_grad=bool(value.requires_grad and floating))
    if isinstance(value, torch.dtype):
        return np.dtype(str(value).replace("torch.", ""))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_minicnn(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_minicnn(v, device) for k, v in value.items()}
    return value


def _leaves(value):
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


def _first_float(out):
    for leaf in _leaves(out):
        if hasattr(leaf, "dtype") and np.issubdtype(np.dtype(str(leaf.dtype).replace("torch.", "")),
                                                    np.floating):
            return leaf
    return None


def _differs(ours, theirs):
    """A description of the first difference between the outputs, or None."""
    a, b = _leaves(ours), _leaves(theirs)
    if len(a) != len(b):
        return f"{len(a)} outputs, PyTorch gives {len(b)}"
    for x, y in zip(a, b):
        y = y.detach().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        x = x.numpy() if isinstance(x, minicnn.Tensor) else np.asarray(x)
        if x.shape != y.shape:
            return f"shape {x.shape}, PyTorch {y.shape}"
        tol = dict(rtol=1e-4, atol=1e-5) if np.issubdtype(y.dtype, np.floating) else {}
        if not np.allclose(x.astype(np.float64), y.astype(np.float64), equal_nan=True, **tol):
            return f"values differ by up to {np.nanmax(np.abs(x - y)):.3g}"
    return None


def run_sample(name, sample, device):
    """("match" | "refused" | "crash" | "wrong", detail) for one OpInfo sample."""
    fn = getattr(F, OPS[name], None)
    if fn is None:
        return "refused", f"minicnn has no {OPS[name]}"
    args = _to_minicnn((sample.input, *sample.args), device)
    kwargs = _to_minicnn(dict(sample.kwargs), device)
    try:
        ours = fn(*args, **kwargs)
    except REFUSALS as err:
        if len(str(err)) < 20:
            return "crash", f"refused without words: {type(err).__name__}: {err}"
        return "refused", str(err).splitlines()[0]
    except Exception as err:
        return "crash", f"{type(err).__name__}: {err}"
    inputs = [sample.input, *sample.args, *sample.kwargs.values()]
    theirs = OPS_TORCH[name](sample)
    diff = _differs(ours, theirs)
    if diff:
        return "wrong", diff
    out, tout = _first_float(ours), _first_float(theirs)
    t_leaves = [t for t in _leaves(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    if out is None or tout is None or not t_leaves or not tout.requires_grad:
        return "match", "forward"
    m_leaves = [m for m in _leaves(args) + _leaves(kwargs)
                if isinstance(m, minicnn.Tensor) and m.requires_grad]
    weights = np.random.default_rng(0).standard_normal(tout.shape).astype(np.float32)
    try:
        (out * minicnn.tensor(weights, device=device)).sum().backward()
    except REFUSALS as err:
        return "refused", f"backward: {str(err).splitlines()[0]}"
    except Exception as err:
        return "crash", f"backward: {type(err).__name__}: {err}"
    grads = torch.autograd.grad((tout * torch.from_numpy(weights)).sum(), t_leaves,
                                allow_unused=True)
    for m, g in zip(m_leaves, grads):
        if g is None:
            continue
        if m.grad is None:
            return "wrong", f"no gradient for an input of shape {m.shape}"
        if not np.allclose(m.grad.numpy(), g.numpy(), rtol=1e-3, atol=1e-4):
            return "wrong", (f"gradient of an input of shape {m.shape} differs by up to "
                             f"{np.abs(m.grad.numpy() - g.numpy()).max():.3g}")
    return "match", "forward and backward"


OPS_TORCH = {}
for _op in OPINFOS:
    OPS_TORCH.setdefault(_op.name, lambda s, _op=_op: _op(s.input, *s.args, **s.kwargs))


@pytest.mark.parametrize("device", ["cpu", "cuda-sim"])
@pytest.mark.parametrize("op", OPINFOS, ids=lambda op: op.name + (
    "." + op.variant_test_name if op.variant_test_name else ""))
def test_opinfo_samples_match_pytorch_or_are_refused_in_words(op, device, capsys):
    if device == "cuda-sim":
        pytest.importorskip("minicnn.backends.cuda_sim", reason="the emulator does not build here")
    counts, problems = {"match": 0, "refused": 0, "crash": 0, "wrong": 0}, []
    refusals = {}
    samples = list(op.sample_inputs("cpu", torch.float32, requires_grad=True))
    if device == "cuda-sim":
        samples = samples[::CUDA_SIM_EVERY]
    for i, sample in enumerate(samples):
        torch.manual_seed(0)
        outcome, detail = run_sample(op.name, sample, device)
        counts[outcome] += 1
        if outcome in ("crash", "wrong"):
            problems.append(f"sample {i} ({sample.summary() if hasattr(sample, 'summary') else ''}"
                            f" input {tuple(sample.input.shape)}, args {sample.args!r:.80}, "
                            f"kwargs {sample.kwargs!r:.120}): {outcome}: {detail}")
        elif outcome == "refused":
            refusals[detail[:90]] = refusals.get(detail[:90], 0) + 1
    with capsys.disabled():
        common = "; ".join(f"{n}x {d}" for d, n in sorted(refusals.items(), key=lambda kv: -kv[1])[:2])
        print(f"\n  opinfo {op.name:<44} {device:<8} {len(samples):>5} samples: "
              f"{counts['match']} match, {counts['refused']} refused, {counts['crash']} crash, "
              f"{counts['wrong']} wrong" + (f"  [{common}]" if common else ""))
    assert not problems, "\n".join(problems[:10])
