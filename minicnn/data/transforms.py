"""Image transforms: resizing, augmentation, conversion and normalisation (numpy + Pillow).

Every transform is a callable `t(image)` or `t(image, rng)`: the random ones (flip,
rotation, affine) draw from `rng`, a numpy Generator, or without one from minicnn's
seeded generator (minicnn.manual_seed; the DataLoader makes it a per-batch one), so
the same seed gives the same augmented images.

They take what torchvision's take, with the same meaning:
  - before ToTensor, a Pillow image (the geometric ones return a Pillow image);
  - ToTensor: a Pillow image or an (H, W[, C]) array -> a Tensor (C, H, W), float32 in [0, 1];
  - after it, a (C, H, W) Tensor or float32 array (returned as the same kind).
The trainer's own pipeline works on (C, H, W) float32 arrays throughout. Geometry on
arrays goes through Pillow one channel at a time (mode "F", 32-bit float), whose resize
filters are anti-aliased when shrinking.

    train = Compose([Resize(256), CenterCrop(224), RandomHorizontalFlip(), ToTensor(),
                     Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
"""
import math

import numpy as np
from PIL import Image

from .. import random as engine_random
from .. import validate
from ..errors import UserError
from ..tensor import Tensor
from .images import pillow_to_array, to_channels


def _rng(rng):
    return engine_random.generator() if rng is None else rng


def _is_pil(image):
    return isinstance(image, Image.Image)


def _array_in(image, name):
    """(float32 (C, H, W) array, how to give the result back) for an array or a Tensor."""
    if isinstance(image, Tensor):
        device = image.device
        return (np.asarray(image.numpy(), dtype=np.float32),
                lambda a: Tensor(a, device=device, dtype=np.float32))
    if type(image).__module__.startswith("torch"):
        raise TypeError(f"{name}: got a torch.Tensor; minicnn's transforms take Pillow images, "
                        "numpy arrays or minicnn Tensors (minicnn.tensor(t.numpy()))")
    _check_chw(image, name)
    return image, lambda a: a


def _per_channel(image, fn):
    """Apply fn (a Pillow "F" image -> Pillow "F" image) to each plane of (C, H, W)."""
    planes = [np.asarray(fn(Image.fromarray(np.ascontiguousarray(p, dtype=np.float32))),
                         dtype=np.float32) for p in image]
    return np.stack(planes)


def _check_chw(image, name):
    if _is_pil(image):
        raise TypeError(f"{name}: got a Pillow image, but it works on tensors: put ToTensor() "
                        f"before {name} in the Compose")
    if not (isinstance(image, np.ndarray) and image.ndim == 3):
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name}: expected a (C, H, W) array or Tensor, got {got}")


class Compose:
    """Apply transforms in order, passing each the same Generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, rng=None):
        for t in self.transforms:
            image = t(image, rng) if rng is not None else t(image)
        return image

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class ToTensor:
    """A Pillow image, or (H, W) / (H, W, C) of any dtype -> a Tensor (channels, H, W),
    float32 in [0, 1], as torchvision's ToTensor.

    Integers are divided by their type's maximum (uint8 by 255, uint16 by 65535);
    floats are kept. channels=None keeps the image's own (gray 1, colour 3); 1 or 3
    converts: gray becomes colour by repetition, colour gray by luma.
    """

    def __init__(self, channels=None):
        if channels not in (None, 1, 3):
            raise UserError(f"ToTensor: channels must be None, 1 or 3, got {channels!r}")
        self.channels = channels

    def __call__(self, image, rng=None):
        if isinstance(image, Tensor):
            raise TypeError("ToTensor: got a Tensor, which is already one; ToTensor turns a "
                            "Pillow image or an array into a Tensor (remove the second ToTensor)")
        if _is_pil(image):
            if image.mode in ("I;16", "I", "F", "L", "1", "P", "LA", "RGB", "RGBA", "CMYK"):
                plane = pillow_to_array(image)          # already in [0, 1]
                channels = self.channels or (3 if plane.ndim == 3 else 1)
                return Tensor(to_channels(plane, channels), dtype=np.float32)
            image = np.asarray(image.convert("RGB"))
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
        channels = self.channels or (3 if a.ndim == 3 else 1)
        return Tensor(to_channels(a, channels), dtype=np.float32)

    def __repr__(self):
        return f"ToTensor(channels={self.channels})"


class CenterSquare:
    """Crop the largest centred square (the short side): how MedMNIST made its images,
    so a full-size radiograph is framed as the 28x28 training images were."""

    def __call__(self, image, rng=None):
        if _is_pil(image):
            s = min(image.size)
            return CenterCrop(s)(image)
        image, back = _array_in(image, "CenterSquare")
        _, h, w = image.shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return back(np.ascontiguousarray(image[:, top:top + s, left:left + s]))

    def __repr__(self):
        return "CenterSquare()"


class Resize:
    """Resize, bilinear, as torchvision's: size=(h, w) gives exactly that; an int makes the
    shorter side that long and keeps the aspect ratio (the longer side rounded down).

    min_size: refuse (UserError naming `source`) an image whose short side is smaller,
    rather than invent detail by enlarging it a lot.
    """

    def __init__(self, size, min_size=None):
        if validate.is_int(size):
            self.size = validate.integer("Resize: size", size, 1, 1 << 16)
        elif isinstance(size, (tuple, list)) and len(size) in (1, 2):
            sizes = tuple(size) * (3 - len(size))
            self.size = tuple(validate.integer("Resize: size", v, 1, 1 << 16) for v in sizes)
        else:
            raise UserError(f"Resize: size must be an int or (height, width), got {size!r}")
        self.min_size = min_size

    def target(self, h, w):
        """(height, width) an h x w image is resized to."""
        if isinstance(self.size, tuple):
            return self.size
        short, long_ = min(h, w), max(h, w)
        other = int(self.size * long_ / short)
        return (self.size, other) if h <= w else (other, self.size)

    def __call__(self, image, rng=None, source="image"):
        if _is_pil(image):
            th, tw = self.target(image.size[1], image.size[0])
            return image if (th, tw) == (image.size[1], image.size[0]) else \
                image.resize((tw, th), Image.Resampling.BILINEAR)
        image, back = _array_in(image, "Resize")
        self._check(image, source)
        _, h, w = image.shape
        th, tw = self.target(h, w)
        if (h, w) == (th, tw):
            return back(image)
        return back(_per_channel(image, lambda im: im.resize((tw, th),
                                                             Image.Resampling.BILINEAR)))

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

    def __call__(self, image, rng=None):
        if _rng(rng).random() >= self.p:
            return image
        if _is_pil(image):
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image, back = _array_in(image, "RandomHorizontalFlip")
        return back(np.ascontiguousarray(image[:, :, ::-1]))

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class InterpolationMode:
    """torchvision's names for the resampling filters."""
    NEAREST, BILINEAR, BICUBIC = "nearest", "bilinear", "bicubic"


_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}


def _filter(interpolation, name):
    key = str(getattr(interpolation, "value", interpolation)).lower()
    if key not in _FILTERS:
        raise UserError(f"{name}: interpolation must be one of {', '.join(_FILTERS)}, "
                        f"got {interpolation!r}")
    return _FILTERS[key]


def _degrees(degrees, name):
    """degrees d -> (-d, d); a pair (lo, hi) as given (torchvision's rule)."""
    if isinstance(degrees, (tuple, list)):
        if len(degrees) != 2:
            raise UserError(f"{name}: degrees must be a number or (low, high), got {degrees!r}")
        lo = validate.number(f"{name}: degrees[0]", degrees[0], lo=-360, hi=360)
        return lo, validate.number(f"{name}: degrees[1]", degrees[1], lo=lo, hi=360)
    d = validate.number(f"{name}: degrees", degrees, lo=0, hi=180)
    return -d, d


def _affine_ranges(name, degrees, translate, scale):
    """RandomAffine's (degrees (lo, hi), translate, scale) checked; errors begin with name."""
    degrees = _degrees(degrees, name)
    if translate is None or isinstance(translate, (tuple, list)):
        if translate is not None and len(translate) != 2:
            raise UserError(f"{name}: translate must be (a, b) fractions, got {translate!r}")
        translate = None if translate is None else tuple(
            validate.number(f"{name}: translate", t, lo=0, hi=1) for t in translate)
    else:
        translate = validate.number(f"{name}: translate", translate, lo=0, hi=1)
    if scale is not None:
        if not (isinstance(scale, (tuple, list)) and len(scale) == 2):
            raise UserError(f"{name}: scale must be (low, high), got {scale!r}")
        lo = validate.number(f"{name}: scale[0]", scale[0], lo=0, lo_open=True)
        scale = (lo, validate.number(f"{name}: scale[1]", scale[1], lo=lo))
    return degrees, translate, scale


def _affine_fill(name, fill):
    """fill: "edge" or a finite number."""
    if isinstance(fill, str):
        if fill != "edge":
            raise UserError(f"{name}: fill must be a number or \"edge\", got {fill!r}")
        return fill
    return validate.number(f"{name}: fill", fill)


class RandomAffine:
    """A random rotation, shift and zoom about the image centre, as torchvision's.

    degrees: the angle drawn from [-degrees, degrees] (or a (low, high) range), turning
    the picture clockwise for a positive angle; translate: (a, b) shifts by a whole
    number of pixels up to a * width across and b * height down (a single number t,
    minicnn's own form, shifts by a fraction of a pixel too, up to t of each side);
    scale (lo, hi): the zoom factor; interpolation "nearest" (the default) or
    "bilinear"; fill: the value brought in from outside the image, or "edge" to repeat
    the nearest border pixel (no artificial black corners). The draws, in order:
    angle, shift x, shift y, zoom (each only when asked for). Shear is not supported.
    Output pixel p comes from input pixel  c + A^-1 (p - c - t),  A = scale * rotation.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, shear=None,
                 interpolation="nearest", fill=0, center=None):
        name = "RandomAffine"
        if shear not in (None, 0, 0.0):
            raise UserError(f"{name}: shear={shear!r} is not supported; minicnn's affine "
                            "rotates, shifts and zooms only")
        if center is not None:
            raise UserError(f"{name}: center={center!r} is not supported; it turns about the "
                            "image centre")
        self.degrees, self.translate, self.scale = _affine_ranges(name, degrees, translate, scale)
        self.resample = _filter(interpolation, name)
        self.interpolation = str(getattr(interpolation, "value", interpolation)).lower()
        self.fill = _affine_fill(name, fill)

    def draw(self, rng, w, h):
        """(angle in degrees, shift x, shift y, zoom) for a w x h picture."""
        angle = rng.uniform(*self.degrees)
        tx = ty = 0.0
        if isinstance(self.translate, tuple):       # torchvision: whole pixels
            tx = float(round(rng.uniform(-self.translate[0] * w, self.translate[0] * w)))
            ty = float(round(rng.uniform(-self.translate[1] * h, self.translate[1] * h)))
        elif self.translate is not None:
            tx = rng.uniform(-self.translate, self.translate) * w
            ty = rng.uniform(-self.translate, self.translate) * h
        s = rng.uniform(*self.scale) if self.scale is not None else 1.0
        return angle, tx, ty, s

    def __call__(self, image, rng=None):
        rng = _rng(rng)
        if _is_pil(image):
            w, h = image.size
        else:
            _, h, w = _array_in(image, "RandomAffine")[0].shape
        return self.apply(image, *self.draw(rng, w, h))

    def apply(self, image, angle, tx, ty, s):
        """The image turned by `angle` degrees, shifted by (tx, ty) pixels and zoomed by s
        (the parameters draw() gives): what __call__ does once they are drawn."""
        if _is_pil(image):
            w, h = image.size
            if self.fill == "edge":
                raise UserError("RandomAffine: fill='edge' works on tensors; give a number "
                                "for a Pillow image")
            return image.transform((w, h), Image.Transform.AFFINE,
                                   _inverse_affine(angle, tx, ty, s, w / 2.0, h / 2.0),
                                   resample=self.resample, fillcolor=self._pil_fill(image))
        image, back = _array_in(image, "RandomAffine")
        _, h, w = image.shape
        # edge fill: pad by repeating the border, transform the padded picture about the
        # same centre, crop the middle back out
        m = (max(h, w) + 1) // 2 if self.fill == "edge" else 0
        if m:
            image = np.pad(image, ((0, 0), (m, m), (m, m)), mode="edge")
        H, W = h + 2 * m, w + 2 * m
        coeffs = _inverse_affine(angle, tx, ty, s, W / 2.0, H / 2.0)
        fill = 0.0 if self.fill == "edge" else self.fill
        out = _per_channel(image, lambda im: im.transform(
            (W, H), Image.Transform.AFFINE, coeffs, resample=self.resample, fillcolor=fill))
        return back(np.ascontiguousarray(out[:, m:m + h, m:m + w]) if m else out)

    def _pil_fill(self, image):
        bands = len(image.getbands())
        value = int(round(self.fill)) if image.mode in ("L", "RGB", "RGBA", "P") else self.fill
        return value if bands == 1 else (value,) * bands

    def __repr__(self):
        return (f"RandomAffine(degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale}, interpolation={self.interpolation!r}, fill={self.fill!r})")


def _inverse_affine(angle, tx, ty, s, cx, cy):
    """Pillow's AFFINE coefficients (a, b, c, d, e, f), x_in = a*x + b*y + c and
    y_in = d*x + e*y + f, for a turn by `angle` degrees, zoom s and shift (tx, ty) about
    (cx, cy): the inverse of torchvision's affine matrix, so both move pixels alike."""
    rad = math.radians(angle)
    cos, sin = math.cos(rad) / s, math.sin(rad) / s
    a, b, d, e = cos, sin, -sin, cos
    ox, oy = cx + tx, cy + ty
    return (a, b, cx - a * ox - b * oy, d, e, cy - d * ox - e * oy)


class RandomRotation:
    """Turn by an angle drawn from [-degrees, degrees] (or (low, high)), counter-clockwise
    for a positive angle, about the centre, as torchvision's; expand=True grows the
    picture to hold all of it; fill: the value of the corners brought in."""

    def __init__(self, degrees, interpolation="nearest", expand=False, center=None, fill=0):
        self.degrees = _degrees(degrees, "RandomRotation")
        self.resample = _filter(interpolation, "RandomRotation")
        self.expand, self.center = bool(expand), center
        self.fill = validate.number("RandomRotation: fill", fill)

    def __call__(self, image, rng=None):
        angle = _rng(rng).uniform(*self.degrees)
        if _is_pil(image):
            bands = len(image.getbands())
            fill = int(round(self.fill)) if image.mode in ("L", "RGB", "RGBA") else self.fill
            return image.rotate(angle, resample=self.resample, expand=self.expand,
                                center=self.center, fillcolor=fill if bands == 1 else
                                (fill,) * bands)
        image, back = _array_in(image, "RandomRotation")
        return back(_per_channel(image, lambda im: im.rotate(
            angle, resample=self.resample, expand=self.expand, center=self.center,
            fillcolor=self.fill)))

    def __repr__(self):
        return f"RandomRotation(degrees={self.degrees}, expand={self.expand}, fill={self.fill})"


class CenterCrop:
    """The centred size x size (or (h, w)) part, as torchvision's: a crop larger than the
    image pads it with zeros; an odd margin puts the extra row/column below/right."""

    def __init__(self, size):
        sizes = (size, size) if validate.is_int(size) else tuple(size) \
            if isinstance(size, (tuple, list)) else ()
        if len(sizes) == 1:
            sizes = sizes * 2
        if len(sizes) != 2:
            raise UserError(f"CenterCrop: size must be an int or (height, width), got {size!r}")
        self.size = tuple(validate.integer("CenterCrop: size", v, 1, 1 << 16) for v in sizes)

    def __call__(self, image, rng=None):
        ch, cw = self.size
        if _is_pil(image):
            w, h = image.size
            top, left = _crop_start(h, ch), _crop_start(w, cw)
            return image.crop((left, top, left + cw, top + ch))   # outside: zeros
        image, back = _array_in(image, "CenterCrop")
        c, h, w = image.shape
        if ch > h or cw > w:
            pt, pl = max(ch - h, 0) // 2, max(cw - w, 0) // 2
            image = np.pad(image, ((0, 0), (pt, max(ch - h, 0) - pt), (pl, max(cw - w, 0) - pl)))
            _, h, w = image.shape
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        return back(np.ascontiguousarray(image[:, top:top + ch, left:left + cw]))

    def __repr__(self):
        return f"CenterCrop({self.size})"


def _crop_start(n, c):
    """Where a centred crop of c starts in n pixels: torchvision pads a short side by
    floor((c - n) / 2) before it, else starts at round((n - c) / 2)."""
    return -((c - n) // 2) if c > n else int(round((n - c) / 2.0))


class Grayscale:
    """Colour to gray (luma), as torchvision's; num_output_channels 3 repeats the gray plane."""

    # torchvision's weights for tensors; Pillow's convert("L") for Pillow images
    WEIGHTS = np.array([0.2989, 0.587, 0.114], np.float32)

    def __init__(self, num_output_channels=1):
        if num_output_channels not in (1, 3):
            raise UserError(f"Grayscale: num_output_channels must be 1 or 3, got "
                            f"{num_output_channels!r}")
        self.num_output_channels = num_output_channels

    def __call__(self, image, rng=None):
        if _is_pil(image):
            gray = image.convert("L")
            return gray if self.num_output_channels == 1 else \
                Image.merge("RGB", (gray, gray, gray))
        image, back = _array_in(image, "Grayscale")
        gray = image[:1] if image.shape[0] == 1 else \
            np.tensordot(self.WEIGHTS, image[:3], axes=1)[None].astype(np.float32)
        return back(np.repeat(gray, self.num_output_channels, axis=0))

    def __repr__(self):
        return f"Grayscale(num_output_channels={self.num_output_channels})"


class Normalize:
    """(x - mean[c]) / std[c] for each channel c; mean, std: one number or one per channel."""

    def __init__(self, mean, std, inplace=False):
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        if (self.std <= 0).any():
            raise ValueError(f"Normalize: std must be positive, got {self.std.ravel().tolist()}")

    def __call__(self, image, rng=None):
        image, back = _array_in(image, "Normalize")
        if self.mean.shape[0] not in (1, image.shape[0]) or \
                self.std.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"Normalize: {self.mean.shape[0]} means and {self.std.shape[0]} "
                             f"stds for an image of {image.shape[0]} channel(s)")
        return back(((image - self.mean) / self.std).astype(np.float32))

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def augmentation(strength="default"):
    """The training augmentation used by `minicnn train`: small affine + horizontal flip.

    X-rays differ in patient position and framing far more than in anything a flip
    changes for pneumonia, so these mimic real variation. strength "none" gives [].
    batch_augment.augmentation_batch is the same for a whole batch in one numba kernel.
    """
    if strength == "none":
        return []
    return [RandomAffine(degrees=10.0, translate=0.06, scale=(0.92, 1.08),
                         interpolation="bilinear", fill="edge"),
            RandomHorizontalFlip(0.5)]
