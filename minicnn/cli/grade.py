"""`minicnn grade [EXERCISE]`: check the classroom exercises against the engine.

Each exercise in lessons/exercises/ is a Python file holding a few functions a
student fills in (conv2d by loops, im2col, conv backward, ...). The grader loads
the file, runs its functions on random cases, and compares the answers with what
minicnn itself computes (the numpy reference kernels, functional.cross_entropy,
optim.SGD, data.class_weights, metrics, and small kernels run on the CUDA
emulator). For each exercise it prints PASS, or FAIL with a hint that always
names the case (the shapes and settings, and the inputs when they are small):
  - a wrong value: the first wrong element (its index, decoded where that helps,
    the expected value and the one returned), which of the other outputs were
    right, and which cases passed before it;
  - a wrong shape or type: what came back and what was expected;
  - an exception in the student's code: the exception and the line of the file;
  - an untouched file: which TODO to fill in.

    minicnn grade                 every exercise, the student's versions
    minicnn grade 03              one exercise (by number or name)
    minicnn grade --solutions     the reference solutions (lessons/exercises/solutions)
    python -m minicnn.cli.grade ...   the same, without the console script

lessons/ is not installed with the package: run from the root of a checkout, or
point --dir at the exercises folder.
"""
import argparse
import importlib.util
import os
import sys
import traceback
from pathlib import Path

import numpy as np

import minicnn
from minicnn import functional
from minicnn.data import class_weights
from minicnn.errors import UserError
from minicnn.kernels import reference
from minicnn.kernels.cuda.emu import load_module
from minicnn.optim import SGD
from minicnn.xray import metrics

DEFAULT_DIR = os.path.join("lessons", "exercises")
ATOL, RTOL = 1e-6, 1e-5          # answers are computed in float64


class Wrong(Exception):
    """An answer that differs from the engine's; the message is the hint."""

    def __init__(self, message, case=None):
        super().__init__(message)
        self.case = case


# the cases of the exercise being graded that passed so far, in order (a hint names them)
_passed = []


def _record(case):
    if case and case not in _passed:
        _passed.append(case)


class NotStarted(Exception):
    """The student's function still raises NotImplementedError."""


class Raised(Exception):
    """The student's function raised; carries the exception and the case it was run on."""

    def __init__(self, exc, function, case):
        super().__init__(f"{function}() raised")
        self.exc, self.function, self.case = exc, function, case


# --------------------------------------------------------------------------- comparing answers

def _fmt(value):
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else repr(value)


def _small(name, value, limit=16):
    """', name = [...]' for an input small enough to print in a hint, else ''."""
    arr = np.asarray(value)
    if arr.size > limit:
        return ""
    shown = np.round(arr, 4).tolist() if arr.dtype.kind == "f" else arr.tolist()
    return f", {name} = {shown}"


def _mismatch(name, got, expected, case, atol=ATOL, rtol=RTOL, describe=None):
    """None if got matches expected, else the hint (a str) naming the first wrong element.

    describe(index) -> str, optional: what that element means ("tap (c, p, q) = ...").
    """
    expected = np.asarray(expected, dtype=np.float64)
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return (f"{name} should be an array of numbers of shape {expected.shape}, "
                f"got {type(got).__name__} ({case})")
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape} but should have shape {expected.shape} ({case})"
    bad = ~(np.abs(got - expected) <= atol + rtol * np.abs(expected))   # NaN counts as wrong
    if not bad.any():
        return None
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    e, g = expected[first].item(), got[first].item()
    where = f" at index {tuple(int(i) for i in first)}" if bad.ndim else ""
    if describe is not None and bad.ndim:
        where += f" ({describe(tuple(int(i) for i in first))})"
    tip = "" if np.isfinite(g) else " (not a finite number: did exp() overflow, or a division by zero?)"
    count = f"; {int(bad.sum())} of {bad.size} elements are wrong" if bad.size > 1 else ""
    return f"{name} is wrong{where}: expected {_fmt(e)}, got {_fmt(g)}{tip}{count} ({case})"


def check_close(name, got, expected, case, atol=ATOL, rtol=RTOL, describe=None):
    """Raise Wrong naming the first element (row-major) where |got - expected| > atol + rtol*|expected|."""
    hint = _mismatch(name, got, expected, case, atol, rtol, describe)
    if hint is not None:
        raise Wrong(hint, case)
    _record(case)


def check_all(outputs, case, describe=None):
    """outputs: [(name, got, expected), ...] from one call. Checks every one; raises
    Wrong for the first wrong output, saying which of the others were right (and
    which were wrong too), so a student knows which part of the code to look at."""
    hints = [(name, _mismatch(name, got, exp, case, describe=(describe or {}).get(name)))
             for name, got, exp in outputs]
    wrong = [(name, hint) for name, hint in hints if hint is not None]
    if not wrong:
        _record(case)
        return
    right = [name for name, hint in hints if hint is None]
    also = [name for name, _ in wrong[1:]]
    tail = ""
    if right:
        tail += f"; {_and(right)} {'is' if len(right) == 1 else 'are'} right"
    if also:
        tail += f"; {_and(also)} {'is' if len(also) == 1 else 'are'} wrong too"
    raise Wrong(wrong[0][1] + tail, case)


def _and(names):
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def check_equal(name, got, expected, case):
    """Exact comparison for integers and tuples of integers."""
    if got is None or expected is None:
        if got is not expected:
            raise Wrong(f"{name}: expected {expected!r}, got {got!r} ({case})")
        return
    try:
        got_t = tuple(int(v) for v in got)
    except (TypeError, ValueError):
        raise Wrong(f"{name}: expected a tuple like {tuple(expected)!r}, got {got!r} ({case})") from None
    if got_t != tuple(expected):
        raise Wrong(f"{name}: expected {tuple(expected)!r}, got {got_t!r} ({case})")


def _call(module, name, *args, case="", **kwargs):
    """Call the student's function on one case; NotImplementedError means 'not started',
    any other exception is reported with the case (Raised)."""
    fn = getattr(module, name, None)
    if not callable(fn):
        raise Wrong(f"the file has no function named {name}() (was it renamed?)")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotStarted(name) from None
    except Exception as exc:
        raise Raised(exc, name, case) from exc


def _pair(result, name, count, case=""):
    if not isinstance(result, (tuple, list)) or len(result) != count:
        raise Wrong(f"{name} should return a tuple of {count} values, got {type(result).__name__}"
                    + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
                    + (f" ({case})" if case else ""))
    return result


# --------------------------------------------------------------------------- the exercises

def _parts(*parts):
    """Run the checks of an exercise's functions, [(name, check)], all of them; report
    the first failure and how the other functions did (right, wrong, not started)."""
    first, others, passed = None, [], None
    for label, check in parts:
        status, error = "right", None
        try:
            check()
        except NotStarted as exc:
            status, error = "not started", exc
        except Wrong as exc:
            status, error = "wrong", exc
        except Raised as exc:
            status, error = "raising an error", exc
        if first is None and error is not None:
            first, passed = error, list(_passed)     # what passed before the failure
        else:
            others.append(f"{label}() is {status}")
    if first is None:
        return
    _passed[:] = passed
    if others and isinstance(first, Wrong):
        raise Wrong(f"{first}; " + "; ".join(others), first.case)
    if others and isinstance(first, Raised):
        first.others = "; ".join(others)
    raise first


def _conv_case_text(x, w, s, pad):
    return f"x {x.shape}, w {w.shape} (kernel {w.shape[2]}x{w.shape[3]}), stride {s}, padding {pad}"


# N, C, H, W, F, KH, KW, stride, padding: small enough for Python loops
_FORWARD_SHAPES = [(1, 1, 5, 5, 1, 3, 3, 1, 0), (2, 3, 6, 5, 4, 3, 3, 1, 1),
                   (2, 2, 7, 7, 3, 3, 3, 2, 1), (1, 3, 8, 6, 2, 2, 2, 2, 0),
                   (2, 2, 5, 6, 3, 1, 1, 1, 0), (1, 2, 6, 6, 2, 5, 5, 1, 2),
                   (1, 2, 6, 7, 3, 2, 3, 2, 1)]
# the first backward case is non-square in every way (H != W, KH != KW, C != F, N > 1),
# so a transposed index or a missing matrix transpose gives a wrong value or shape
_BACKWARD_SHAPES = [(2, 3, 5, 7, 4, 2, 3, 1, 1)] + _FORWARD_SHAPES[1:]


def _conv_cases(rng, shapes=_FORWARD_SHAPES):
    """Random convolution problems: (x, w, b, stride, padding, case text)."""
    for N, C, H, W, F, KH, KW, s, pad in shapes:
        x = rng.standard_normal((N, C, H, W))
        w = rng.standard_normal((F, C, KH, KW))
        b = rng.standard_normal(F)
        yield x, w, b, s, pad, _conv_case_text(x, w, s, pad)


def grade_conv_forward(mod, rng):
    ref = reference
    for x, w, b, s, pad, case in _conv_cases(rng):
        got = _call(mod, "conv2d_forward", x.copy(), w.copy(), b.copy(), stride=s, padding=pad,
                    case=case)
        check_close("y", got, ref.conv2d_forward(x, w, b, (s, s), (pad, pad)), case)
    x, w, _, s, pad, case = list(_conv_cases(rng))[1]            # with padding
    case += ", b None"
    got = _call(mod, "conv2d_forward", x.copy(), w.copy(), None, stride=s, padding=pad, case=case)
    check_close("y (without bias)", got, ref.conv2d_forward(x, w, None, (s, s), (pad, pad)), case)


def _engine_im2col(x, KH, KW, s, pad):
    """cols[n, (c*KH+p)*KW+q, i*Wo+j], read off the engine's conv2d with one-hot kernels."""
    ref = reference
    N, C = x.shape[:2]
    onehot = np.eye(C * KH * KW).reshape(C * KH * KW, C, KH, KW)   # filter r picks tap (c,p,q)
    y = ref.conv2d_forward(x, onehot, None, (s, s), (pad, pad))
    return y.reshape(N, C * KH * KW, -1)


def _im2col_position(C, KH, KW, Wo, s, pad):
    """describe(index) for cols[n, r, col]: row r as the tap (c, p, q), column as (i, j),
    and the input pixel that element should hold."""
    def describe(index):
        n, r, col = index
        c, rest = divmod(r, KH * KW)
        p, q = divmod(rest, KW)
        i, j = divmod(col, Wo)
        h, v = i * s + p - pad, j * s + q - pad
        return (f"image {n}, row {r} = tap (c, p, q) = ({c}, {p}, {q}), column {col} = output "
                f"pixel (i, j) = ({i}, {j}): x[{n}, {c}, {h}, {v}]"
                + (" is in the padding" if pad and not (0 <= h and 0 <= v) else ""))
    return describe


def grade_im2col(mod, rng):
    ref = reference
    cases = list(_conv_cases(rng))

    def cols():
        for x, w, b, s, pad, case in cases:
            KH, KW = w.shape[2:]
            got = _call(mod, "im2col", x.copy(), KH, KW, stride=s, padding=pad,
                        case=f"x {x.shape}, kernel {KH}x{KW}, stride {s}, padding {pad}")
            expected = _engine_im2col(x, KH, KW, s, pad)
            Wo = (x.shape[3] + 2 * pad - KW) // s + 1
            check_close("cols", got, expected,
                        f"x {x.shape}, kernel {KH}x{KW}, stride {s}, padding {pad}",
                        describe=_im2col_position(x.shape[1], KH, KW, Wo, s, pad))

    def product():
        for x, w, b, s, pad, case in cases:
            got = _call(mod, "conv2d_im2col", x.copy(), w.copy(), b.copy(), stride=s,
                        padding=pad, case=case)
            check_close("conv2d_im2col's y", got, ref.conv2d_forward(x, w, b, (s, s), (pad, pad)),
                        case)
    _parts(("im2col", cols), ("conv2d_im2col", product))


def _tap_of(name):
    return lambda index: f"{name} of filter {index[0]}, channel {index[1]}, tap (p, q) = " \
                         f"({index[2]}, {index[3]})"


def grade_conv_backward(mod, rng):
    ref = reference
    for x, w, b, s, pad, case in _conv_cases(rng, _BACKWARD_SHAPES):
        y = ref.conv2d_forward(x, w, b, (s, s), (pad, pad))
        gy = rng.standard_normal(y.shape)
        case = case + f", gy {gy.shape}"
        got = _pair(_call(mod, "conv2d_backward", x.copy(), w.copy(), gy.copy(), stride=s,
                          padding=pad, case=case), "conv2d_backward", 3, case)
        gx, gw, gb = ref.conv2d_backward(x, w, gy, (s, s), (pad, pad))
        check_all(list(zip(("gx", "gw", "gb"), got, (gx, gw, gb))), case,
                  describe={"gw": _tap_of("weight")})


def grade_relu_backward(mod, rng):
    ref = reference
    for shape in [(7,), (2, 3, 4, 4), (5, 6)]:
        x = rng.standard_normal(shape)
        x.flat[::5] = 0.0                                  # the corner at 0 must give 0
        gy = rng.standard_normal(shape)
        case = f"x {shape}, some entries exactly 0" + _small("x", x) + _small("gy", gy)
        got = _call(mod, "relu_backward", gy.copy(), x.copy(), case=case)
        at = lambda index: f"x there is {x[index]:.4g}"                      # noqa: E731
        check_close("gx", got, ref.relu_backward(gy, ref.relu_forward(x)), case, describe=at)


def grade_maxpool_backward(mod, rng):
    ref = reference
    for N, C, H, W, k, s, ties in [(1, 1, 4, 4, 2, 2, False), (2, 3, 6, 6, 2, 2, True),
                                   (2, 2, 7, 7, 3, 2, True), (1, 2, 5, 6, 3, 1, True)]:
        # integer values make ties common: the first maximum in the window must win
        x = rng.integers(0, 3, (N, C, H, W)).astype(np.float64) if ties \
            else rng.standard_normal((N, C, H, W))
        y, idx = ref.max_pool2d_forward(x, (k, k), (s, s), (0, 0))
        gy = rng.standard_normal(y.shape)
        what = ("with ties (integer values)" if ties else "no ties") + \
            (", overlapping windows" if s < k else "")
        case = f"x {x.shape}, gy {gy.shape}, kernel {k}, stride {s}, {what}" + _small("x", x)
        got = _call(mod, "max_pool2d_backward", x.copy(), gy.copy(), k, s, case=case)
        check_close("gx", got, ref.max_pool2d_backward(gy, idx, x.shape), case)


def grade_softmax_cross_entropy(mod, rng):
    ref = reference
    for N, K, scale in [(4, 3, 1.0), (6, 2, 3.0), (5, 10, 1.0), (3, 4, 1000.0)]:
        logits = rng.standard_normal((N, K)) * scale
        target = rng.integers(0, K, N)
        case = (f"logits {logits.shape}, target {target.tolist()}"
                + (f", large logits (values near +-{scale:g})" if scale > 100 else "")
                + _small("logits", logits, 12))
        got = _pair(_call(mod, "softmax_cross_entropy", logits.copy(), target.copy(), case=case),
                    "softmax_cross_entropy", 2, case)
        loss, probs = ref.cross_entropy_forward(logits, target, None, "mean")
        dlogits = ref.cross_entropy_backward(probs, target, None, "mean", np.float64(1.0))
        check_all([("loss", got[0], loss), ("dlogits", got[1], dlogits)], case)


def grade_sgd_momentum(mod, rng):
    for shape, lr, momentum, wd in [((5,), 0.1, 0.9, 0.0), ((3, 4), 0.05, 0.5, 0.01),
                                    ((2, 2, 3), 0.2, 0.0, 0.0), ((4,), 0.1, 0.9, 0.1)]:
        p0 = rng.standard_normal(shape)
        grads = rng.standard_normal((4,) + shape)
        param = minicnn.tensor(p0, requires_grad=True, dtype=np.float64)
        opt = SGD([param], lr=lr, momentum=momentum, weight_decay=wd)
        p, v = p0.copy(), None
        settings = f"lr {lr}, momentum {momentum}, weight_decay {wd}, p {shape}"
        for step, g in enumerate(grads, 1):
            case = (f"step {step} of 4 from the same start, {settings}"
                    + (_small("p before the step", p, 6) + _small("g", g, 6) if step == 1 else ""))
            got = _pair(_call(mod, "sgd_momentum_step", p.copy(), g.copy(),
                              None if v is None else np.array(v, dtype=np.float64, copy=True),
                              lr, momentum, weight_decay=wd, case=case), "sgd_momentum_step", 2,
                        case)
            param.grad = minicnn.tensor(g, dtype=np.float64)     # minicnn.optim.SGD's step
            opt.step()
            hint = _mismatch("p_new", got[0], param.numpy(), case)
            if hint is not None:
                raise Wrong(hint + (f"; steps 1 to {step - 1} were right" if step > 2 else
                                    "; step 1 was right" if step == 2 else ""), case)
            if step == len(grads):
                _record(f"4 steps with {settings}")
            p, v = np.asarray(got[0], dtype=np.float64), got[1]
            p = param.numpy().astype(np.float64)        # go on from the engine's parameter


# Two recording kernels: each thread writes its own (block, thread) into every element
# it is responsible for, with the index maps of pool.cu (one thread per element) and
# gemm.cu (64 x 64 tiles, 16 x 16 threads, 4 x 4 outputs each, spread by 16).
_WHO_SOURCE = r"""
extern "C" __global__ void who_elementwise(int* block_of, int* thread_of, int total)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    block_of[t] = blockIdx.x;
    thread_of[t] = threadIdx.x;
}

extern "C" __global__ void who_sgemm(int* owner, int M, int N)
{
    int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    int me = ((blockIdx.y * gridDim.x + blockIdx.x) * blockDim.y + threadIdx.y) * blockDim.x
             + threadIdx.x;
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            int m = m0 + threadIdx.y + 16 * i, n = n0 + threadIdx.x + 16 * j;
            if (m < M && n < N) owner[m * N + n] = me;
        }
}
"""


def grade_cuda_index_map(mod, rng):
    emu = None
    for shape, block in [((2, 3, 5, 7), 64), ((1, 2, 3, 3), 8), ((3, 1, 4, 5), 32)]:
        total = int(np.prod(shape))
        blocks = -(-total // block)
        launch = f"a 1-D launch of {blocks} blocks of {block} threads over {total} elements"
        answers = {(b, t): _call(mod, "thread_element", b, block, t, shape,
                                 case=f"thread_element(block_idx={b}, block_dim={block}, "
                                      f"thread_idx={t}, shape={shape}): {launch}")
                   for b in range(blocks) for t in range(block)}
        emu = emu or load_module(_WHO_SOURCE)
        block_of = np.full(total, -1, np.int32)
        thread_of = np.full(total, -1, np.int32)
        emu.get_function("who_elementwise")((blocks,), (block,), (block_of, thread_of, np.int32(total)))
        expected = {(int(b), int(t)): tuple(int(i) for i in np.unravel_index(e, shape))
                    for e, (b, t) in enumerate(zip(block_of, thread_of))}
        for (b, t), got in answers.items():
            check_equal(f"thread_element(block_idx={b}, block_dim={block}, thread_idx={t}, "
                        f"shape={shape})", got, expected.get((b, t)), launch)
    for M, N in [(70, 130), (20, 64), (64, 65)]:
        grid = (-(-N // 64), -(-M // 64))
        answers = {}
        for bx in range(grid[0]):
            for by in range(grid[1]):
                for ty in range(16):
                    for tx in range(16):
                        got = _call(mod, "sgemm_elements", (bx, by), (tx, ty), M, N,
                                    case=f"sgemm_elements(block_idx=({bx}, {by}), thread_idx="
                                         f"({tx}, {ty}), M={M}, N={N}): a grid of {grid[0]} x "
                                         f"{grid[1]} blocks of 16 x 16 threads")
                        try:
                            answers[bx, by, tx, ty] = sorted(tuple(int(v) for v in e) for e in got)
                        except (TypeError, ValueError):
                            raise Wrong(f"sgemm_elements should return a list of (row, col) "
                                        f"pairs, got {got!r}") from None
        owner = np.full(M * N, -1, np.int32)
        emu.get_function("who_sgemm")(grid, (16, 16), (owner, np.int32(M), np.int32(N)))
        for (bx, by, tx, ty), got in answers.items():
            me = ((by * grid[0] + bx) * 16 + ty) * 16 + tx
            expected = [divmod(int(e), N) for e in np.flatnonzero(owner == me)]
            if got != expected:
                call = (f"sgemm_elements(block_idx=({bx}, {by}), thread_idx=({tx}, {ty}), "
                        f"M={M}, N={N})")
                extra = [e for e in got if e not in expected]
                missing = [e for e in expected if e not in got]
                what = (f"returned {extra[0]}, which another thread computes" if extra else
                        f"left out {missing[0]}" if missing else "returned an element twice")
                shown = ", ".join(map(str, expected[:5])) + (", ..." if len(expected) > 5 else "")
                raise Wrong(f"{call} {what}; this thread computes {len(expected)} elements: "
                            f"[{shown}] (a grid of {grid[0]} x {grid[1]} blocks of 16 x 16 threads)")


def grade_weighted_loss(mod, rng):
    cases = []
    for N, K in [(12, 2), (20, 3), (9, 4)]:
        # two classes: about 3 pneumonia to 1 normal, as PneumoniaMNIST; more: uniform
        labels = (rng.random(N) < 0.75).astype(np.int64) if K == 2 else rng.integers(0, K, N)
        labels[:K] = np.arange(K)                          # every class present
        labels = rng.permutation(labels)
        cases.append((K, labels, rng.standard_normal((N, K)) * 2))

    def weights():
        for K, labels, _ in cases:
            counts = np.bincount(labels, minlength=K)
            case = f"labels {labels.tolist()} (counts {counts.tolist()}), num_classes {K}"
            got = _call(mod, "class_weights", labels.copy(), K, case=case)
            check_close("weight", got, class_weights(labels, K).astype(np.float64), case)

    def loss():
        # the balanced weights sum to N over the batch, so dividing by N would pass them:
        # the last case gives each class a weight of its own
        for k, (K, labels, logits) in enumerate(cases):
            weight = class_weights(labels, K).astype(np.float64) if k < len(cases) - 1 \
                else np.round(rng.uniform(0.2, 3.0, K), 2)
            case = (f"logits {logits.shape}, target {labels.tolist()}, "
                    f"weight {np.round(weight, 4).tolist()}")
            got = _call(mod, "weighted_cross_entropy", logits.copy(), labels.copy(), weight.copy(),
                        case=case)
            expected = functional.cross_entropy(minicnn.tensor(logits, dtype=np.float64),
                                                minicnn.tensor(labels),
                                                weight=minicnn.tensor(weight, dtype=np.float64))
            check_close("loss", got, expected.item(), case)
    _parts(("class_weights", weights), ("weighted_cross_entropy", loss))


def grade_sensitivity_specificity(mod, rng):
    def rates():
        for N in (10, 25, 40):
            y_true = rng.integers(0, 2, N)
            y_true[:2] = (0, 1)                            # both classes present
            y_pred = np.where(rng.random(N) < 0.7, y_true, 1 - y_true)
            case = f"y_true {y_true.tolist()}, y_pred {y_pred.tolist()}"
            got = _pair(_call(mod, "sensitivity_specificity", y_true.copy(), y_pred.copy(),
                              case=case), "sensitivity_specificity", 2, case)
            engine = metrics.binary_metrics(y_true, y_pred, threshold=0.5)   # 0/1 as scores
            check_all([("sensitivity", got[0], engine["sensitivity"]),
                       ("specificity", got[1], engine["specificity"])], case)

    def threshold():
        for N, target in [(20, 0.9), (30, 0.95), (15, 0.5)]:
            y_true = rng.integers(0, 2, N)
            y_true[:2] = (0, 1)
            scores = np.round(np.clip(0.35 * y_true + 0.65 * rng.random(N), 0, 1), 2)
            case = f"target sensitivity {target}, y_true {y_true.tolist()}, scores {scores.tolist()}"
            got = _call(mod, "threshold_for_sensitivity", y_true.copy(), scores.copy(), target,
                        case=case)
            _, tpr, thresholds = metrics.roc_curve(y_true, scores)       # thresholds decreasing
            check_close("threshold", got, thresholds[np.argmax(tpr >= target)], case)
    _parts(("sensitivity_specificity", rates), ("threshold_for_sensitivity", threshold))


EXERCISES = {
    "01_conv_forward": ("conv2d forward by loops", grade_conv_forward),
    "02_im2col": ("im2col and convolution as a matrix product", grade_im2col),
    "03_conv_backward": ("conv2d backward", grade_conv_backward),
    "04_relu_backward": ("ReLU backward", grade_relu_backward),
    "05_maxpool_backward": ("max-pool backward, ties and overlaps", grade_maxpool_backward),
    "06_softmax_cross_entropy": ("softmax cross-entropy and its gradient", grade_softmax_cross_entropy),
    "07_sgd_momentum": ("one SGD-with-momentum step", grade_sgd_momentum),
    "08_cuda_index_map": ("CUDA index maps: elementwise and tiled sgemm", grade_cuda_index_map),
    "09_weighted_loss": ("class weights and the weighted loss", grade_weighted_loss),
    "10_sensitivity_specificity": ("sensitivity, specificity, a threshold", grade_sensitivity_specificity),
}


# --------------------------------------------------------------------------- running

def find_dir(path, solutions):
    """The folder holding the exercise files, or a UserError saying where to look."""
    given = path is not None
    candidates = [Path(path)] if given else [Path(DEFAULT_DIR)]
    if not given:   # an editable install: the checkout beside the package
        candidates.append(Path(__file__).resolve().parents[2] / DEFAULT_DIR)
    for folder in candidates:
        if solutions:
            folder = folder / "solutions"
        if folder.is_dir():
            return folder
    shown = candidates[0] / "solutions" if solutions else candidates[0]
    raise UserError(f"grade: no exercises folder at {shown}. Run `minicnn grade` from the root "
                    f"of a minicnn checkout (the folder that holds lessons/), or point --dir at "
                    f"lessons/exercises")


def select(names, wanted):
    """Exercise names matching `wanted` ('03', '3', '03_conv_backward', 'conv_backward'), or all."""
    if wanted is None:
        return list(names)
    key = wanted.strip().lower().removesuffix(".py")
    if key.isdigit():
        key = f"{int(key):02d}"
    found = [n for n in names if n == key or n.split("_", 1)[0] == key or n.split("_", 1)[1] == key]
    if not found:
        found = [n for n in names if key in n]
    if not found:
        raise UserError(f"grade: no exercise called {wanted!r}; choose one of: {', '.join(names)}")
    return found


def _shown(path):
    """The path relative to the current folder when it is inside it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:   # another drive (Windows)
        return str(path)
    return str(Path(path).resolve()) if rel.startswith("..") else rel


def _load(path):
    spec = importlib.util.spec_from_file_location(f"minicnn_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _where(exc, path):
    """' (line N of FILE)' for the deepest traceback frame inside the exercise file."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(path):
            line = frame.lineno
    return f" (line {line} of {_shown(path)})" if line else ""


def _passed_before(failed_case, shown=2):
    """'; passed before it: CASE; CASE (and N more)' - what the student's code already gets right."""
    earlier = [c for c in _passed if c != failed_case]
    if not earlier:
        return ""
    more = f" (and {len(earlier) - shown} more)" if len(earlier) > shown else ""
    return ". Passed before it: " + "; ".join(f"[{c}]" for c in earlier[:shown]) + more


def grade_one(name, folder, seed):
    """(passed, message) for one exercise file."""
    path = folder / f"{name}.py"
    if not path.is_file():
        return False, f"missing file {_shown(path)}"
    try:
        module = _load(path)
    except Exception as exc:
        return False, f"could not load {_shown(path)}: {type(exc).__name__}: {exc}{_where(exc, path)}"
    title, grader = EXERCISES[name]
    rng = np.random.default_rng(seed)
    _passed.clear()
    try:
        with np.errstate(all="ignore"):   # a NaN in an answer is reported as a wrong element
            grader(module, rng)
    except NotStarted as exc:
        return False, f"not started: fill in the TODO in {_shown(path)} ({exc}() still raises NotImplementedError)"
    except Wrong as exc:
        return False, str(exc) + _passed_before(exc.case)
    except Raised as exc:
        error = exc.exc
        where = _where(error, path) or " (in code your file called)"
        others = getattr(exc, "others", "")
        return False, (f"{exc.function}() raised {type(error).__name__}: {error}{where}, "
                       f"on the case {exc.case}" + (f"; {others}" if others else "")
                       + _passed_before(exc.case))
    except Exception as exc:
        where = _where(exc, path)
        if not where:
            return False, (f"could not check it: minicnn raised {type(exc).__name__}: {exc} "
                           "(a problem in the engine, not in your file)")
        return False, f"raised {type(exc).__name__}: {exc}{where}"
    return True, title


def add_arguments(parser):
    parser.add_argument("exercise", nargs="?", default=None,
                        help="which exercise: a number (3 or 03) or a name (conv_backward); default all")
    parser.add_argument("--solutions", action="store_true",
                        help="grade the reference solutions in <dir>/solutions instead")
    parser.add_argument("--dir", default=None,
                        help=f"the exercises folder (default ./{DEFAULT_DIR})")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random test cases (default 0)")


def run(args):
    names = select(list(EXERCISES), args.exercise)
    folder = find_dir(args.dir, args.solutions)
    print(f"grading {_shown(folder)} ({'reference solutions' if args.solutions else 'your versions'}), "
          f"seed {args.seed}")
    width = max(len(n) for n in names)
    passed = 0
    for name in names:
        ok, message = grade_one(name, folder, args.seed)
        passed += ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {message}", flush=True)
    print(f"{passed} of {len(names)} passed")
    return 0 if passed == len(names) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.cli.grade",
                                     description="Check the lesson exercises against minicnn.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
