"""Batch augmentation (minicnn/data/batch_augment.py) against the per-image transforms,
and the DataLoader's batch_transform."""
import numpy as np
import pytest

from minicnn.data import transforms as T
from minicnn.data.batch_augment import (BatchCompose, BatchNormalize, BatchRandomAffine,
                                        augmentation_batch)
from minicnn.data.datasets import ArrayDataset
from minicnn.data.loader import DataLoader
from minicnn.errors import UserError
from minicnn.tensor import Tensor


def per_image(images, params, **kw):
    """Each image through RandomAffine's own code path (Pillow) with the drawn parameters,
    then mirrored where flip says so: what the batch kernel must reproduce."""
    affine = T.RandomAffine(interpolation="bilinear", **kw)
    out = []
    for i, image in enumerate(images):
        angle, tx, ty, s, flip = (p[i] for p in params)
        warped = affine.apply(image, float(angle), float(tx), float(ty), float(s))
        out.append(warped[:, :, ::-1] if flip else warped)
    return np.stack(out)


CASES = [
    dict(degrees=10.0, translate=0.06, scale=(0.92, 1.08), fill="edge"),      # the trainer's
    # every turn, whole-pixel shifts; zooms out only as far as the per-image path's padding
    # (half the image) reaches, beyond which it brings in zeros
    dict(degrees=180.0, translate=(0.1, 0.04), scale=(0.95, 1.5), fill="edge"),
    dict(degrees=(-30.0, 60.0), translate=0.2, scale=(0.7, 1.3), fill=0.25),
    dict(degrees=45.0, fill=0),
]


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (5, 3, 17, 23), (4, 2, 30, 9)])
@pytest.mark.parametrize("kw", CASES, ids=["default", "edge-wide", "fill-number", "turn-only"])
def test_batch_warp_equals_random_affine_image_by_image(kw, shape):
    images = np.random.default_rng(1).random(shape).astype(np.float32)
    batch = BatchRandomAffine(flip_p=0.5, **kw)
    params = batch.draw(np.random.default_rng(2), shape[0], w=shape[3], h=shape[2])
    got = batch.apply(images, *params)
    assert got.shape == images.shape and got.dtype == np.float32
    want = per_image(images, params, **kw)
    err = np.abs(got.astype(np.float64) - want).max()
    assert err <= 2e-7, f"batch warp differs from RandomAffine by {err} ({kw}, {shape})"
    assert not np.allclose(got, images, atol=1e-3), "the parameters should change the images"


def test_a_quarter_turn_moves_a_point_as_random_affine_does():
    images = np.zeros((2, 1, 21, 21), np.float32)
    images[:, 0, 10, 15] = 1.0            # five pixels right of the centre pixel
    batch = BatchRandomAffine(degrees=90.0)
    got = batch.apply(images, [90.0, -90.0], [0, 0], [0, 0], [1, 1], [0, 0])
    peaks = [np.unravel_index(int(np.argmax(g[0])), g[0].shape) for g in got]
    assert peaks == [(15, 10), (5, 10)], \
        f"+90 degrees turns clockwise: (10, 15) should go below the centre, -90 above, got {peaks}"
    affine = T.RandomAffine(degrees=90.0, interpolation="bilinear", fill="edge")
    want = [np.unravel_index(int(np.argmax(affine.apply(images[0], a, 0, 0, 1)[0])), (21, 21))
            for a in (90.0, -90.0)]
    assert peaks == want, f"the turn's direction differs from RandomAffine's: {peaks} vs {want}"


def test_edge_fill_repeats_the_border_however_far_out():
    images = np.random.default_rng(0).random((1, 1, 7, 9)).astype(np.float32)
    got = BatchRandomAffine().apply(images, [0.0], [0.0], [0.0], [0.05], [0])[0, 0]
    for y, x in ((0, 0), (0, 8), (6, 0), (6, 8)):
        assert got[y, x] == images[0, 0, y, x], f"corner {(y, x)} should repeat the corner pixel"
    assert got[3, 4] == images[0, 0, 3, 4], "the centre pixel stays where it is"


def test_identity_and_flip_are_exact():
    images = np.random.default_rng(0).random((3, 2, 8, 11)).astype(np.float32)
    batch = BatchRandomAffine()
    same = batch.apply(images, np.zeros(3), np.zeros(3), np.zeros(3), np.ones(3), [0, 0, 0])
    np.testing.assert_allclose(same, images, atol=1e-6, err_msg="identity warp")
    flipped = batch.apply(images, np.zeros(3), np.zeros(3), np.zeros(3), np.ones(3), [1, 0, 1])
    np.testing.assert_allclose(flipped[[0, 2]], images[[0, 2], :, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(flipped[1], images[1], atol=1e-6)


def test_draws_follow_the_generator_and_the_ranges():
    images = np.random.default_rng(0).random((64, 1, 12, 12)).astype(np.float32)
    aug = BatchCompose(augmentation_batch("default"))
    a = aug(images, np.random.default_rng(5))
    b = aug(images, np.random.default_rng(5))
    c = aug(images, np.random.default_rng(6))
    assert np.array_equal(a, b), "the same generator state must give the same batch"
    assert not np.array_equal(a, c), "another generator state should change the batch"
    assert [np.array_equal(a[i], a[j]) for i, j in ((0, 1), (1, 2))] == [False, False]
    batch = BatchRandomAffine(degrees=(5.0, 7.0), translate=(0.25, 0.5), scale=(0.5, 0.6),
                              flip_p=0.3)
    angle, tx, ty, s, flip = batch.draw(np.random.default_rng(0), 2000, w=8, h=12)
    assert angle.min() >= 5 and angle.max() <= 7 and s.min() >= 0.5 and s.max() <= 0.6
    assert np.array_equal(tx, np.round(tx)) and np.abs(tx).max() <= 2 and np.abs(ty).max() <= 6
    assert np.abs(tx).max() == 2 and np.abs(ty).max() == 6, "whole pixels up to a*w, b*h"
    assert 0.25 < flip.mean() < 0.35, f"flip_p 0.3 flipped {flip.mean():.2f} of the images"
    assert augmentation_batch("none") == []


def test_tensor_in_tensor_out_and_the_input_is_kept():
    images = np.random.default_rng(0).random((2, 1, 6, 6)).astype(np.float32)
    kept = images.copy()
    out = BatchRandomAffine(degrees=20.0)(Tensor(images), np.random.default_rng(0))
    assert isinstance(out, Tensor) and out.shape == (2, 1, 6, 6)
    assert np.array_equal(images, kept), "the batch given must not be changed"


def test_batch_normalize_equals_normalize_image_by_image():
    images = np.random.default_rng(0).random((4, 3, 5, 5)).astype(np.float32)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    got = BatchNormalize(mean, std)(images)
    want = np.stack([T.Normalize(mean, std)(im) for im in images])
    assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="3 means and 3 stds for images of 2 channel"):
        BatchNormalize(mean, std)(images[:, :2])


def test_bad_arguments_name_the_argument_and_the_value():
    bad = [
        (dict(flip_p=1.5), r"BatchRandomAffine: flip_p must be a probability from 0 to 1, "
                           r"got 1\.5"),
        (dict(degrees=-3), r"BatchRandomAffine: degrees must be .*got -3"),
        (dict(translate=(0.1, 0.2, 0.3)), r"translate must be \(a, b\) fractions, got \(0\.1"),
        (dict(scale=(0.0, 1.0)), r"BatchRandomAffine: scale\[0\] must be .*got 0\.0"),
        (dict(interpolation="nearest"), r"interpolation must be \"bilinear\", got 'nearest'"),
        (dict(fill="mirror"), r"fill must be a number or \"edge\", got 'mirror'"),
    ]
    for kw, message in bad:
        with pytest.raises(UserError, match=message):
            BatchRandomAffine(**kw)
    with pytest.raises(ValueError, match=r"expected a batch of images \(N, C, H, W\).*\(1, 8, 8\)"):
        BatchRandomAffine()(np.zeros((1, 8, 8), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="one angle, shift, zoom and flip per image needed"):
        BatchRandomAffine().apply(np.zeros((2, 1, 4, 4), np.float32), [0], [0], [0], [1], [0])
    with pytest.raises(UserError, match="std must be positive, got \\[0.0\\]"):
        BatchNormalize([0.5], [0.0])
    with pytest.raises(UserError, match="strength must be one of default, none, got 'strong'"):
        augmentation_batch("strong")
    with pytest.raises(UserError, match="every step must be a callable"):
        BatchCompose([3])
    ds = ArrayDataset(np.zeros((4, 1, 2, 2), np.float32), [0, 1, 0, 1], ("a", "b"))
    with pytest.raises(ValueError, match="batch_transform must be None or a callable.*'flip'"):
        DataLoader(ds, batch_transform="flip")
    loader = DataLoader(ds, batch_size=2, batch_transform=lambda x, rng: x[0])
    with pytest.raises(ValueError, match=r"must return \(N, C, H, W\) images for a batch of "
                                         r"\(2, 1, 2, 2\), got \(1, 2, 2\)"):
        next(iter(loader))


# --- DataLoader(batch_transform=...) --------------------------------------------------------------

def _toy(n=20, transform=None):
    images = np.random.default_rng(3).random((n, 1, 6, 6)).astype(np.float32)
    return ArrayDataset(images, np.arange(n) % 2, ("a", "b"), transform)


def test_loader_applies_the_batch_transform_with_the_batchs_generator_after_per_image_ones():
    flip = T.RandomHorizontalFlip(0.5)              # draws one number per image
    ds = _toy(10, transform=flip)
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=3,
                        batch_transform=lambda x, rng: x + np.float32(rng.random()))
    order = loader.order(1)
    for b, (x, _) in enumerate(loader.batches(epoch=1)):
        idx = order[b * 4:(b + 1) * 4]
        rng = np.random.default_rng([3, 1, b])
        images = np.stack([flip(ds.images[i], rng) for i in idx])   # per image first
        np.testing.assert_array_equal(x.numpy(), images + np.float32(rng.random()),
                                      err_msg=f"batch {b}")


def test_loader_with_batch_augmentation_resumes_mid_epoch_with_the_same_batches():
    ds = _toy(20)
    aug = BatchCompose(augmentation_batch() + [BatchNormalize([0.5], [0.25])])
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=7, batch_transform=aug)
    full = [x.numpy() for x, _ in loader.batches(epoch=2)]
    again = DataLoader(ds, batch_size=4, shuffle=True, seed=7, batch_transform=aug)
    tail = [x.numpy() for x, _ in again.batches(epoch=2, start=3)]
    assert len(full) == 5 and len(tail) == 2
    for k, (a, b) in enumerate(zip(full[3:], tail)):
        assert np.array_equal(a, b), f"batch {k + 3} differs when started part-way"
    other = [x.numpy() for x, _ in loader.batches(epoch=3)]
    assert not np.array_equal(full[0], other[0]), "another epoch should augment differently"
    # the normalisation comes after the augmentation: undoing it gives the warped pixels
    x = full[0] * np.float32(0.25) + np.float32(0.5)
    assert x.min() >= -1e-6 and x.max() <= 1 + 1e-6, "edge fill and bilinear stay in [0, 1]"
    idx = loader.order(2)[:4]
    want = aug(ds.images[idx], np.random.default_rng([7, 2, 0]))
    assert np.array_equal(full[0], want)
