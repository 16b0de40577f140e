"""The figures `minicnn train` and `minicnn evaluate` write, from a model and its scores."""
import os

import numpy as np

from minicnn.autograd import no_grad
from minicnn.nn import Conv2d
from minicnn.tensor import Tensor
from minicnn.xray import metrics as M
from minicnn.xray import viz
from minicnn.xray.gradcam import grad_cam
from minicnn.xray.train import normalise

SYNTHETIC_NOTE = "SYNTHETIC data"


def note_for(data_info):
    return SYNTHETIC_NOTE if data_info.get("synthetic") else ""


def pick(labels, positive, per_class, seed=0):
    """Indices of up to per_class examples of each class (in data order), interleaved."""
    groups = [np.flatnonzero(labels == k)[:per_class] for k in np.unique(labels)]
    out = []
    for i in range(per_class):
        out += [int(g[i]) for g in groups if i < len(g)]
    return np.array(out, dtype=np.int64)


def evaluation_figures(folder, split, dataset, probs, positive, threshold, note, prefix=""):
    """Confusion matrix, ROC curve with the operating point, and a grid of predictions."""
    paths = []
    labels = dataset.labels
    classes = list(dataset.classes)
    if probs.shape[1] == 2:
        y = (labels == positive).astype(np.int64)
        p = probs[:, positive]
        pred = np.where(p >= threshold, positive, 1 - positive)
        m = M.binary_metrics(y, p, threshold)
        if np.isfinite(m["auc"]):
            fpr, tpr, _ = M.roc_curve(y, p)
            point = (1 - m["specificity"], m["sensitivity"], threshold)
            paths.append(viz.roc_curve(fpr, tpr, m["auc"], os.path.join(folder, f"{prefix}roc.png"),
                                       point, title=f"ROC curve, {split}", note=note))
    else:
        pred = probs.argmax(axis=1)
        p = probs.max(axis=1)
    cm = M.confusion_matrix(labels, pred, len(classes))
    paths.append(viz.confusion_matrix(cm, classes, os.path.join(folder, f"{prefix}confusion_matrix.png"),
                                      title=f"Confusion matrix, {split}", note=note))
    if probs.shape[1] == 2:
        idx = pick(labels, positive, 8)
        paths.append(viz.prediction_grid(dataset.images[idx], labels[idx], p[idx], classes,
                                         positive, threshold,
                                         os.path.join(folder, f"{prefix}predictions.png"),
                                         title=f"{split.capitalize()} X-rays", note=note))
    return paths


def multilabel_figures(folder, split, dataset, probs, metrics, note, model=None, mean=None,
                       std=None, device="cpu", prefix=""):
    """A grid of per-finding ROC curves (each with its operating point) and, given the
    model, Grad-CAM maps of the most confident findings: the 8 (image, finding) pairs of
    highest probability among findings truly present, one pair per image."""
    labels = np.asarray(dataset.labels)
    classes = list(dataset.classes)
    curves = []
    for k, name in enumerate(classes):
        y = (labels[:, k] > 0.5).astype(np.int64)
        r = metrics["per_label"][name]
        if r["auc"] is None or not np.isfinite(r["auc"]):
            continue
        fpr, tpr, _ = M.roc_curve(y, probs[:, k])
        curves.append((name, fpr, tpr, r["auc"], (1 - r["specificity"], r["sensitivity"])))
    paths = []
    if curves:
        paths.append(viz.roc_grid(curves, os.path.join(folder, f"{prefix}roc_per_finding.png"),
                                  title=f"ROC per finding, {split}", note=note))
    if model is None:
        return paths
    present = np.where(labels > 0.5, probs, -1.0)
    best = present.argmax(axis=1)
    confidence = present.max(axis=1)
    chosen = [int(i) for i in np.argsort(-confidence, kind="stable")[:8] if confidence[i] >= 0]
    if chosen:
        first = next(p for name, p in model.named_parameters() if name.endswith("weight"))
        paths.append(viz.filters(first.numpy(), os.path.join(folder, "filters.png"), note=note))
        images = np.asarray(dataset.images[np.array(chosen)])
        cams, p = grad_cam(model, normalise(images, mean, std), best[chosen], device=device,
                           multilabel=True)
        names = [classes[best[i]] for i in chosen]
        scores = [p[j, best[i]] for j, i in enumerate(chosen)]
        paths.append(viz.finding_gradcam_grid(images, cams, names, scores,
                                              os.path.join(folder, "gradcam.png"), note=note))
    return paths


def model_figures(folder, model, dataset, mean, std, positive, device, note):
    """The first layer's filters and Grad-CAM maps on a few images of each class."""
    paths = []
    first = next(p for name, p in model.named_parameters() if name.endswith("weight"))
    paths.append(viz.filters(first.numpy(), os.path.join(folder, "filters.png"), note=note))
    idx = pick(dataset.labels, positive, 4)
    images = dataset.images[idx]
    paths.append(viz.feature_maps(images[-1], _first_maps(model, normalise(images[-1:], mean, std),
                                                        device),
                                  os.path.join(folder, "feature_maps.png"), note=note))
    cams, probs = grad_cam(model, normalise(images, mean, std), positive, device=device)
    paths.append(viz.gradcam_grid(images, cams, dataset.labels[idx], probs[:, positive],
                                  list(dataset.classes), positive,
                                  os.path.join(folder, "gradcam.png"),
                                  title=f"Grad-CAM for {dataset.classes[positive]}", note=note))
    return paths


def _first_maps(model, image, device):
    """The activations after the first conv layer and its ReLU: (F, H, W)."""
    layers = list(model.features)
    first = next(i for i, layer in enumerate(layers) if isinstance(layer, Conv2d))
    with no_grad():
        return model.features[:first + 2](Tensor(image, device=device)).numpy()[0]
