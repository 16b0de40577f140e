"""Reading images, data sets, transforms, the DataLoader and the class-imbalance tools."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn.data import images as imagefiles
from minicnn.data import sampling, transforms as T
from minicnn.data.datasets import (ArrayDataset, ImageFolderSplit, MedMNIST, folder_splits,
                                   open_splits, synthetic_splits)
from minicnn.data.loader import DataLoader
from minicnn.data.synthetic import synthetic_split
from minicnn.errors import UserError
from minicnn.tensor import Tensor

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def close(got, want, atol=1e-6, rtol=1e-6, what="array"):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    if err.size and err.max() > 0:
        k = np.unravel_index(int(np.argmax(err)), err.shape)
        raise AssertionError(f"{what}: worst element {k}: got {got[k]!r}, want {want[k]!r}")


# --- image files ---------------------------------------------------------------------------------

def test_8bit_gray_png(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(a).save(tmp_path / "g.png")
    got = imagefiles.read_image(tmp_path / "g.png", channels=1)
    assert got.dtype == np.float32 and got.shape == (1, 3, 4)
    close(got[0], a / 255.0, what="8-bit gray")
    rgb = imagefiles.read_image(tmp_path / "g.png", channels=3)
    close(rgb, np.repeat(a[None] / 255.0, 3, axis=0), what="gray -> RGB")


def test_16bit_gray_png_uses_the_full_range(tmp_path):
    a = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    got = imagefiles.read_image(tmp_path / "g16.png", channels=1)
    close(got[0], a / 65535.0, what="16-bit gray")


def test_rgb_png_to_gray_uses_luma(tmp_path):
    a = np.zeros((2, 2, 3), np.uint8)
    a[0, 0] = (255, 0, 0)
    a[0, 1] = (0, 255, 0)
    a[1, 0] = (0, 0, 255)
    a[1, 1] = (10, 20, 30)
    Image.fromarray(a).save(tmp_path / "c.png")
    got = imagefiles.read_image(tmp_path / "c.png", channels=1)[0]
    want = (a.astype(np.float64) / 255.0) @ np.array([0.299, 0.587, 0.114])
    close(got, want, atol=1e-6, what="luma")
    rgb = imagefiles.read_image(tmp_path / "c.png", channels=3)
    close(rgb, a.transpose(2, 0, 1) / 255.0, what="RGB kept")


def test_rgba_and_palette_and_jpeg(tmp_path):
    a = (np.random.default_rng(0).random((8, 8, 4)) * 255).astype(np.uint8)
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    close(imagefiles.read_image(tmp_path / "a.png", 3), a[..., :3].transpose(2, 0, 1) / 255.0,
          what="alpha dropped")
    Image.fromarray(a[..., :3]).convert("P").save(tmp_path / "p.png")
    assert imagefiles.read_image(tmp_path / "p.png", 1).shape == (1, 8, 8)
    gray = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    Image.fromarray(gray).save(tmp_path / "x.jpeg", quality=95)
    got = imagefiles.read_image(tmp_path / "x.jpeg", 1)[0]
    close(got, gray / 255.0, atol=0.03, rtol=0, what="JPEG (lossy)")


def _write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None,
                 window=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # computed radiography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)


def test_dicom_monochrome1_is_inverted_and_rescale_applied(tmp_path):
    pytest.importorskip("pydicom")
    stored = np.array([[0, 100, 200], [300, 400, 500]])
    _write_dicom(tmp_path / "m2.dcm", stored)
    close(imagefiles.read_image(tmp_path / "m2.dcm")[0], stored / 500.0, what="MONOCHROME2")
    _write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1")
    close(imagefiles.read_image(tmp_path / "m1.dcm")[0], 1 - stored / 500.0, what="MONOCHROME1")
    # modality values 2*stored - 100 = -100 .. 900 through the window c=400, w=800, LINEAR
    # as the standard defines it (PS3.3 C.11.2.1.2.1): (x - (c - 0.5)) / (w - 1) + 0.5
    _write_dicom(tmp_path / "w.dcm", stored, slope=2, intercept=-100, window=(400, 800))
    want = np.clip((2 * stored - 100 - 399.5) / 799.0 + 0.5, 0, 1)
    close(imagefiles.read_image(tmp_path / "w.dcm")[0], want, what="rescale + window")
    # no extension: found by the DICM marker
    os.rename(tmp_path / "w.dcm", tmp_path / "scan")
    close(imagefiles.read_image(tmp_path / "scan")[0], want, what="extensionless DICOM")


def test_real_dicom_from_pydicom():
    pydicom_data = pytest.importorskip("pydicom.data")
    path = pydicom_data.get_testdata_file("CT_small.dcm")
    got = imagefiles.read_image(path, 1)
    assert got.shape == (1, 128, 128) and got.min() >= 0 and got.max() <= 1 and got.std() > 0.05


def _pydicom_reference(ds):
    """pydicom's own LUTs, scaled from the VOI output range the standard gives (y_min..y_max
    from BitsStored and PixelRepresentation, through the rescale; or the LUT's entries)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0).astype(np.float64)
    if "VOILUTSequence" in ds:
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, np.float64)
        lo, hi = lut.min(), lut.max()
    else:
        bits = ds.BitsStored
        lo, hi = (0, 2 ** bits - 1) if ds.PixelRepresentation == 0 else \
            (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return (out - lo) / (hi - lo)


@pytest.mark.parametrize("function", [None, "LINEAR", "LINEAR_EXACT", "SIGMOID", "sequence"])
def test_dicom_voi_lut_is_pydicoms(tmp_path, function):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    stored = ds.pixel_array
    ds.WindowCenter, ds.WindowWidth = 700, 900
    if function == "sequence":  # a VOI LUT Sequence wins over the window
        item = Dataset()
        first, n = int(stored.min()) + 40, 256
        item.LUTDescriptor = [n, first, 16]
        item.add_new(0x00283006, "US", [int(v) for v in np.linspace(0, 60000, n) ** 0.5 * 200])
        ds.VOILUTSequence = Sequence([item])
    elif function is not None:
        ds.VOILUTFunction = function
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    want = _pydicom_reference(pydicom.dcmread(path))
    got = imagefiles.read_image(path)[0]
    close(got, np.clip(want, 0, 1), what=f"VOI LUT {function}")
    assert got.std() > 0.05, "the LUT must leave a picture, not a flat field"


def test_multi_frame_dicom_is_refused_with_its_count_or_read_frame_by_frame():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    with pytest.raises(UserError, match=f"rtdose.dcm: a DICOM file with {ds.NumberOfFrames} "
                                        "frames.*--frames each"):
        imagefiles.read_image(path)
    frames = imagefiles.read_frames(path)
    assert len(frames) == ds.NumberOfFrames == 15
    from pydicom.pixels import apply_modality_lut
    for k in (0, 7, 14):
        plane = apply_modality_lut(ds.pixel_array[k], ds).astype(np.float64)
        want = (plane - plane.min()) / (plane.max() - plane.min())
        close(frames[k][0], want, what=f"frame {k}")


def test_dicom_without_pydicom_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    import sys
    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes `import pydicom` fail
    with pytest.raises(UserError, match=r'pip install "minicnn-xray\[dicom\]"') as info:
        imagefiles.read_image(tmp_path / "x.dcm")
    assert "x.dcm" in str(info.value)


# --- transforms ------------------------------------------------------------------------------------

def test_to_tensor_scales_by_dtype():
    close(T.ToTensor(1)(np.array([[0, 255]], np.uint8)), [[[0, 1]]], what="uint8")
    close(T.ToTensor(1)(np.array([[0, 65535]], np.uint16)), [[[0, 1]]], what="uint16")
    out = T.ToTensor(3)(np.zeros((4, 5), np.uint8))
    assert out.shape == (3, 4, 5) and out.dtype == np.float32


def test_resize_and_normalize():
    img = np.full((1, 10, 20), 0.5, np.float32)
    assert T.Resize(8)(img).shape == (1, 8, 16), "an int sets the shorter side, as torchvision"
    assert T.Resize(7)(img[:, :, :17]).shape == (1, 7, 11), "the longer side rounds down"
    out = T.Resize((8, 8))(img)
    assert out.shape == (1, 8, 8)
    close(out, np.full((1, 8, 8), 0.5), what="constant image stays constant")
    with pytest.raises(UserError, match="10x20 pixels is smaller than the 12x12"):
        T.Resize(8, min_size=12)(img)
    norm = T.Normalize([0.25], [0.5])(img)
    close(norm, np.full_like(img, 0.5), what="normalize")


def test_random_transforms_follow_the_generator():
    img = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    aug = T.Compose(T.augmentation())
    a = aug(img, np.random.default_rng(5))
    b = aug(img, np.random.default_rng(5))
    c = aug(img, np.random.default_rng(6))
    assert np.array_equal(a, b), "the same generator state must give the same image"
    assert not np.array_equal(a, c), "another generator state should change the image"
    assert a.shape == img.shape and a.dtype == np.float32
    ident = T.RandomAffine(degrees=0, translate=0, scale=(1, 1))(img, np.random.default_rng(0))
    close(ident, img, atol=1e-6, what="identity affine")
    flip = T.RandomHorizontalFlip(p=1.0)(img, np.random.default_rng(0))
    assert np.array_equal(flip, img[:, :, ::-1])


def test_random_affine_rotates_about_the_centre():
    img = np.zeros((1, 21, 21), np.float32)
    img[0, 10, 15] = 1.0  # five pixels right of the centre pixel

    class QuarterTurn:  # stands in for the Generator: angle +90 degrees, no shift, no zoom
        def uniform(self, lo, hi):
            return hi if hi == 90.0 else (1.0 if lo == 1.0 else 0.0)
    turned = T.RandomAffine(degrees=90.0, translate=0.0, scale=(1.0, 1.0))(img, QuarterTurn())
    peak = np.unravel_index(int(np.argmax(turned[0])), turned[0].shape)
    assert peak in ((5, 10), (15, 10)), \
        f"a quarter turn should move (10, 15) straight above or below the centre, got {peak}"
    assert turned[0][peak] > 0.99


# --- data sets --------------------------------------------------------------------------------------

def _gray(path, size=(12, 12), value=100, mode="L"):
    a = np.full(size, value, np.uint8)
    img = Image.fromarray(a)
    if mode != "L":
        img = img.convert(mode)
    img.save(path)


def make_folder(root, per_class=2, classes=("NORMAL", "PNEUMONIA"), size=(12, 12)):
    for split in ("train", "val", "test"):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _gray(d / f"{i}.png", size, value=60 + 100 * k + i)
    return root


def test_image_folder_reads_splits_and_classes(tmp_path):
    root = make_folder(tmp_path / "xr")
    (root / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    splits = folder_splits(root, image_size=8, channels=1)
    assert splits.train.classes == ("NORMAL", "PNEUMONIA")
    assert splits.train.images.shape == (4, 1, 8, 8)
    assert splits.train.labels.tolist() == [0, 0, 1, 1]
    close(splits.train.images[0], np.full((1, 8, 8), 60 / 255.0), what="decoded pixels")
    assert splits.info["synthetic"] is False
    assert splits.info["class_counts"]["test"] == {"NORMAL": 2, "PNEUMONIA": 2}
    assert splits.info["skipped_non_images"] == 1


def test_image_folder_converts_mixed_gray_and_rgb(tmp_path):
    root = make_folder(tmp_path / "xr")
    _gray(root / "train" / "NORMAL" / "colour.png", value=90, mode="RGB")
    a16 = np.full((12, 12), 30000, np.uint16)
    Image.fromarray(a16).save(root / "train" / "PNEUMONIA" / "deep.png")
    gray = ImageFolderSplit(root / "train", image_size=8, channels=1)
    assert gray.images.shape == (6, 1, 8, 8)
    colour = ImageFolderSplit(root / "train", image_size=8, channels=3)
    assert colour.images.shape == (6, 3, 8, 8)
    k = colour.files.index(str(root / "train" / "PNEUMONIA" / "deep.png"))
    close(colour.images[k], np.full((3, 8, 8), 30000 / 65535.0), what="16-bit in an RGB set")


def test_image_folder_frames_a_wide_image_as_a_centred_square(tmp_path):
    d = tmp_path / "one" / "A"
    d.mkdir(parents=True)
    a = np.zeros((10, 30), np.uint8)
    a[:, 10:20] = 255  # the centre square is all white; the sides black
    Image.fromarray(a).save(d / "wide.png")
    ds = ImageFolderSplit(tmp_path / "one", image_size=5)
    close(ds.images[0], np.ones((1, 5, 5)), what="centre square")


def _npz(path, n=(6, 4, 4), size=10, channels=None, labels_shape=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, size, size) + ((channels,) if channels else ())
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        lab = np.arange(count) % 2
        arrays[f"{split}_labels"] = lab.reshape(-1, 1) if labels_shape is None else \
            np.zeros((count, labels_shape), np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_medmnist_npz(tmp_path):
    arrays = _npz(tmp_path / "pneumoniamnist.npz")
    splits = open_splits(tmp_path / "pneumoniamnist.npz")
    assert splits.train.classes == ("NORMAL", "PNEUMONIA")
    assert splits.train.images.shape == (6, 1, 10, 10)
    close(splits.val.images[:, 0], arrays["val_images"] / 255.0, what="npz pixels")
    assert splits.test.labels.tolist() == [0, 1, 0, 1]
    up = MedMNIST(tmp_path / "pneumoniamnist.npz", "train", image_size=20)
    assert up.images.shape == (6, 1, 20, 20) and up.native_size == 10
    _npz(tmp_path / "pathlike.npz", channels=3)
    rgb = MedMNIST(tmp_path / "pathlike.npz", "train", channels=3)
    assert rgb.images.shape == (6, 3, 10, 10) and rgb.classes == ("0", "1")


def test_medmnist_npz_errors_name_the_file(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="other.npz: has no 'train_images'"):
        open_splits(tmp_path / "other.npz")
    _npz(tmp_path / "chestmnist.npz", labels_shape=14)  # multi-label, but no finding present
    with pytest.raises(UserError, match="chestmnist.npz: no training image has Atelectasis"):
        open_splits(tmp_path / "chestmnist.npz")
    cut = tmp_path / "cut.npz"
    data = (tmp_path / "chestmnist.npz").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.npz: the dataset .npz is damaged or truncated.*"
                                        "download it again"):
        open_splits(cut)
    with pytest.raises(UserError, match="missing.npz: no such dataset .npz file"):
        open_splits(tmp_path / "missing.npz")


@pytest.mark.skipif(not SHARED_NPZ.exists(), reason=f"the real PneumoniaMNIST file is not at {SHARED_NPZ}")
def test_real_pneumoniamnist_counts():
    splits = open_splits(SHARED_NPZ)
    assert splits.info["split_sizes"] == {"train": 4708, "val": 524, "test": 624}
    assert splits.info["class_counts"]["test"] == {"NORMAL": 234, "PNEUMONIA": 390}
    assert splits.train.images.shape == (4708, 1, 28, 28)


def test_synthetic_is_deterministic_and_labelled_synthetic():
    x1, y1 = synthetic_split(10, 16, seed=3)
    x2, y2 = synthetic_split(20, 16, seed=3)
    assert np.array_equal(x1, x2[:10]) and np.array_equal(y1, y2[:10]), \
        "image k must not depend on how many are drawn"
    x3, _ = synthetic_split(10, 16, seed=4)
    assert not np.array_equal(x1, x3)
    assert x1.dtype == np.float32 and x1.min() >= 0 and x1.max() <= 1
    splits = synthetic_splits(16, sizes={"train": 40, "val": 8, "test": 8})
    assert splits.info["synthetic"] is True and splits.info["source"] == "synthetic"
    assert set(np.unique(splits.train.labels)) == {0, 1}
    assert not np.array_equal(splits.val.images, splits.test.images[:8])


def test_synthetic_classes_differ_in_the_lungs():
    # pneumonia adds opacity (brightness) inside the lung fields: on average, it shows
    x, y = synthetic_split(200, 32, seed=0)
    lungs = x[:, 0, 8:22, 4:28].mean(axis=(1, 2))
    assert lungs[y == 1].mean() > lungs[y == 0].mean() + 0.01


# --- DataLoader ---------------------------------------------------------------------------------------

def _toy(n=10, transform=None):
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 1, 4, 4), np.float32)
    return ArrayDataset(images, np.arange(n) % 2, ("a", "b"), transform)


def test_loader_batches_are_tensors_of_the_right_type():
    loader = DataLoader(_toy(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [b[0].shape for b in batches] == [(4, 1, 4, 4)] * 2 + [(2, 1, 4, 4)]
    x, y = batches[0]
    assert isinstance(x, Tensor) and x.dtype == np.float32
    assert isinstance(y, Tensor) and y.dtype == np.int64
    assert len(DataLoader(_toy(10), batch_size=4, drop_last=True)) == 2


def test_loader_shuffle_depends_on_seed_and_epoch_only():
    ds = _toy(20)
    a = DataLoader(ds, batch_size=5, shuffle=True, seed=1)
    b = DataLoader(ds, batch_size=5, shuffle=True, seed=1)
    order0 = a.order(0)
    assert sorted(order0.tolist()) == list(range(20))
    assert np.array_equal(order0, b.order(0))
    assert not np.array_equal(order0, a.order(1))
    assert not np.array_equal(order0, DataLoader(ds, 5, shuffle=True, seed=2).order(0))


def test_loader_resumes_mid_epoch_with_the_same_batches():
    ds = _toy(20, transform=T.Compose(T.augmentation()))
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    full = [x.numpy() for x, _ in loader.batches(epoch=2)]
    tail = [x.numpy() for x, _ in loader.batches(epoch=2, start=3)]
    assert len(tail) == 2
    for k, (a, b) in enumerate(zip(full[3:], tail)):
        assert np.array_equal(a, b), f"batch {k + 3} differs when started part-way"


def test_loader_with_a_sampler():
    labels = np.array([0] * 2 + [1] * 8)
    ds = ArrayDataset(np.zeros((10, 1, 2, 2), np.float32), labels, ("a", "b"))
    loader = DataLoader(ds, batch_size=100, sampler=sampling.OverSampler(labels), seed=0)
    (_, y), = list(loader)
    assert np.bincount(y.numpy()).tolist() == [8, 8]
    with pytest.raises(ValueError, match="not both"):
        DataLoader(ds, shuffle=True, sampler=sampling.OverSampler(labels))


# --- class imbalance ----------------------------------------------------------------------------------

def test_class_weights_hand_computed():
    w = sampling.class_weights([0, 1, 1, 1])
    close(w, [4 / (2 * 1), 4 / (2 * 3)], what="inverse frequency")
    counts = np.array([1, 3])
    assert float((w * counts).sum()) == pytest.approx(4.0)  # the loss keeps its scale
    close(sampling.class_weights([0, 0, 2], num_classes=3), [3 / 4, 0, 3 / 2], what="absent class")


def test_samplers_balance_the_classes():
    labels = np.array([0] * 10 + [1] * 90)
    rng = np.random.default_rng(0)
    drawn = sampling.balanced_sampler(labels, num_samples=4000).indices(rng)
    share = np.bincount(labels[drawn]) / drawn.size
    assert abs(share[0] - 0.5) < 0.04, f"balanced sampler gave class shares {share}"
    over = sampling.OverSampler(labels)
    idx = over.indices(rng)
    assert len(over) == idx.size == 180 and np.bincount(labels[idx]).tolist() == [90, 90]
    assert set(np.flatnonzero(labels == 1)) <= set(idx.tolist()), "over-sampling keeps every sample"
    under = sampling.UnderSampler(labels)
    idx = under.indices(rng)
    assert len(under) == idx.size == 20 and np.bincount(labels[idx]).tolist() == [10, 10]
    assert len(set(idx.tolist())) == 20, "under-sampling draws without replacement"
    w = sampling.WeightedRandomSampler([0, 0, 1, 0], num_samples=5)
    assert w.indices(rng).tolist() == [2] * 5
