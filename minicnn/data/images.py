"""Reading one image file into numbers: PNG, JPEG (and whatever else Pillow reads), DICOM.

Every reader returns the same thing, whatever the file held:

    float32 array (C, H, W), values in [0, 1], C = the channels asked for (1 or 3)

How the file's values become [0, 1]:
  8-bit (Pillow modes L, RGB, P, ...)   / 255
  16-bit grayscale (mode I;16 / I)      / 65535
  32-bit float (mode F)                 kept if already in [0, 1], else min-max scaled
  DICOM                                 pydicom's own functions, as the standard says:
                                        the modality LUT (RescaleSlope/Intercept or a
                                        Modality LUT Sequence), then the VOI LUT (a VOI
                                        LUT Sequence, or the window WindowCenter/Width
                                        with its VOILUTFunction LINEAR, LINEAR_EXACT or
                                        SIGMOID) scaled from its output range to [0, 1];
                                        min-max scaled when the file has neither; then
                                        inverted for MONOCHROME1 (where bright means
                                        "less X-ray", the opposite of MONOCHROME2)
                                        A multi-frame file is refused with its frame
                                        count, or read frame by frame (read_frames;
                                        `minicnn predict --frames each`).
Colour to gray uses the ITU-R 601 luma weights (0.299 R + 0.587 G + 0.114 B), as
Pillow does; gray to colour repeats the gray plane. An alpha channel is dropped.

DICOM needs the optional pydicom package: pip install "minicnn-xray[dicom]".
"""
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError

# files with these endings are never images: an ImageFolder skips them (and says so)
NOT_IMAGE_SUFFIXES = (".txt", ".md", ".csv", ".json", ".xml", ".html", ".pdf", ".db",
                      ".ini", ".py", ".zip", ".npz", ".npy", ".log", ".yaml", ".yml")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_dicom(path):
    """True for a .dcm/.dicom file, or any file with the DICOM marker "DICM" at byte 128."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path, channels=1):
    """The image in `path` as float32 (channels, H, W) in [0, 1] (see the module docstring).

    Raises UserError naming the file when it is missing, not an image, or damaged.
    """
    path = os.fspath(path)
    if channels not in (1, 3):
        raise ValueError(f"read_image: channels must be 1 or 3, got {channels!r}")
    check_regular_file(path)
    if is_dicom(path):
        plane = _read_dicom(path)
    else:
        plane = _read_pillow(path)
    return to_channels(plane, channels)


def check_regular_file(path):
    """UserError unless path is a regular file; decided by os.stat alone, so a named pipe
    or a device (which would block or never end) is refused without being opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) \
            else "a device"
        raise UserError(f"{path}: is {kind}, not a regular file; image files only")


def max_pixels():
    """The most pixels an image may have (Pillow's decompression-bomb limit, ~89 million)."""
    return Image.MAX_IMAGE_PIXELS or 89_478_485


def check_pixel_count(path, height, width, what="image"):
    limit = max_pixels()
    if height * width > limit:
        raise UserError(f"{path}: the {what} declares {width}x{height} pixels "
                        f"({height * width:,}), more than the {limit:,} minicnn decodes (a "
                        "decompression bomb, or a scan far larger than needed); shrink it first")


def to_channels(image, channels):
    """(H, W) or (H, W, 3) float32 -> (channels, H, W): gray<->RGB as in the module docstring."""
    if image.ndim == 2:
        chw = image[None]
        return np.repeat(chw, 3, axis=0) if channels == 3 else np.ascontiguousarray(chw)
    rgb = image[..., :3]
    if channels == 3:
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    return np.ascontiguousarray((rgb @ LUMA)[None], dtype=np.float32)


# --- Pillow: PNG, JPEG, BMP, TIFF, ... ---------------------------------------------------

def _read_pillow(path):
    limit = max_pixels()
    try:
        with warnings.catch_warnings():  # Pillow's own check is replaced by ours, just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            try:
                img_file = Image.open(path)  # reads the header only
            finally:
                Image.MAX_IMAGE_PIXELS = limit
        with img_file as img:
            check_pixel_count(path, img.size[1], img.size[0], "image header")  # before decoding
            img.load()  # decode now: a truncated file fails here, not later
            img = ImageOps.exif_transpose(img)  # phone photos of films carry a rotation tag
            return pillow_to_array(img, path)
    except Image.DecompressionBombError as err:
        raise UserError(f"{path}: the image header declares too many pixels ({err}); "
                        "shrink it first") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file that can be read (Pillow does not "
                        "recognise its format); remove it or convert it to PNG") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: the image file is damaged or truncated ({err}); "
                        "remove it or replace it with a good copy") from None


def pillow_to_array(img, name="image"):
    """A Pillow image -> float32 (H, W) or (H, W, 3) in [0, 1]."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float32)
        if a.min() < 0 or a.max() > 65535:
            return _minmax(a)
        return a / 65535.0
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        if not np.isfinite(a).all():
            raise UserError(f"{name}: the image holds NaN or infinite values")
        return a if (a.min() >= 0 and a.max() <= 1) else _minmax(a)
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # RGB, RGBA, P, CMYK, ...


def _minmax(a):
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.float32)
    return ((a - lo) / (hi - lo)).astype(np.float32)


# --- DICOM ---------------------------------------------------------------------------------

def read_frames(path, channels=1):
    """Every frame of an image file as float32 (channels, H, W) in [0, 1]: the frames of a
    multi-frame DICOM file (a series, a cine loop), or the one image of any other file."""
    path = os.fspath(path)
    check_regular_file(path)
    if not is_dicom(path):
        return [read_image(path, channels)]
    return [to_channels(plane, channels) for plane in _read_dicom(path, frames="each")]


def _read_dicom(path, frames="refuse"):
    try:
        import pydicom  # lazy: optional dependency
    except ImportError:
        raise UserError(f"{path}: reading DICOM files needs the pydicom package; install it "
                        'with: pip install "minicnn-xray[dicom]"') from None
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # pydicom raises several kinds for a file that is not DICOM
        raise UserError(f"{path}: not a readable DICOM file ({type(err).__name__}: {err})") from None
    rows, cols = getattr(ds, "Rows", None), getattr(ds, "Columns", None)
    if isinstance(rows, int) and isinstance(cols, int):
        check_pixel_count(path, rows, cols, "DICOM header")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # no pixel data, or a compression pydicom cannot decode here
        raise UserError(f"{path}: the DICOM file has no pixel data minicnn can decode "
                        f"({err}); compressed files may need extra decoders "
                        "(pip install pylibjpeg pylibjpeg-libjpeg)") from None
    return dicom_to_array(ds, pixels, path, frames=frames)


def _lut_functions():
    """pydicom's apply_modality_lut and apply_voi_lut (pydicom.pixels from 3.0; before,
    pydicom.pixel_data_handlers.util)."""
    try:  # lazy: optional dependency
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # lazy: optional dependency (pydicom before 3.0)
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _has_voi(ds):
    window = "WindowCenter" in ds and "WindowWidth" in ds
    return bool(ds.get("VOILUTSequence")) or window


def _gray_to_unit(ds, plane, name):
    """One grayscale frame (H, W) of stored values -> float32 [0, 1], by pydicom's LUTs."""
    apply_modality_lut, apply_voi_lut = _lut_functions()
    try:
        a = apply_modality_lut(plane, ds)  # stored values stay integers without a rescale
        if not _has_voi(ds):
            return _minmax(np.asarray(a, dtype=np.float64))
        out = np.asarray(apply_voi_lut(a, ds, index=0), dtype=np.float64)
        # the VOI output range: the LUT's entries, or what the window gives far below/above
        if ds.get("VOILUTSequence"):
            ends = np.asarray(ds.VOILUTSequence[0].LUTData, np.float64)
        else:
            with np.errstate(over="ignore"):  # SIGMOID's exp at the far ends: 0 or inf
                ends = np.asarray(apply_voi_lut(np.array([-1e12, 1e12]), ds, index=0),
                                  np.float64)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise UserError(f"{name}: its modality or VOI LUT cannot be applied "
                        f"({type(err).__name__}: {err})") from None
    lo, hi = float(ends.min()), float(ends.max())
    if not hi > lo:
        return _minmax(out)
    return np.clip((out - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def dicom_to_array(ds, pixels, name="DICOM", frames="refuse"):
    """A DICOM dataset's pixels -> float32 (H, W) or (H, W, 3) in [0, 1].

    Grayscale: pydicom's apply_modality_lut (rescale, or the Modality LUT Sequence), then,
    when the file has one, its apply_voi_lut (the VOI LUT Sequence, or the first window
    with the file's VOILUTFunction) scaled from the LUT's output range to [0, 1]; else
    min-max; then 1 - v for MONOCHROME1.
    frames: "refuse" (a multi-frame file is a UserError naming its frame count) or
    "each" (a list of every frame, each converted as above).
    """
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
    multi = count > 1 or pixels.ndim == (4 if color else 3)
    if frames == "each":
        planes = list(pixels) if multi else [pixels]
        return [_frame_to_unit(ds, p, photometric, color, f"{name} frame {k}")
                for k, p in enumerate(planes)]
    if multi:
        raise UserError(f"{name}: a DICOM file with {count} frames (a series or cine loop); "
                        "minicnn trains on single images such as a chest radiograph (score "
                        f"each of the {count} frames with: minicnn predict --frames each ...)")
    return _frame_to_unit(ds, pixels, photometric, color, name)


def _frame_to_unit(ds, plane, photometric, color, name):
    if color:
        a = plane.astype(np.float32)
        return a / 255.0 if plane.dtype == np.uint8 else _minmax(a)
    a = _gray_to_unit(ds, plane, name)
    if photometric == "MONOCHROME1":  # low values are bright: turn it into MONOCHROME2
        a = 1.0 - a
    return a.astype(np.float32)
