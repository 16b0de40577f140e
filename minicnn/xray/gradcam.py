"""Grad-CAM (Selvaraju et al. 2017): which parts of an X-ray drove the network's score.

For a class c with score y_c (its logit) and the last convolutional layer's
activations A (K maps of h x w, taken after its ReLU):

    alpha_k = mean over (i, j) of  d y_c / d A_k[i, j]      how much map k matters for c
    cam     = ReLU( sum_k alpha_k * A_k )                   (h, w), then enlarged to H x W

The gradient with respect to A is found with the engine's own autograd: run the
network up to that layer without a graph, wrap A as a new leaf Tensor with
requires_grad=True, run the rest of the network from it, and call backward on y_c.
"""
import numpy as np
from PIL import Image

from minicnn.autograd import no_grad
from minicnn.nn import Conv2d, ReLU
from minicnn.tensor import Tensor


def split_at_last_conv(model):
    """(head, tail): model.features cut after its last Conv2d (and the ReLU after it),
    so that forward(x) = classifier(tail(head(x)))."""
    layers = list(model.features)
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, Conv2d)]
    if not convs:
        raise ValueError(f"grad_cam: {type(model).__name__}.features has no Conv2d layer")
    cut = convs[-1] + 1
    if cut < len(layers) and isinstance(layers[cut], ReLU):
        cut += 1
    return model.features[:cut], model.features[cut:]


def grad_cam(model, images, target_class, device="cpu", multilabel=False):
    """Grad-CAM maps of `target_class` for normalised images (N, C, H, W) float32.

    target_class: one class for all images, or (N,) one per image (multi-label data:
    each image's own finding).
    -> (cams (N, H, W) float32, each scaled to [0, 1] by its own maximum,
        probs (N, K) float64: softmax outputs, or each output's sigmoid if multilabel)
    """
    model.eval()
    head, tail = split_at_last_conv(model)
    x = Tensor(np.ascontiguousarray(images, dtype=np.float32), device=device)
    with no_grad():
        activations = head(x)
    A = Tensor(activations.numpy(), requires_grad=True, device=device)
    logits = model.classifier(tail(A))
    onehot = np.zeros(logits.shape, np.float32)
    onehot[np.arange(len(onehot)), np.broadcast_to(np.asarray(target_class), len(onehot))] = 1.0
    (logits * Tensor(onehot, device=device)).sum().backward()
    model.zero_grad()  # the backward also reached the classifier's weights: forget that
    a, g = A.numpy().astype(np.float64), A.grad.numpy().astype(np.float64)
    alpha = g.mean(axis=(2, 3), keepdims=True)
    cams = np.maximum((alpha * a).sum(axis=1), 0.0)
    H, W = images.shape[2:]
    out = np.zeros((len(images), H, W), np.float32)
    for k, cam in enumerate(cams):
        big = np.asarray(Image.fromarray(cam.astype(np.float32)).resize(
            (W, H), Image.Resampling.BILINEAR), dtype=np.float32)
        top = big.max()
        out[k] = big / top if top > 0 else big
    z = logits.numpy().astype(np.float64)
    if multilabel:
        return out, 1.0 / (1.0 + np.exp(-z))
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return out, z / z.sum(axis=1, keepdims=True)
