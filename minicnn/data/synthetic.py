"""A SYNTHETIC chest X-ray generator: the default data set, for a first run with no download.

These pictures are drawn by a formula, not taken of anyone. They only imitate the
look of a frontal chest radiograph, so that the whole pipeline (training, metrics,
figures) can run anywhere in a minute; nothing learned from them says anything about
real patients. Everything that shows results from them says SYNTHETIC.

What is drawn (bright = dense, as on a radiograph; coordinates u, v in [-1, 1]):
  body        a soft-tissue ellipse on a dark background
  lung fields two dark ellipses with soft edges (air lets X-rays through)
  mediastinum the bright band of spine and great vessels between the lungs
  heart       a bright ellipse low in the middle, bulging to the image's right
  ribs        bright arcs across each lung, bending down towards the sides
  vessels     faint lines fanning out from each hilum
  noise       film grain, plus a random exposure (brightness, contrast)
  pneumonia   (label 1) opacities inside the lung fields: either patchy (several
              blurred blobs, as bronchopneumonia) or consolidated (one lobe-sized
              hazy region, as lobar pneumonia), on one or both sides, of varying
              density, so that some cases are faint

Image k of a split is drawn from numpy's Generator seeded with (seed, split, k):
the same seed gives the same images whatever the size of the set.
"""
import numpy as np

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
CLASSES = ("NORMAL", "PNEUMONIA")


def _ellipse(u, v, cu, cv, ru, rv, softness):
    """1 inside the ellipse, 0 outside, with a smooth edge of width ~softness."""
    r = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
    return 1.0 / (1.0 + np.exp((r - 1.0) / softness))


def _blob(u, v, cu, cv, sigma):
    return np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2.0 * sigma ** 2))


def draw_chest_xray(rng, size, pneumonia):
    """One synthetic radiograph: float32 (size, size) in [0, 1].

    rng: a numpy Generator (all randomness comes from it); pneumonia: bool.
    """
    over = 2  # draw at twice the size, then average 2x2 blocks: smooth edges at small sizes
    n = size * over
    t = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    # patient position: a small shift, tilt and zoom
    shift_u, shift_v = rng.normal(0, 0.04, 2)
    tilt = rng.normal(0, 0.04)
    zoom = rng.uniform(0.9, 1.08)
    uu, vv = np.meshgrid(t, t)
    u = (np.cos(tilt) * uu + np.sin(tilt) * vv) / zoom - shift_u
    v = (-np.sin(tilt) * uu + np.cos(tilt) * vv) / zoom - shift_v

    img = 0.05 + 0.42 * _ellipse(u, v, 0.0, 0.45, 1.0, 1.35, 0.04)          # body
    img += 0.10 * _ellipse(u, v, 0.0, -0.95, 0.75, 0.35, 0.08)               # shoulders
    lung_w = rng.uniform(0.25, 0.31)
    lung_h = rng.uniform(0.55, 0.66)
    lungs = []
    for side in (-1.0, 1.0):
        cu = side * rng.uniform(0.34, 0.41)
        lung = _ellipse(u, v, cu, -0.05, lung_w * (0.93 if side > 0 else 1.0), lung_h, 0.07)
        lungs.append((cu, lung))
        img -= 0.30 * lung
    lung_mask = np.maximum(lungs[0][1], lungs[1][1])
    img += 0.20 * np.exp(-(u / 0.10) ** 2)                                    # mediastinum
    img += rng.uniform(0.14, 0.22) * _ellipse(u, v, 0.12, 0.38, 0.30, 0.22, 0.06)  # heart
    # ribs: arcs v = phase + bend * u^2 + k * spacing, as one periodic pattern
    bend, spacing = rng.uniform(0.25, 0.4), rng.uniform(0.15, 0.19)
    phase = (v - bend * u ** 2 - rng.uniform(0, spacing)) * (2 * np.pi / spacing)
    img += 0.08 * np.maximum(np.cos(phase), 0.0) ** 6 * lung_mask
    # vessels: faint lines fanning out from each hilum
    for cu, lung in lungs:
        hu = cu * 0.45
        for _ in range(3):
            ang = rng.uniform(-0.9, 0.9) + (np.pi if cu < 0 else 0.0)
            du, dv = np.cos(ang), np.sin(ang)
            along = (u - hu) * du + v * dv
            across = -(u - hu) * dv + v * du
            img += 0.05 * np.exp(-(across / 0.015) ** 2 - np.abs(along) / 0.25) * (along > 0) * lung

    if pneumonia:
        sides = [0, 1] if rng.random() < 0.3 else [int(rng.integers(0, 2))]
        density = rng.uniform(0.10, 0.32)
        for s in sides:
            cu, lung = lungs[s]
            if rng.random() < 0.5:  # patchy: several blurred blobs
                opacity = np.zeros_like(u)
                for _ in range(int(rng.integers(3, 8))):
                    bu = cu + rng.normal(0, 0.09)
                    bv = rng.uniform(-0.3, 0.35)
                    opacity += _blob(u, v, bu, bv, rng.uniform(0.04, 0.09))
                opacity = np.minimum(opacity, 1.0)
            else:  # consolidation: one lobe-sized hazy region
                bv = rng.uniform(-0.2, 0.3)
                opacity = _ellipse(u, v, cu + rng.normal(0, 0.03), bv, rng.uniform(0.14, 0.24),
                                   rng.uniform(0.14, 0.26), 0.12)
            img += density * opacity * lung
    # exposure and film grain
    img = rng.uniform(0.85, 1.1) * img + rng.normal(0, 0.03)
    img += rng.normal(0, 0.025, img.shape)
    img = img.reshape(size, over, size, over).mean(axis=(1, 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def synthetic_split(n, size, seed, split="train", pneumonia_fraction=0.65):
    """n synthetic radiographs: (images float32 (n, 1, size, size) in [0, 1], labels int64 (n,)).

    The label of image k comes from the same per-image Generator as its pixels.
    """
    code = SPLIT_CODES[split]
    images = np.empty((n, 1, size, size), np.float32)
    labels = np.empty(n, np.int64)
    for k in range(n):
        rng = np.random.default_rng([int(seed), code, k])
        labels[k] = int(rng.random() < pneumonia_fraction)
        images[k, 0] = draw_chest_xray(rng, size, bool(labels[k]))
    return images, labels
