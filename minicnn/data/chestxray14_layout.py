"""A generated data set in ChestX-ray14's exact layout, with findings drawn into the images.

    write_chestxray14(root, patients=60, images_per_patient=3, size=64, seed=0)

writes Data_Entry_2017_v2020.csv, images_001/images/*.png ..., train_val_list.txt and
test_list.txt (the test list takes whole patients, as the official one does). Each
finding has its own mark: a bright disc in a place of its own on a SYNTHETIC chest
X-ray, so a network that learns the findings shows it by a per-finding AUC well
above 0.5. For tests and measurements; nothing here is a real patient.
"""
import os

import numpy as np
from PIL import Image

from .chestxray14 import FINDINGS, NO_FINDING
from .synthetic import synthetic_split


def _mark(image, k, rng):
    """Draw finding k's disc: grid cell k of a 4 x 4 grid, slightly jittered."""
    size = image.shape[0]
    cell = size / 4
    cy = (k // 4 + 0.5) * cell + rng.uniform(-0.15, 0.15) * cell
    cx = (k % 4 + 0.5) * cell + rng.uniform(-0.15, 0.15) * cell
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.28 * cell) ** 2
    image[disc] = np.clip(image[disc] * 0.3 + 0.75, 0, 1)


def write_chestxray14(root, patients=60, images_per_patient=3, size=64, seed=0,
                      findings=FINDINGS, p_finding=0.25, test_fraction=0.2, images_per_folder=None):
    """Write the layout under `root`; returns the list of (image, patient, findings)."""
    rng = np.random.default_rng(seed)
    n = patients * images_per_patient
    chunk = 64                 # backgrounds drawn 64 at a time: memory stays flat at 1024 px
    per_folder = images_per_folder or max(1, -(-n // 3))      # three images_NNN folders
    rows, entries = [], []
    for i in range(n):
        patient = i // images_per_patient + 1
        name = f"{patient:08d}_{i % images_per_patient:03d}.png"
        present = [f for f in findings if rng.random() < p_finding]
        if i % chunk == 0:
            backgrounds, _ = synthetic_split(min(chunk, n - i), size, seed=seed * 100003 + i,
                                             pneumonia_fraction=0.0)
        image = backgrounds[i % chunk, 0].copy()
        for f in present:
            _mark(image, FINDINGS.index(f), rng)
        folder = os.path.join(root, f"images_{i // per_folder + 1:03d}", "images")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.rint(image * 255).astype(np.uint8), mode="L").save(
            os.path.join(folder, name))
        label = "|".join(present) if present else NO_FINDING
        rows.append(f"{name},{label},{i % images_per_patient},{patient},40,M,PA,{size},{size},"
                    "0.143,0.143")
        entries.append((name, str(patient), frozenset(present)))
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    with open(os.path.join(root, "Data_Entry_2017_v2020.csv"), "w") as f:
        f.write(header + "\n" + "\n".join(rows) + "\n")
    test_patients = set(rng.permutation(np.arange(1, patients + 1))[:max(1, int(
        round(test_fraction * patients)))].tolist())
    with open(os.path.join(root, "test_list.txt"), "w") as f:
        f.write("\n".join(e[0] for e in entries if int(e[1]) in test_patients) + "\n")
    with open(os.path.join(root, "train_val_list.txt"), "w") as f:
        f.write("\n".join(e[0] for e in entries if int(e[1]) not in test_patients) + "\n")
    return entries


def write_chestmnist_like(path, sizes=None, size=28, seed=0, p_finding=0.25):
    """A multi-label .npz shaped as MedMNIST's ChestMNIST: {split}_images uint8 (N, S, S),
    {split}_labels uint8 (N, 14), with each present finding drawn as its disc (see _mark).
    sizes: {"train": N, "val": N, "test": N}. SYNTHETIC, for tests and measurements."""
    sizes = dict({"train": 400, "val": 100, "test": 100}, **(sizes or {}))
    arrays = {}
    for code, split in enumerate(("train", "val", "test")):
        n = sizes[split]
        rng = np.random.default_rng([int(seed), code])
        backgrounds, _ = synthetic_split(n, size, seed=seed * 100003 + code,
                                         split=split, pneumonia_fraction=0.0)
        labels = (rng.random((n, len(FINDINGS))) < p_finding).astype(np.uint8)
        images = backgrounds[:, 0].copy()
        for i in range(n):
            for k in np.flatnonzero(labels[i]):
                _mark(images[i], int(k), rng)
        arrays[f"{split}_images"] = np.rint(images * 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    np.savez_compressed(path, **arrays)
    return path
