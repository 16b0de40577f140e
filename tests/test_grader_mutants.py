"""Typical student mistakes, each written into a copy of a reference solution: the
grader must FAIL every one with a hint that names the case (shapes and settings, so
the student can reproduce it), and must PASS correct solutions written differently
from the reference."""
import argparse
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from minicnn.cli import grade

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "lessons" / "exercises" / "solutions"

CONV_CASE = r"x \(\d, \d, \d, \d\), w \(\d, \d, \d, \d\) \(kernel \dx\d\), stride \d, padding \d"

# id: (exercise, text in the solution, the mistake, patterns the FAIL line must hold)
MUTANTS = {
    "off-by-one output size": (
        "01_conv_forward", "Ho = (H + 2 * padding - KH) // stride + 1",
        "Ho = (H + 2 * padding - KH) // stride",
        [r"y has shape \(1, 1, 2, 3\) but should have shape \(1, 1, 3, 3\) "
         r"\(x \(1, 1, 5, 5\), w \(1, 1, 3, 3\) \(kernel 3x3\), stride 1, padding 0\)"]),
    "padding subtracted twice": (
        "01_conv_forward", "h = i * stride + p - padding", "h = i * stride + p - 2 * padding",
        [r"y is wrong at index \(0, 0, \d, \d\): expected \S+, got \S+; \d+ of \d+ elements are "
         r"wrong \(x \(2, 3, 6, 5\), w \(4, 3, 3, 3\) \(kernel 3x3\), stride 1, padding 1\)",
         r"Passed before it: \[x \(1, 1, 5, 5\), w \(1, 1, 3, 3\) \(kernel 3x3\), stride 1, "
         r"padding 0\]"]),
    "stride ignored": (
        "01_conv_forward", "h = i * stride + p - padding", "h = i + p - padding",
        [r"y is wrong at index .*\(x \(2, 2, 7, 7\), w \(3, 2, 3, 3\) \(kernel 3x3\), "
         r"stride 2, padding 1\)\. Passed before it: \[x \(1, 1, 5, 5\).*padding 0\]; "
         r"\[x \(2, 3, 6, 5\).*padding 1\]"]),
    "transposed taps": (
        "01_conv_forward", "x[n, c, h, v] * w[f, c, p, q]", "x[n, c, h, v] * w[f, c, q, p]",
        [r"y is wrong at index \(0, 0, 0, 0\).*\(x \(1, 1, 5, 5\), w \(1, 1, 3, 3\)"]),
    "bias forgotten": (
        "01_conv_forward", "total = 0.0 if b is None else b[f]", "total = 0.0",
        [r"y is wrong at index \(0, 0, 0, 0\).*\(x \(1, 1, 5, 5\)"]),
    "im2col rows in (c, q, p) order": (
        "02_im2col", "cols[:, :, p, q] = xp", "cols[:, :, q, p] = xp",
        [r"cols is wrong at index \(0, 1, 0\) \(image 0, row 1 = tap \(c, p, q\) = \(0, 0, 1\), "
         r"column 0 = output pixel \(i, j\) = \(0, 0\): x\[0, 0, 0, 1\]\)",
         r"\(x \(1, 1, 5, 5\), kernel 3x3, stride 1, padding 0\)",
         r"conv2d_im2col\(\) is wrong"]),
    "im2col without the zero padding": (
        "02_im2col", "xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))",
        "xp = x",
        [r"im2col\(\) raised ValueError: .*\(line \d+ of .*02_im2col\.py\), on the case "
         r"x \(2, 3, 6, 5\), kernel 3x3, stride 1, padding 1",
         r"conv2d_im2col\(\) is raising an error"]),
    "bias gradient averaged": (
        "03_conv_backward", "gb = gy.sum(axis=(0, 2, 3))", "gb = gy.mean(axis=(0, 2, 3))",
        [r"gb is wrong at index \(0,\)",
         r"\(x \(2, 3, 5, 7\), w \(4, 3, 2, 3\) \(kernel 2x3\), stride 1, padding 1, "
         r"gy \(2, 4, 6, 7\)\); gx and gw are right"]),
    "weight gradient with transposed taps": (
        "03_conv_backward", "gw[f, :, p, q] += g * x[n, :, h, v]",
        "gw[f, :, q, p] += g * x[n, :, h, v]",
        [r"conv2d_backward\(\) raised IndexError: .*\(line \d+ of .*03_conv_backward\.py\), "
         r"on the case x \(2, 3, 5, 7\), w \(4, 3, 2, 3\) \(kernel 2x3\), stride 1, padding 1"]),
    "input gradient with the taps flipped": (
        "03_conv_backward", "gx[n, :, h, v] += g * w[f, :, p, q]",
        "gx[n, :, h, v] += g * w[f, :, KH - 1 - p, KW - 1 - q]",
        [r"gx is wrong at index \(0, \d, \d, \d\).*\(x \(2, 3, 5, 7\), w \(4, 3, 2, 3\).*"
         r"; gw and gb are right"]),
    "relu backward passes the gradient at 0": (
        "04_relu_backward", "np.where(x > 0, gy, 0.0)", "np.where(x >= 0, gy, 0.0)",
        [r"gx is wrong at index \(0,\) \(x there is 0\): expected 0, got \S+; .*"
         r"\(x \(7,\), some entries exactly 0, x = \[0\.0, "]),
    "max pool ties to the last index": (
        "05_maxpool_backward", "first = np.argmax(window)",
        "first = window.size - 1 - np.argmax(window.ravel()[::-1])",
        [r"gx is wrong at index .*\(x \(2, 3, 6, 6\), gy \(2, 3, 3, 3\), kernel 2, stride 2, "
         r"with ties \(integer values\)\)"]),
    "max pool gradient assigned, not added": (
        "05_maxpool_backward", "gx[n, c, i * s + p, j * s + q] += gy[n, c, i, j]",
        "gx[n, c, i * s + p, j * s + q] = gy[n, c, i, j]",
        [r"gx is wrong .*kernel 3, stride 2, with ties \(integer values\), overlapping windows"]),
    "no max shift in softmax": (
        "06_softmax_cross_entropy", "shifted = logits - logits.max(axis=1, keepdims=True)",
        "shifted = logits",
        [r"not a finite number: did exp\(\) overflow",
         r"\(logits \(3, 4\), target \[[\d, ]+\], large logits \(values near \+-1000\)"]),
    "gradient not divided by N": (
        "06_softmax_cross_entropy", "return loss, grad / N", "return loss, grad",
        [r"dlogits is wrong at index \(0, 0\).*\(logits \(4, 3\), target \[[\d, ]+\], "
         r"logits = \[\[.*\]\]\); loss is right"]),
    "dampened momentum": (
        "07_sgd_momentum", "momentum * velocity + g", "momentum * velocity + (1 - momentum) * g",
        [r"p_new is wrong at index \(0,\).*\(step 2 of 4 from the same start, lr 0\.1, "
         r"momentum 0\.9, weight_decay 0\.0, p \(5,\)\); step 1 was right"]),
    "forgotten weight decay": (
        "07_sgd_momentum", "g = g + weight_decay * p", "g = g",
        [r"p_new is wrong .*\(step 1 of 4 from the same start, lr 0\.05, momentum 0\.5, "
         r"weight_decay 0\.01, p \(3, 4\)"]),
    "thread index without the block offset": (
        "08_cuda_index_map", "t = block_idx * block_dim + thread_idx", "t = thread_idx",
        [r"thread_element\(block_idx=1, block_dim=64, thread_idx=0, shape=\(2, 3, 5, 7\)\): "
         r"expected \(0, 1, 4, 1\), got \(0, 0, 0, 0\) \(a 1-D launch of 4 blocks of 64 threads"]),
    "class weights as frequencies": (
        "09_weighted_loss", "len(labels) / (num_classes * counts)", "counts / len(labels)",
        [r"weight is wrong at index \(0,\).*\(labels \[[\d, ]+\] \(counts \[\d+, \d+\]\), "
         r"num_classes 2\); weighted_cross_entropy\(\) is right"]),
    "weighted loss divided by N": (
        "09_weighted_loss", "/ w.sum())", "/ len(target))",
        [r"loss is wrong: .*\(logits \(9, 4\), target \[[\d, ]+\], weight \[[\d., ]+\]\); "
         r"class_weights\(\) is right"]),
    "sensitivity mixed up with precision": (
        "10_sensitivity_specificity", "tp / (tp + fn)", "tp / (tp + fp)",
        [r"sensitivity is wrong: expected \S+, got \S+ \(y_true \[[\d, ]+\], y_pred \[[\d, ]+\]\); "
         r"specificity is right"]),
    "threshold: the smallest, not the largest": (
        "10_sensitivity_specificity", "np.unique(scores)[::-1]", "np.unique(scores)",
        [r"threshold is wrong: .*\(target sensitivity 0\.9, y_true \[[\d, ]+\], "
         r"scores \[[\d., ]+\]\); sensitivity_specificity\(\) is right"]),
}


def grade_folder(capsys, folder, name, seed=0):
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    code = grade.run(parser.parse_args([name, "--dir", str(folder), "--seed", str(seed)]))
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if re.match(rf"(PASS|FAIL)\s+{name}\s", ln)]
    assert len(lines) == 1, out
    return code, lines[0]


def test_at_least_twelve_mistakes_over_most_exercises():
    assert len(MUTANTS) >= 12
    assert len({exercise for exercise, *_ in MUTANTS.values()}) >= 9


@pytest.mark.parametrize("mistake", list(MUTANTS))
def test_mistake_fails_and_the_hint_names_the_case(capsys, tmp_path, mistake):
    name, old, new, patterns = MUTANTS[mistake]
    folder = tmp_path / "exercises"
    shutil.copytree(SOLUTIONS, folder)
    path = folder / f"{name}.py"
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}: update the mutant"
    path.write_text(text.replace(old, new, 1))
    code, line = grade_folder(capsys, folder, name)
    assert line.startswith("FAIL") and code == 1, line
    for pattern in patterns:
        assert re.search(pattern, line), f"{mistake}: no /{pattern}/ in\n{line}"


def test_a_square_one_channel_case_would_hide_a_missing_transpose():
    """Why the first conv-backward case is non-square: with F = C = 1 and a square
    kernel, gw computed as (col @ gy.T) instead of (gy @ col.T) has the right numbers."""
    N, C, H, W, F, KH, KW, s, pad = grade._BACKWARD_SHAPES[0]
    assert H != W and KH != KW and C != F and N > 1 and C * KH * KW != F


# Correct answers written differently from the reference solutions.
ALTERNATIVES = {
    "01_conv_forward": """
        import numpy as np

        def conv2d_forward(x, w, b=None, stride=1, padding=0):
            xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
            F, C, KH, KW = w.shape
            Ho = (xp.shape[2] - KH) // stride + 1
            Wo = (xp.shape[3] - KW) // stride + 1
            y = np.zeros((x.shape[0], F, Ho, Wo))
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
            return y if b is None else y + np.asarray(b)[None, :, None, None]
    """,
    "02_im2col": """
        import numpy as np

        def im2col(x, KH, KW, stride=1, padding=0):
            N, C, H, W = x.shape
            xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
            Ho = (H + 2 * padding - KH) // stride + 1
            Wo = (W + 2 * padding - KW) // stride + 1
            cols = np.empty((N, C * KH * KW, Ho * Wo))
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    cols[:, :, i * Wo + j] = patch.reshape(N, -1)
            return cols

        def conv2d_im2col(x, w, b=None, stride=1, padding=0):
            F, C, KH, KW = w.shape
            Ho = (x.shape[2] + 2 * padding - KH) // stride + 1
            Wo = (x.shape[3] + 2 * padding - KW) // stride + 1
            y = np.einsum("fr,nrk->nfk", w.reshape(F, -1), im2col(x, KH, KW, stride, padding))
            y = y.reshape(x.shape[0], F, Ho, Wo)
            return y if b is None else y + b.reshape(1, F, 1, 1)
    """,
    "03_conv_backward": """
        import numpy as np

        def conv2d_backward(x, w, gy, stride=1, padding=0):
            # the matrix form: gw = GY col^T, gx = col2im(W^T GY)
            N, C, H, W = x.shape
            F, _, KH, KW = w.shape
            Ho, Wo = gy.shape[2:]
            xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
            col = np.empty((N, C, KH, KW, Ho, Wo))
            for p in range(KH):
                for q in range(KW):
                    col[:, :, p, q] = xp[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride]
            col = col.reshape(N, C * KH * KW, Ho * Wo)
            GY = gy.reshape(N, F, Ho * Wo)
            gw = np.einsum("nfk,nrk->fr", GY, col).reshape(w.shape)
            gcol = np.einsum("fr,nfk->nrk", w.reshape(F, -1), GY).reshape(N, C, KH, KW, Ho, Wo)
            gxp = np.zeros_like(xp)
            for p in range(KH):
                for q in range(KW):
                    gxp[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride] += gcol[:, :, p, q]
            gx = gxp[:, :, padding:padding + H, padding:padding + W]
            return gx, gw, GY.sum(axis=(0, 2))
    """,
    "04_relu_backward": """
        def relu_backward(gy, x):
            return gy * (x > 0)
    """,
    "05_maxpool_backward": """
        import numpy as np

        def max_pool2d_backward(x, gy, kernel_size, stride):
            gx = np.zeros(x.shape)
            N, C, Ho, Wo = gy.shape
            for i in range(Ho):
                for j in range(Wo):
                    window = x[:, :, i * stride:i * stride + kernel_size,
                               j * stride:j * stride + kernel_size].reshape(N, C, -1)
                    p, q = np.divmod(window.argmax(axis=2), kernel_size)
                    n, c = np.indices((N, C))
                    np.add.at(gx, (n, c, i * stride + p, j * stride + q), gy[:, :, i, j])
            return gx
    """,
    "06_softmax_cross_entropy": """
        import numpy as np

        def softmax_cross_entropy(logits, target):
            N = len(target)
            m = logits.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
            loss = float(np.mean(lse - logits[np.arange(N), target]))
            p = np.exp(logits - lse[:, None])
            return loss, (p - np.eye(logits.shape[1])[target]) / N
    """,
    "07_sgd_momentum": """
        def sgd_momentum_step(p, g, velocity, lr, momentum, weight_decay=0.0):
            d = g + p * weight_decay if weight_decay else g
            v = d if velocity is None else velocity * momentum + d
            p_new = p.copy()
            p_new -= lr * v
            return p_new, v
    """,
    "08_cuda_index_map": """
        def thread_element(block_idx, block_dim, thread_idx, shape):
            N, C, H, W = shape
            t = thread_idx + block_dim * block_idx
            if t >= N * C * H * W:
                return None
            t, w = divmod(t, W)
            t, h = divmod(t, H)
            n, c = divmod(t, C)
            return n, c, h, w

        def sgemm_elements(block_idx, thread_idx, M, N):
            (bx, by), (tx, ty) = block_idx, thread_idx
            rows = [64 * by + ty + 16 * i for i in range(4)]
            cols = [64 * bx + tx + 16 * j for j in range(4)]
            return [(r, c) for c in cols for r in rows if r < M and c < N]
    """,
    "09_weighted_loss": """
        import numpy as np

        def class_weights(labels, num_classes):
            counts = np.array([(labels == k).sum() for k in range(num_classes)], dtype=float)
            return counts.sum() / counts / num_classes

        def weighted_cross_entropy(logits, target, weight):
            z = logits - logits.max(axis=1)[:, None]
            nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(target)), target]
            return float(np.average(nll, weights=weight[target]))
    """,
    "10_sensitivity_specificity": """
        import numpy as np

        def sensitivity_specificity(y_true, y_pred):
            counts = np.zeros((2, 2))
            for t, p in zip(y_true, y_pred):
                counts[t, p] += 1
            return counts[1, 1] / counts[1].sum(), counts[0, 0] / counts[0].sum()

        def threshold_for_sensitivity(y_true, scores, target):
            positives = np.sort(scores[y_true == 1])[::-1]
            needed = int(np.ceil(target * len(positives) - 1e-9))
            return float(positives[max(needed, 1) - 1])
    """,
}


def test_every_exercise_has_an_alternative():
    assert sorted(ALTERNATIVES) == sorted(grade.EXERCISES)


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
@pytest.mark.parametrize("seed", [0, 3])
def test_correct_answers_written_differently_pass(capsys, tmp_path, name, seed):
    folder = tmp_path / "exercises"
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(ALTERNATIVES[name]).lstrip())
    code, line = grade_folder(capsys, folder, name, seed)
    assert line.startswith("PASS") and code == 0, line
