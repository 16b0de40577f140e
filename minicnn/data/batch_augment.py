"""Augmentation of a whole batch at once: one numba kernel warps every image.

    loader = DataLoader(train_set, batch_size=64, shuffle=True, seed=0,
                        batch_transform=BatchCompose(augmentation_batch("default")
                                                     + [BatchNormalize(mean, std)]))

A batch transform is a callable `t(images, rng) -> images`, images (N, C, H, W) float32,
rng the numpy Generator of that batch (the DataLoader's, seeded with (seed, epoch,
batch)), so the same seed gives the same augmented batches and a resumed run the same
ones as an uninterrupted run. It replaces the per-image RandomAffine +
RandomHorizontalFlip of transforms.augmentation, which cost Python and Pillow calls
per image and per channel.

The geometry is RandomAffine's (transforms.py), pixel for pixel: output pixel p comes
from input point  c + A^-1 (p - c - t),  A = scale * rotation, c the image centre
(w / 2, h / 2 with pixel centres at i + 0.5), a positive angle turning the picture
clockwise, t the shift right and down; bilinear as Pillow's (weights from the
distance to the four nearest pixel centres, computed in float64), then the flip
left-right. fill "edge" repeats the border pixel however far out the point lies (the
per-image path pads by half the image and brings in zeros beyond: only a zoom out
below 0.5, or below about 0.7 with a 45-degree turn, reaches that far); a number is
the value of points outside [0, w) x [0, h), as there.

The draws from rng, in order, each an array of N values and each only when asked
for: angle, shift x, shift y, zoom, flip. They are not the per-image path's draws
(that one draws image by image), so the same seed gives other, equally random images.

Order in a pipeline: augment, then normalise (BatchNormalize, the batch form of
transforms.Normalize), so the edge fill and interpolation see the stored pixel values.
"""
import math

import numpy as np
from numba import njit, prange

from ..kernels import cpu as _threads_sleep_when_idle  # noqa: F401  (before numba's pool starts)
from .. import random as engine_random
from .. import validate
from ..errors import UserError
from ..tensor import Tensor
from .transforms import _affine_fill, _affine_ranges


@njit(cache=True, parallel=True)
def warp_batch(src, dst, coeffs, flip, edge, fill):
    """Affine warp + flip of each image: one prange task per image, each output pixel
    written once.

    src, dst (N, C, H, W) float32; coeffs (N, 6) float64, Pillow's AFFINE coefficients
    about the image's own centre: x_in = a*u + b*v + c, y_in = d*u + e*v + f at the
    output point (u, v) = (x + 0.5, y + 0.5); flip (N,) uint8, 1 = mirror the result
    left-right; edge: clamp to the border (else points outside the image get fill).
    """
    n, ch, h, w = src.shape
    for i in prange(n):
        a, b, c = coeffs[i, 0], coeffs[i, 1], coeffs[i, 2]
        d, e, f = coeffs[i, 3], coeffs[i, 4], coeffs[i, 5]
        for y in range(h):
            v = y + 0.5
            for x in range(w):
                u = (w - 1 - x if flip[i] else x) + 0.5
                xin = a * u + b * v + c
                yin = d * u + e * v + f
                if not edge and (xin < 0.0 or xin >= w or yin < 0.0 or yin >= h):
                    for k in range(ch):
                        dst[i, k, y, x] = fill
                    continue
                fx, fy = xin - 0.5, yin - 0.5      # to pixel-centre units
                x0, y0 = math.floor(fx), math.floor(fy)
                dx, dy = fx - x0, fy - y0
                xa, xb = min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1)
                ya, yb = min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1)
                for k in range(ch):
                    p, q = np.float64(src[i, k, ya, xa]), np.float64(src[i, k, ya, xb])
                    top = p + (q - p) * dx
                    p, q = np.float64(src[i, k, yb, xa]), np.float64(src[i, k, yb, xb])
                    bottom = p + (q - p) * dx
                    dst[i, k, y, x] = np.float32(top + (bottom - top) * dy)


def inverse_affine(angle, tx, ty, s, w, h):
    """(N, 6) float64: transforms._inverse_affine for N images of w x h about (w/2, h/2)."""
    rad = np.radians(np.asarray(angle, np.float64))
    s = np.asarray(s, np.float64)
    cos, sin = np.cos(rad) / s, np.sin(rad) / s
    cx, cy = w / 2.0, h / 2.0
    ox, oy = cx + np.asarray(tx, np.float64), cy + np.asarray(ty, np.float64)
    return np.stack([cos, sin, cx - cos * ox - sin * oy,
                     -sin, cos, cy + sin * ox - cos * oy], axis=1)


def _batch_in(images, name):
    """(float32 (N, C, H, W) array, how to give the result back)."""
    if isinstance(images, Tensor):
        device = images.device
        return (np.ascontiguousarray(images.numpy(), dtype=np.float32),
                lambda a: Tensor(a, device=device, dtype=np.float32))
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        got = getattr(images, "shape", type(images).__name__)
        raise ValueError(f"{name}: expected a batch of images (N, C, H, W) as an array or "
                         f"Tensor, got {got}")
    if images.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected real-valued images, got dtype {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32), lambda a: a


class BatchRandomAffine:
    """RandomAffine + RandomHorizontalFlip for a batch: each image its own rotation,
    shift, zoom and flip, drawn from rng, warped by one numba kernel.

    degrees, translate, scale: as RandomAffine's (degrees d: an angle in [-d, d], or a
    (low, high) range; translate t: a shift up to t of each side, or (a, b): whole
    pixels up to a * width, b * height; scale (low, high): the zoom); flip_p: the
    chance of mirroring left-right; interpolation: "bilinear" only; fill: "edge" or a
    number. t(images (N, C, H, W), rng) -> (N, C, H, W) float32, a new array.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, flip_p=0.0,
                 interpolation="bilinear", fill="edge"):
        name = "BatchRandomAffine"
        self.degrees, self.translate, self.scale = _affine_ranges(name, degrees, translate, scale)
        self.flip_p = validate.number(f"{name}: flip_p", flip_p, lo=0, hi=1,
                                      what="a probability from 0 to 1")
        key = str(getattr(interpolation, "value", interpolation)).lower()
        if key != "bilinear":
            raise UserError(f"{name}: interpolation must be \"bilinear\", got "
                            f"{interpolation!r} (the per-image RandomAffine has the others)")
        self.interpolation = key
        self.fill = _affine_fill(name, fill)

    def draw(self, rng, n, w, h):
        """(angle, shift x, shift y, zoom, flip) for n pictures of w x h: (n,) float64
        arrays (flip (n,) uint8, 1 = mirror), in RandomAffine.draw's units."""
        angle = rng.uniform(*self.degrees, size=n)
        tx = ty = np.zeros(n)
        if isinstance(self.translate, tuple):       # torchvision: whole pixels
            a, b = self.translate
            tx = np.round(rng.uniform(-a * w, a * w, size=n))
            ty = np.round(rng.uniform(-b * h, b * h, size=n))
        elif self.translate is not None:
            t = self.translate
            tx = rng.uniform(-t, t, size=n) * w
            ty = rng.uniform(-t, t, size=n) * h
        s = rng.uniform(*self.scale, size=n) if self.scale is not None else np.ones(n)
        flip = (rng.random(n) < self.flip_p) if self.flip_p > 0 else np.zeros(n, bool)
        return angle, tx, ty, s, flip.astype(np.uint8)

    def apply(self, images, angle, tx, ty, s, flip):
        """images (N, C, H, W) warped with the given (N,) parameters (draw()'s)."""
        images, back = _batch_in(images, "BatchRandomAffine")
        return back(self._warp(images, angle, tx, ty, s, flip))

    def __call__(self, images, rng=None):
        rng = engine_random.generator() if rng is None else rng
        images, back = _batch_in(images, "BatchRandomAffine")
        n, _, h, w = images.shape
        return back(self._warp(images, *self.draw(rng, n, w, h)))

    def _warp(self, images, angle, tx, ty, s, flip):
        n, _, h, w = images.shape
        params = [np.asarray(p, np.float64).reshape(-1) for p in (angle, tx, ty, s)]
        flip = np.asarray(flip).reshape(-1).astype(np.uint8)
        if any(p.shape != (n,) for p in params + [flip]):
            raise ValueError(f"BatchRandomAffine: one angle, shift, zoom and flip per image "
                             f"needed ({n}), got {[p.size for p in params + [flip]]}")
        if not (params[3] > 0).all():
            raise ValueError(f"BatchRandomAffine: zoom must be positive, got {params[3]}")
        out = np.empty_like(images)
        if n:
            fill = 0.0 if self.fill == "edge" else float(self.fill)
            warp_batch(images, out, inverse_affine(*params, w, h), flip,
                       self.fill == "edge", np.float32(fill))
        return out

    def __repr__(self):
        return (f"BatchRandomAffine(degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale}, flip_p={self.flip_p}, "
                f"interpolation={self.interpolation!r}, fill={self.fill!r})")


class BatchNormalize:
    """(x - mean[c]) / std[c] for each channel c of a batch (N, C, H, W), as
    transforms.Normalize does image by image; mean, std: one number or one per channel."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise UserError(f"BatchNormalize: mean and std must be finite, got mean "
                            f"{self.mean.ravel().tolist()}, std {self.std.ravel().tolist()}")
        if (self.std <= 0).any():
            raise UserError(f"BatchNormalize: std must be positive, got "
                            f"{self.std.ravel().tolist()}")

    def __call__(self, images, rng=None):
        images, back = _batch_in(images, "BatchNormalize")
        c = images.shape[1]
        if self.mean.shape[1] not in (1, c) or self.std.shape[1] not in (1, c):
            raise ValueError(f"BatchNormalize: {self.mean.shape[1]} means and "
                             f"{self.std.shape[1]} stds for images of {c} channel(s)")
        return back(((images - self.mean) / self.std).astype(np.float32))

    def __repr__(self):
        return (f"BatchNormalize(mean={self.mean.ravel().tolist()}, "
                f"std={self.std.ravel().tolist()})")


class BatchCompose:
    """Apply batch transforms in order, passing each the same Generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise UserError(f"BatchCompose: every step must be a callable "
                                f"t(images, rng), got {t!r}")

    def __call__(self, images, rng=None):
        for t in self.transforms:
            images = t(images, rng)
        return images

    def __repr__(self):
        return "BatchCompose(" + ", ".join(repr(t) for t in self.transforms) + ")"


def augmentation_batch(strength="default"):
    """transforms.augmentation's steps as batch transforms: the same small affine and
    horizontal flip ([] for strength "none"), for DataLoader(batch_transform=...)."""
    validate.choice("augmentation_batch: strength", strength, ("default", "none"))
    if strength == "none":
        return []
    return [BatchRandomAffine(degrees=10.0, translate=0.06, scale=(0.92, 1.08), flip_p=0.5,
                              interpolation="bilinear", fill="edge")]
