"""`minicnn grade [EXERCISE]`: check the classroom exercises against the engine.

Each exercise in lessons/exercises/ is a Python file holding a few functions a
student fills in (conv2d by loops, im2col, conv backward, ...). The grader loads
the file, runs its functions on random cases, and compares the answers with what
minicnn itself computes (the numpy reference kernels, functional.cross_entropy,
optim.SGD, data.class_weights, metrics, and small kernels run on the CUDA
emulator). For each exercise it prints PASS, or FAIL with a hint: the first
wrong element (its index, the expected value and the value returned), or, for an
untouched file, which TODO to fill in.

    minicnn grade                 every exercise, the student's versions
    minicnn grade 03              one exercise (by number or name)
    minicnn grade --solutions     the reference solutions (lessons/exercises/solutions)
    python -m minicnn.grade ...   the same, without the console script

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

from .errors import UserError

DEFAULT_DIR = os.path.join("lessons", "exercises")
ATOL, RTOL = 1e-6, 1e-5          # answers are computed in float64


class Wrong(Exception):
    """An answer that differs from the engine's; the message is the hint."""


class NotStarted(Exception):
    """The student's function still raises NotImplementedError."""


# --------------------------------------------------------------------------- comparing answers

def _fmt(value):
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else repr(value)


def check_close(name, got, expected, case, atol=ATOL, rtol=RTOL):
    """Raise Wrong naming the first element (row-major) where |got - expected| > atol + rtol*|expected|."""
    expected = np.asarray(expected, dtype=np.float64)
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{name} should be an array of numbers of shape {expected.shape}, "
                    f"got {type(got).__name__} ({case})") from None
    if got.shape != expected.shape:
        raise Wrong(f"{name} has shape {got.shape} but should have shape {expected.shape} ({case})")
    bad = ~(np.abs(got - expected) <= atol + rtol * np.abs(expected))   # NaN counts as wrong
    if not bad.any():
        return
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    e, g = expected[first].item(), got[first].item()
    where = f" at index {tuple(int(i) for i in first)}" if bad.ndim else ""
    tip = "" if np.isfinite(g) else " (not a finite number: did exp() overflow, or a division by zero?)"
    count = f"; {int(bad.sum())} of {bad.size} elements are wrong" if bad.size > 1 else ""
    raise Wrong(f"{name} is wrong{where}: expected {_fmt(e)}, got {_fmt(g)}{tip}{count} ({case})")


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


def _call(module, name, *args, **kwargs):
    """Call the student's function; NotImplementedError means 'not started'."""
    fn = getattr(module, name, None)
    if not callable(fn):
        raise Wrong(f"the file has no function named {name}() (was it renamed?)")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotStarted(name) from None


def _pair(result, name, count):
    if not isinstance(result, (tuple, list)) or len(result) != count:
        raise Wrong(f"{name} should return a tuple of {count} values, got {type(result).__name__}"
                    + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return result


# --------------------------------------------------------------------------- the exercises

def _reference():
    from minicnn.kernels import reference
    return reference


def _conv_cases(rng, count=5):
    """Random convolution problems: shapes, stride, padding; small enough for Python loops."""
    shapes = [(1, 1, 5, 5, 1, 3, 1, 0), (2, 3, 6, 5, 4, 3, 1, 1), (2, 2, 7, 7, 3, 3, 2, 1),
              (1, 3, 8, 6, 2, 2, 2, 0), (2, 2, 5, 6, 3, 1, 1, 0), (1, 2, 6, 6, 2, 5, 1, 2)]
    for N, C, H, W, F, K, s, pad in shapes[:count]:
        x = rng.standard_normal((N, C, H, W))
        w = rng.standard_normal((F, C, K, K))
        b = rng.standard_normal(F)
        case = f"x {x.shape}, w {w.shape}, stride {s}, padding {pad}"
        yield x, w, b, s, pad, case


def grade_conv_forward(mod, rng):
    ref = _reference()
    for x, w, b, s, pad, case in _conv_cases(rng):
        got = _call(mod, "conv2d_forward", x.copy(), w.copy(), b.copy(), stride=s, padding=pad)
        check_close("y", got, ref.conv2d_forward(x, w, b, (s, s), (pad, pad)), case)
    x, w, _, s, pad, case = list(_conv_cases(rng, 2))[1]          # with padding
    got = _call(mod, "conv2d_forward", x.copy(), w.copy(), None, stride=s, padding=pad)
    check_close("y (without bias)", got, ref.conv2d_forward(x, w, None, (s, s), (pad, pad)), case)


def _engine_im2col(x, KH, KW, s, pad):
    """cols[n, (c*KH+p)*KW+q, i*Wo+j], read off the engine's conv2d with one-hot kernels."""
    ref = _reference()
    N, C = x.shape[:2]
    onehot = np.eye(C * KH * KW).reshape(C * KH * KW, C, KH, KW)   # filter r picks tap (c,p,q)
    y = ref.conv2d_forward(x, onehot, None, (s, s), (pad, pad))
    return y.reshape(N, C * KH * KW, -1)


def grade_im2col(mod, rng):
    ref = _reference()
    for x, w, b, s, pad, case in _conv_cases(rng):
        KH, KW = w.shape[2:]
        got = _call(mod, "im2col", x.copy(), KH, KW, stride=s, padding=pad)
        check_close("cols", got, _engine_im2col(x, KH, KW, s, pad), case + f", kernel {KH}x{KW}")
    for x, w, b, s, pad, case in _conv_cases(rng):
        got = _call(mod, "conv2d_im2col", x.copy(), w.copy(), b.copy(), stride=s, padding=pad)
        check_close("conv2d_im2col's y", got, ref.conv2d_forward(x, w, b, (s, s), (pad, pad)), case)


def grade_conv_backward(mod, rng):
    ref = _reference()
    for x, w, b, s, pad, case in _conv_cases(rng):
        y = ref.conv2d_forward(x, w, b, (s, s), (pad, pad))
        gy = rng.standard_normal(y.shape)
        got = _pair(_call(mod, "conv2d_backward", x.copy(), w.copy(), gy.copy(), stride=s,
                          padding=pad), "conv2d_backward", 3)
        gx, gw, gb = ref.conv2d_backward(x, w, gy, (s, s), (pad, pad))
        for name, g, e in zip(("gx", "gw", "gb"), got, (gx, gw, gb)):
            check_close(name, g, e, case)


def grade_relu_backward(mod, rng):
    ref = _reference()
    for shape in [(7,), (2, 3, 4, 4), (5, 6)]:
        x = rng.standard_normal(shape)
        x.flat[::5] = 0.0                                  # the corner at 0 must give 0
        gy = rng.standard_normal(shape)
        got = _call(mod, "relu_backward", gy.copy(), x.copy())
        check_close("gx", got, ref.relu_backward(gy, ref.relu_forward(x)),
                    f"x {shape}, some entries exactly 0")


def grade_maxpool_backward(mod, rng):
    ref = _reference()
    for N, C, H, W, k, s, ties in [(1, 1, 4, 4, 2, 2, False), (2, 3, 6, 6, 2, 2, True),
                                   (2, 2, 7, 7, 3, 2, True), (1, 2, 5, 6, 3, 1, True)]:
        # integer values make ties common: the first maximum in the window must win
        x = rng.integers(0, 3, (N, C, H, W)).astype(np.float64) if ties \
            else rng.standard_normal((N, C, H, W))
        y, idx = ref.max_pool2d_forward(x, (k, k), (s, s), (0, 0))
        gy = rng.standard_normal(y.shape)
        got = _call(mod, "max_pool2d_backward", x.copy(), gy.copy(), k, s)
        what = ("with ties (integer values)" if ties else "no ties") + \
            (", overlapping windows" if s < k else "")
        check_close("gx", got, ref.max_pool2d_backward(gy, idx, x.shape),
                    f"x {x.shape}, kernel {k}, stride {s}, {what}")


def grade_softmax_cross_entropy(mod, rng):
    ref = _reference()
    for N, K, scale in [(4, 3, 1.0), (6, 2, 3.0), (5, 10, 1.0), (3, 4, 1000.0)]:
        logits = rng.standard_normal((N, K)) * scale
        target = rng.integers(0, K, N)
        case = f"logits {logits.shape}" + (f", values near +-{scale:g}" if scale > 100 else "")
        got = _pair(_call(mod, "softmax_cross_entropy", logits.copy(), target.copy()),
                    "softmax_cross_entropy", 2)
        loss, probs = ref.cross_entropy_forward(logits, target, None, "mean")
        check_close("loss", got[0], loss, case)
        check_close("dlogits", got[1],
                    ref.cross_entropy_backward(probs, target, None, "mean", np.float64(1.0)), case)


def grade_sgd_momentum(mod, rng):
    import minicnn
    for shape, lr, momentum, wd in [((5,), 0.1, 0.9, 0.0), ((3, 4), 0.05, 0.5, 0.01),
                                    ((2, 2, 3), 0.2, 0.0, 0.0)]:
        p0 = rng.standard_normal(shape)
        grads = rng.standard_normal((4,) + shape)
        p, v, mine = p0.copy(), None, []
        for g in grads:                       # the student's four steps first ...
            got = _pair(_call(mod, "sgd_momentum_step", p.copy(), g.copy(),
                              None if v is None else np.array(v, dtype=np.float64, copy=True),
                              lr, momentum, weight_decay=wd), "sgd_momentum_step", 2)
            p, v = np.asarray(got[0], dtype=np.float64), got[1]
            mine.append(p)
        from minicnn.optim import SGD         # ... then minicnn.optim.SGD's
        param = minicnn.tensor(p0, requires_grad=True, dtype=np.float64)
        opt = SGD([param], lr=lr, momentum=momentum, weight_decay=wd)
        for step, (g, p) in enumerate(zip(grads, mine), 1):
            param.grad = minicnn.tensor(g, dtype=np.float64)
            opt.step()
            case = f"step {step}, lr {lr}, momentum {momentum}, weight_decay {wd}, p {shape}"
            check_close("p_new", p, param.numpy(), case)


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
    from minicnn.kernels.cuda.emu import load_module
    emu = None
    for shape, block in [((2, 3, 5, 7), 64), ((1, 2, 3, 3), 8), ((3, 1, 4, 5), 32)]:
        total = int(np.prod(shape))
        blocks = -(-total // block)
        answers = {(b, t): _call(mod, "thread_element", b, block, t, shape)
                   for b in range(blocks) for t in range(block)}
        emu = emu or load_module(_WHO_SOURCE)
        block_of = np.full(total, -1, np.int32)
        thread_of = np.full(total, -1, np.int32)
        emu.get_function("who_elementwise")((blocks,), (block,), (block_of, thread_of, np.int32(total)))
        expected = {(int(b), int(t)): tuple(int(i) for i in np.unravel_index(e, shape))
                    for e, (b, t) in enumerate(zip(block_of, thread_of))}
        for (b, t), got in answers.items():
            check_equal(f"thread_element(block_idx={b}, block_dim={block}, thread_idx={t}, "
                        f"shape={shape})", got, expected.get((b, t)),
                        f"a 1-D launch of {blocks} blocks of {block} threads over {total} elements")
    for M, N in [(70, 130), (20, 64), (64, 65)]:
        grid = (-(-N // 64), -(-M // 64))
        answers = {}
        for bx in range(grid[0]):
            for by in range(grid[1]):
                for ty in range(16):
                    for tx in range(16):
                        got = _call(mod, "sgemm_elements", (bx, by), (tx, ty), M, N)
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
    import minicnn
    from minicnn import functional as F
    for N, K in [(12, 2), (20, 3), (9, 4)]:
        # two classes: about 3 pneumonia to 1 normal, as PneumoniaMNIST; more: uniform
        labels = (rng.random(N) < 0.75).astype(np.int64) if K == 2 else rng.integers(0, K, N)
        labels[:K] = np.arange(K)                          # every class present
        labels = rng.permutation(labels)
        counts = np.bincount(labels, minlength=K)
        got = _call(mod, "class_weights", labels.copy(), K)
        from minicnn.data import class_weights
        expected = class_weights(labels, K).astype(np.float64)
        check_close("weight", got, expected, f"labels with counts {counts.tolist()}")
        logits = rng.standard_normal((N, K)) * 2
        got = _call(mod, "weighted_cross_entropy", logits.copy(), labels.copy(), expected.copy())
        loss = F.cross_entropy(minicnn.tensor(logits, dtype=np.float64), minicnn.tensor(labels),
                               weight=minicnn.tensor(expected, dtype=np.float64))
        check_close("loss", got, loss.item(), f"logits {logits.shape}, weight {np.round(expected, 3).tolist()}")


def grade_sensitivity_specificity(mod, rng):
    for N in (10, 25, 40):
        y_true = rng.integers(0, 2, N)
        y_true[:2] = (0, 1)                                # both classes present
        y_pred = np.where(rng.random(N) < 0.7, y_true, 1 - y_true)
        got = _pair(_call(mod, "sensitivity_specificity", y_true.copy(), y_pred.copy()),
                    "sensitivity_specificity", 2)
        from minicnn import metrics
        engine = metrics.binary_metrics(y_true, y_pred, threshold=0.5)   # y_pred as 0/1 scores
        case = f"y_true {y_true.tolist()}, y_pred {y_pred.tolist()}"
        check_close("sensitivity", got[0], engine["sensitivity"], case)
        check_close("specificity", got[1], engine["specificity"], case)
    for N, target in [(20, 0.9), (30, 0.95), (15, 0.5)]:
        y_true = rng.integers(0, 2, N)
        y_true[:2] = (0, 1)
        scores = np.round(np.clip(0.35 * y_true + 0.65 * rng.random(N), 0, 1), 2)
        got = _call(mod, "threshold_for_sensitivity", y_true.copy(), scores.copy(), target)
        _, tpr, thresholds = metrics.roc_curve(y_true, scores)       # thresholds decreasing
        check_close("threshold", got, thresholds[np.argmax(tpr >= target)],
                    f"target sensitivity {target}, y_true {y_true.tolist()}, scores {scores.tolist()}")


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
        candidates.append(Path(__file__).resolve().parent.parent / DEFAULT_DIR)
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
    try:
        with np.errstate(all="ignore"):   # a NaN in an answer is reported as a wrong element
            grader(module, rng)
    except NotStarted as exc:
        return False, f"not started: fill in the TODO in {_shown(path)} ({exc}() still raises NotImplementedError)"
    except Wrong as exc:
        return False, str(exc)
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
    parser = argparse.ArgumentParser(prog="python -m minicnn.grade",
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
