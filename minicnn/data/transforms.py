"""Image transforms: resizing, augmentation, conversion and normalisation (numpy + Pillow).

Every transform is a callable `t(image, rng) -> image`, where `rng` is a numpy
Generator: the random ones (flip, affine) draw from it and nothing else, so the
same Generator state gives the same augmented image. The fixed ones ignore it.

Images are float32 arrays (C, H, W) after ToTensor; every other transform takes and
returns that. Geometry goes through Pillow one channel at a time (mode "F", 32-bit
float), whose resize filters are anti-aliased when shrinking.

    train = Compose([RandomAffine(10, 0.06, (0.92, 1.08)), RandomHorizontalFlip(),
                     Normalize(mean, std)])
"""
import math

import numpy as np
from PIL import Image

from .. import validate
from ..errors import UserError


def _per_channel(image, fn):
    """Apply fn (a Pillow "F" image -> Pillow "F" image) to each plane of (C, H, W)."""
    planes = [np.asarray(fn(Image.fromarray(np.ascontiguousarray(p, dtype=np.float32))),
                         dtype=np.float32) for p in image]
    return np.stack(planes)


def _check_chw(image, name):
    if not (isinstance(image, np.ndarray) and image.ndim == 3):
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name}: expected a (C, H, W) array, got {got}")


class Compose:
    """Apply transforms in order, passing each the same Generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, rng=None):
        for t in self.transforms:
            image = t(image, rng)
        return image

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class ToTensor:
    """(H, W) or (H, W, C) of any dtype, or (C, H, W) float -> float32 (channels, H, W) in [0, 1].

    Integers are divided by their type's maximum (uint8 by 255, uint16 by 65535);
    floats are kept. Gray becomes colour by repetition, colour gray by luma. (The
    DataLoader stacks these arrays into a minicnn Tensor.)
    """

    def __init__(self, channels=1):
        self.channels = channels

    def __call__(self, image, rng=None):
        from .images import to_channels
        a = np.asarray(image)
        if np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
        else:
            a = a.astype(np.float32, copy=False)
        if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3, 4):
            a = a.transpose(1, 2, 0)  # was (C, H, W)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3):
            raise ValueError(f"ToTensor: expected (H, W) or (H, W, C), got shape {a.shape}")
        return to_channels(a, self.channels)

    def __repr__(self):
        return f"ToTensor(channels={self.channels})"


class CenterSquare:
    """Crop the largest centred square (the short side): how MedMNIST made its images,
    so a full-size radiograph is framed as the 28x28 training images were."""

    def __call__(self, image, rng=None):
        _check_chw(image, "CenterSquare")
        _, h, w = image.shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return np.ascontiguousarray(image[:, top:top + s, left:left + s])

    def __repr__(self):
        return "CenterSquare()"


class Resize:
    """Resize (C, H, W) to (C, size, size) (or (C, h, w) for size=(h, w)), bilinear.

    min_size: refuse (UserError naming `source`) an image whose short side is smaller,
    rather than invent detail by enlarging it a lot.
    """

    def __init__(self, size, min_size=None):
        sizes = (size, size) if validate.is_int(size) else tuple(size) \
            if isinstance(size, (tuple, list)) else (size,)
        if len(sizes) != 2:
            raise UserError(f"Resize: size must be an int or (height, width), got {size!r}")
        self.size = tuple(validate.integer("Resize: size", v, 1, 1 << 16) for v in sizes)
        self.min_size = min_size

    def __call__(self, image, rng=None, source="image"):
        self._check(image, source)
        _, h, w = image.shape
        if (h, w) == self.size:
            return image
        th, tw = self.size
        return _per_channel(image, lambda im: im.resize((tw, th), Image.Resampling.BILINEAR))

    def _check(self, image, source):
        _check_chw(image, "Resize")
        _, h, w = image.shape
        if self.min_size is not None and min(h, w) < self.min_size:
            raise UserError(f"{source}: {h}x{w} pixels is smaller than the {self.min_size}x"
                            f"{self.min_size} pixels needed; use a larger image (or train "
                            "with a smaller --image-size)")

    def __repr__(self):
        return f"Resize({self.size})"


class RandomHorizontalFlip:
    """Mirror left-right with probability p."""

    def __init__(self, p=0.5):
        self.p = validate.number("RandomHorizontalFlip: p", p, lo=0, hi=1)

    def __call__(self, image, rng):
        if rng.random() < self.p:
            return np.ascontiguousarray(image[:, :, ::-1])
        return image

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomAffine:
    """A small random rotation, shift and zoom about the image centre, bilinear.

    degrees: angle drawn from [-degrees, degrees]; translate: shift up to this
    fraction of the width/height; scale (lo, hi): zoom factor. Pixels brought in from
    outside the image repeat the nearest edge pixel (fill="edge", so no artificial
    black corners appear), or take a constant value (fill=0.0: black).
    Output pixel p comes from input pixel  c + A^-1 (p - c - t),  A = scale * rotation.
    """

    def __init__(self, degrees=10.0, translate=0.05, scale=(0.95, 1.05), fill="edge"):
        self.degrees = validate.number("RandomAffine: degrees", degrees, lo=0, hi=180)
        self.translate = validate.number("RandomAffine: translate", translate, lo=0, hi=1)
        if not (isinstance(scale, (tuple, list)) and len(scale) == 2):
            raise UserError(f"RandomAffine: scale must be (low, high), got {scale!r}")
        lo = validate.number("RandomAffine: scale[0]", scale[0], lo=0, lo_open=True)
        hi = validate.number("RandomAffine: scale[1]", scale[1], lo=lo)
        self.scale = (lo, hi)
        self.fill = fill if fill == "edge" else validate.number("RandomAffine: fill", fill)

    def __call__(self, image, rng):
        _check_chw(image, "RandomAffine")
        _, h, w = image.shape
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        tx = rng.uniform(-self.translate, self.translate) * w
        ty = rng.uniform(-self.translate, self.translate) * h
        s = rng.uniform(*self.scale)
        # edge fill: pad by repeating the border, transform the padded picture about the
        # same centre, crop the middle back out
        m = (max(h, w) + 1) // 2 if self.fill == "edge" else 0
        if m:
            image = np.pad(image, ((0, 0), (m, m), (m, m)), mode="edge")
        H, W = h + 2 * m, w + 2 * m
        cx, cy = W / 2.0, H / 2.0
        # inverse map, output (x, y) -> input: Pillow's AFFINE wants (a, b, c, d, e, f) with
        # x_in = a*x + b*y + c, y_in = d*x + e*y + f
        cos, sin = math.cos(angle) / s, math.sin(angle) / s
        a, b, d, e = cos, sin, -sin, cos
        ox, oy = cx + tx, cy + ty
        c = cx - a * ox - b * oy
        f = cy - d * ox - e * oy
        fill = 0.0 if self.fill == "edge" else self.fill
        out = _per_channel(image, lambda im: im.transform(
            (W, H), Image.Transform.AFFINE, (a, b, c, d, e, f),
            resample=Image.Resampling.BILINEAR, fillcolor=fill))
        return np.ascontiguousarray(out[:, m:m + h, m:m + w]) if m else out

    def __repr__(self):
        return (f"RandomAffine(degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale}, fill={self.fill!r})")


class Normalize:
    """(x - mean[c]) / std[c] for each channel c; mean, std: one number or one per channel."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        if (self.std <= 0).any():
            raise ValueError(f"Normalize: std must be positive, got {self.std.ravel().tolist()}")

    def __call__(self, image, rng=None):
        return ((image - self.mean) / self.std).astype(np.float32)

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def augmentation(strength="default"):
    """The training augmentation used by `minicnn train`: small affine + horizontal flip.

    X-rays differ in patient position and framing far more than in anything a flip
    changes for pneumonia, so these mimic real variation. strength "none" gives [].
    """
    if strength == "none":
        return []
    return [RandomAffine(degrees=10.0, translate=0.06, scale=(0.92, 1.08)),
            RandomHorizontalFlip(0.5)]
