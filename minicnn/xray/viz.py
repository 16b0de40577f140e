"""Figures, as PNG files: training curves, confusion matrix, ROC curve (a grid of them,
one per finding, for multi-label data), predictions on test X-rays, the first layer's
filters, and Grad-CAM heat maps.

matplotlib draws through its Agg canvas (Figure + FigureCanvasAgg, no pyplot), so
no window opens, no display is needed, and nothing global is changed for a caller
who uses pyplot themselves. Every function writes one file and returns its path.
`note` is added to every title: the trainer passes "SYNTHETIC data" when the images
came from the built-in generator, so a figure can never be mistaken for a result on
real X-rays.
"""
import os

import numpy as np


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, title, note):
    if title or note:
        fig.suptitle(" — ".join(t for t in (title, note) if t), fontsize=11,
                     color="darkred" if note else "black")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def training_curves(history, path, note=""):
    """Loss (train, val) and accuracy (train, val) plus val AUC, per epoch."""
    fig = _figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    ep = [r["epoch"] for r in history]
    ax1.plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    ax1.plot(ep, [r["val_loss"] for r in history], "s-", label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [r["train_acc"] for r in history], "o-", label="train accuracy")
    ax2.plot(ep, [r["val_acc"] for r in history], "s-", label="val accuracy")
    ax2.plot(ep, [np.nan if r["val_auc"] is None else r["val_auc"] for r in history], "^-",
             label="val ROC-AUC")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1.02)
    from matplotlib.ticker import MaxNLocator
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(loc="lower right")
    ax2.grid(alpha=0.3)
    return _save(fig, path, "Training curves", note)


def confusion_matrix(cm, classes, path, title="Confusion matrix", note=""):
    """cm (K, K): rows true class, columns predicted; counts and row percentages."""
    cm = np.asarray(cm)
    fig = _figure(4.8, 4.2)
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    rows = cm.sum(axis=1, keepdims=True)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            share = cm[i, j] / rows[i, 0] if rows[i, 0] else 0.0
            ax.text(j, i, f"{cm[i, j]}\n({share:.0%})", ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(fig, path, title, note)


def roc_curve(fpr, tpr, auc, path, operating_point=None, title="ROC curve", note=""):
    """The ROC curve with its AUC; operating_point (fpr, tpr, threshold) marked."""
    fig = _figure(4.8, 4.5)
    ax = fig.subplots()
    ax.plot(fpr, tpr, "-", lw=2, label=f"ROC (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    if operating_point is not None:
        x, y, t = operating_point
        ax.plot([x], [y], "o", color="red", ms=8,
                label=f"threshold {t:.2f}: sens {y:.2f}, spec {1 - x:.2f}")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path, title, note)


def roc_grid(curves, path, title="ROC curve per finding", note=""):
    """One small ROC panel per finding; curves: [(name, fpr, tpr, auc, (fpr, tpr) at the
    finding's threshold or None)]."""
    n = len(curves)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(2.6 * cols, 2.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, fpr, tpr, auc, point) in zip(axes, curves):
        ax.plot(fpr, tpr, "-", lw=1.5)
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
        if point is not None:
            ax.plot([point[0]], [point[1]], "o", color="red", ms=4)
        ax.set_title(f"{name[:18]}  AUC {auc:.3f}", fontsize=8)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.axis("off")
    fig.supxlabel("1 - specificity", fontsize=8)
    fig.supylabel("sensitivity", fontsize=8)
    return _save(fig, path, title, note)


def finding_gradcam_grid(images, cams, findings, scores, path,
                         title="Grad-CAM for the most confident findings", note=""):
    """Pairs of (X-ray, its Grad-CAM map for one finding); images (N, C, H, W) in [0, 1],
    cams (N, H, W) in [0, 1], findings (N,) names, scores (N,) P(finding)."""
    return _cam_pairs(images, cams, path, title, note, ["X-ray"] * len(images),
                      [f"P({f[:12]})={p:.2f}" for f, p in zip(findings, scores)])


def _show(ax, image):
    """image (C, H, W) in [0, 1] -> gray or colour picture, no axes."""
    image = np.asarray(image)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def prediction_grid(images, labels, scores, classes, positive, threshold, path, n=16,
                    title="Test X-rays: predictions", note=""):
    """A grid of images (N, C, H, W) in [0, 1], each titled with the truth and
    P(positive); green when the prediction at `threshold` is right, red when wrong."""
    n = min(n, len(images))
    cols = min(8, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(1.6 * cols, 1.9 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    negative = 1 - positive if len(classes) == 2 else None
    for k, ax in enumerate(axes):
        if k >= n:
            ax.axis("off")
            continue
        _show(ax, images[k])
        predicted = positive if scores[k] >= threshold else negative
        right = predicted == labels[k]
        ax.set_title(f"{classes[labels[k]][:9]}\nP={scores[k]:.2f}", fontsize=8,
                     color="green" if right else "red")
    return _save(fig, path, f"{title} (P = P({classes[positive]}), threshold {threshold:.2f})", note)


def filters(weight, path, title="First-layer filters", note=""):
    """weight (F, C, KH, KW): each filter as a small picture (channels averaged)."""
    w = np.asarray(weight, np.float64).mean(axis=1)
    count = w.shape[0]
    cols = min(8, count)
    rows = int(np.ceil(count / cols))
    fig = _figure(1.2 * cols, 1.2 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for k, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < count:
            lim = np.abs(w[k]).max() or 1.0
            ax.imshow(w[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax.axis("off")
    return _save(fig, path, title, note)


def gradcam_grid(images, cams, labels, scores, classes, positive, path,
                 title="Grad-CAM: where the network looked", note=""):
    """Pairs of (X-ray, X-ray with its Grad-CAM heat map); images (N, C, H, W) in [0, 1],
    cams (N, H, W) in [0, 1]."""
    return _cam_pairs(images, cams, path, title, note,
                      [f"{classes[y][:9]}" for y in labels],
                      [f"P({classes[positive][:9]})={p:.2f}" for p in scores])


def _cam_pairs(images, cams, path, title, note, left_titles, right_titles):
    """The grid both Grad-CAM figures draw: per image, the X-ray and the X-ray under
    its heat map, four pairs a row, each panel with its title."""
    n = len(images)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(3.2 * cols, 1.8 * rows)
    axes = np.atleast_2d(fig.subplots(rows, 2 * cols)).reshape(rows, 2 * cols)
    for k in range(rows * cols):
        a, b = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        if k >= n:
            a.axis("off")
            b.axis("off")
            continue
        _show(a, images[k])
        _show(b, images[k])
        b.imshow(cams[k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        a.set_title(left_titles[k], fontsize=8)
        b.set_title(right_titles[k], fontsize=8)
    return _save(fig, path, title, note)


def feature_maps(image, maps, path, title="First-layer feature maps", note=""):
    """image (C, H, W) in [0, 1] and maps (F, h, w): what each first-layer filter
    responds to in one X-ray (after its ReLU: bright = strong response)."""
    count = maps.shape[0] + 1
    cols = min(9, count)
    rows = int(np.ceil(count / cols))
    fig = _figure(1.3 * cols, 1.4 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    _show(axes[0], image)
    axes[0].set_title("input", fontsize=8)
    for k, ax in enumerate(axes[1:]):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < maps.shape[0]:
            ax.imshow(maps[k], cmap="magma")
            ax.set_title(f"{k}", fontsize=7)
        else:
            ax.axis("off")
    return _save(fig, path, title, note)
