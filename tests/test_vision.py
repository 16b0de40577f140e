"""torchvision's names in minicnn.data: ImageFolder and callable transforms mean the same thing.

torchvision itself cannot be installed beside the CPU torch build here, so each rule
is checked against what torchvision documents and does (its size, crop and rotation
arithmetic, done here with Pillow directly).
"""
import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn.data import datasets, transforms as T
from minicnn.errors import UserError
from minicnn.utils.data import DataLoader


def _pil(h=20, w=40, mode="L", seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w) + ((3,) if mode == "RGB" else ()))
    return Image.fromarray(a.astype(np.uint8), mode=mode)


def test_resize_int_is_the_shorter_side_and_a_pair_is_exact():
    img = _pil(20, 40)
    assert T.Resize(10)(img).size == (20, 10)            # Pillow sizes are (width, height)
    assert T.Resize(10)(_pil(45, 20)).size == (10, 22)   # the longer side rounds down
    assert T.Resize((7, 9))(img).size == (9, 7)
    want = np.asarray(img.resize((20, 10), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(np.asarray(T.Resize(10)(img)), want)
    arr = T.ToTensor()(img)
    assert T.Resize(10)(arr).shape == (1, 10, 20) and isinstance(T.Resize(10)(arr), minicnn.Tensor)


@pytest.mark.parametrize("h, w, size", [(20, 40, 11), (21, 21, (8, 5)), (6, 7, 10)])
def test_center_crop_takes_torchvisions_window(h, w, size):
    img = _pil(h, w)
    ch, cw = (size, size) if isinstance(size, int) else size
    # torchvision: pad a short side (left/top floor((c - n) / 2), the rest right/bottom),
    # then cut at round((n - c) / 2)
    pt, pl = max(ch - h, 0) // 2, max(cw - w, 0) // 2
    padded = np.pad(np.asarray(img), ((pt, max(ch - h, 0) - pt), (pl, max(cw - w, 0) - pl)))
    top = int(round((padded.shape[0] - ch) / 2.0))
    left = int(round((padded.shape[1] - cw) / 2.0))
    want = padded[top:top + ch, left:left + cw]
    np.testing.assert_array_equal(np.asarray(T.CenterCrop(size)(img)), want)
    got = T.CenterCrop(size)(T.ToTensor()(img)).numpy()[0]
    np.testing.assert_allclose(got * 255, want, atol=1e-3)


def test_rotation_and_flip_as_torchvision():
    img = _pil(24, 24)
    turned = T.RandomRotation((30, 30))(img)
    np.testing.assert_array_equal(np.asarray(turned), np.asarray(img.rotate(30)))
    flipped = T.RandomHorizontalFlip(p=1.0)(img)
    np.testing.assert_array_equal(np.asarray(flipped), np.asarray(img)[:, ::-1])
    assert T.RandomHorizontalFlip(p=0.0)(img) is img


def test_random_affine_pair_translate_shifts_by_whole_pixels():
    img = _pil(16, 16)
    out = np.asarray(T.RandomAffine(degrees=0, translate=(0.4, 0.4))(img, np.random.default_rng(3)))
    src = np.asarray(img)
    shifts = [(dy, dx) for dy in range(-7, 8) for dx in range(-7, 8)
              if np.array_equal(out[max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)],
                                src[max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)])]
    assert len(shifts) == 1 and shifts[0] != (0, 0), shifts
    with pytest.raises(UserError, match="shear"):
        T.RandomAffine(10, shear=5)


def test_to_tensor_normalize_grayscale_and_the_wrong_kind_of_input():
    gray, rgb = _pil(5, 6), _pil(5, 6, "RGB")
    t = T.ToTensor()(gray)
    assert isinstance(t, minicnn.Tensor) and t.shape == (1, 5, 6) and t.dtype == np.float32
    np.testing.assert_allclose(t.numpy()[0], np.asarray(gray) / 255.0, atol=1e-6)
    assert T.ToTensor()(rgb).shape == (3, 5, 6)
    n = T.Normalize((0.5,), (0.25,))(t)
    np.testing.assert_allclose(n.numpy(), (t.numpy() - 0.5) / 0.25, atol=1e-6)
    g = T.Grayscale()(T.ToTensor()(rgb)).numpy()[0]
    want = np.tensordot([0.2989, 0.587, 0.114], T.ToTensor()(rgb).numpy(), axes=1)
    np.testing.assert_allclose(g, want, atol=1e-6)
    assert T.Grayscale(3)(rgb).mode == "RGB" and T.Grayscale()(rgb).mode == "L"
    with pytest.raises(TypeError, match="Pillow image.*ToTensor"):
        T.Normalize((0.5,), (0.5,))(gray)
    with pytest.raises(TypeError, match="already one"):
        T.ToTensor()(t)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch.Tensor"):
        T.Normalize((0.5,), (0.5,))(torch.zeros(1, 2, 2))


def test_random_transforms_repeat_with_the_seed_and_differ_without():
    img = _pil(24, 24)
    aug = T.Compose([T.RandomRotation(20), T.RandomHorizontalFlip(), T.ToTensor()])
    minicnn.manual_seed(7)
    a = [aug(img).numpy() for _ in range(3)]
    minicnn.manual_seed(7)
    b = [aug(img).numpy() for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])


def _folder(root, counts=(3, 2)):
    for cls, n in zip(("NORMAL", "PNEUMONIA"), counts):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            _pil(12, 10, seed=i).save(root / cls / f"{i}.{'png' if i % 2 else 'jpeg'}")
    (root / "NORMAL" / "notes.txt").write_text("not an image")


def test_image_folder_is_torchvisions(tmp_path):
    _folder(tmp_path)
    ds = datasets.ImageFolder(tmp_path, transform=T.Compose([T.Resize((8, 8)), T.ToTensor()]),
                              target_transform=lambda t: t * 10)
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and ds.class_to_idx == {"NORMAL": 0, "PNEUMONIA": 1}
    assert len(ds) == 5 and ds.targets == [0, 0, 0, 1, 1]
    assert [p.endswith((".png", ".jpeg")) for p, _ in ds.samples] == [True] * 5
    image, target = ds[3]
    assert image.shape == (3, 8, 8) and target == 10, "RGB by default, as torchvision"
    raw, _ = datasets.ImageFolder(tmp_path)[0]
    assert isinstance(raw, Image.Image) and raw.mode == "RGB" and raw.size == (10, 12)
    images, labels = next(iter(DataLoader(ds, batch_size=5)))
    assert images.shape == (5, 3, 8, 8) and labels.tolist() == [0, 0, 0, 10, 10]
    cached = datasets.ImageFolder(tmp_path, cache=True)
    first = np.asarray(cached[1][0])
    (tmp_path / "NORMAL" / "1.png").unlink()
    np.testing.assert_array_equal(np.asarray(cached[1][0]), first)


def test_image_folder_names_what_is_wrong(tmp_path):
    _folder(tmp_path, counts=(2, 0))
    with pytest.raises(UserError, match="PNEUMONIA"):
        datasets.ImageFolder(tmp_path)
    assert len(datasets.ImageFolder(tmp_path, allow_empty=True)) == 2
    (tmp_path / "PNEUMONIA" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = datasets.ImageFolder(tmp_path)
    with pytest.raises(UserError, match="broken.png"):
        ds[2]


def test_mask_logic_on_tensors():
    a, b = minicnn.tensor([True, True, False]), minicnn.tensor([True, False, False])
    assert (a & b).tolist() == [True, False, False] and (a | b).tolist() == [True, True, False]
    assert (a ^ b).tolist() == [False, True, False] and (~a).tolist() == [False, False, True]
    with pytest.raises(TypeError, match="bool or integer"):
        minicnn.tensor([1.0]) & a
