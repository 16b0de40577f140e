# %% [markdown]
# # Lesson 07 — Data: images, augmentation, class imbalance
#
# **What this lesson teaches**
# - how minicnn holds a data set (`minicnn.data`): images as float32 (N, C, H, W) in
#   [0, 1], integer labels, three splits — train (to learn), val (to choose settings
#   and checkpoints), test (touched once, for the final figure);
# - the built-in SYNTHETIC chest X-rays, and how to use the real PneumoniaMNIST file;
# - augmentation: small random changes that make a new picture of the same patient;
# - class imbalance, and two remedies: a class-weighted loss and a balanced sampler.
#
# Run it: `python lessons/07_data.py [--quick] [--out FOLDER] [--data pneumoniamnist.npz]`.
# Practise it: exercise 09 (class-weighted loss), `minicnn grade 09`.

# %%
import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.data import (DataLoader, balanced_sampler, class_weights, open_splits,
                          transforms)

from minicnn.lesson import setup, save, plt

args, OUT = setup("07_data", "Lesson 07: data sets, augmentation and class imbalance", data=True)

# %% [markdown]
# ## The data set
#
# With no file given, minicnn draws its own chest X-rays. They are **synthetic**:
# made by a formula that imitates a radiograph (lungs, heart, ribs; pneumonia as
# hazy opacities in the lungs), useful to run everything anywhere, and meaningless
# for real patients. The real PneumoniaMNIST (MedMNIST v2: 5,856 paediatric chest
# X-rays at 28 × 28) comes as one .npz file: pass it with `--data`.

# %%
sizes = {"train": 96, "val": 24, "test": 24} if args.quick else None
splits = open_splits(args.data, image_size=64 if args.data == "synthetic" else None,
                     synthetic_sizes=sizes)
kind = "SYNTHETIC" if splits.info["synthetic"] else "real"
train = splits.train
print(f"data: {splits.info['source']} ({kind} images), classes {train.classes}")
for name in ("train", "val", "test"):
    print(f"  {name:5s} {splits[name]}")

fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for row, label in enumerate((0, 1)):
    picks = np.flatnonzero(train.labels == label)[:6]
    for ax, i in zip(axes[row], picks):
        ax.imshow(train.images[i, 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(train.classes[label], fontsize=8)
        ax.axis("off")
fig.suptitle("SYNTHETIC chest X-rays, drawn by minicnn.data.synthetic" if kind == "SYNTHETIC"
             else f"real chest X-rays: {splits.info['source']}", fontsize=10,
             color="darkred" if kind == "SYNTHETIC" else "black")
save(fig, OUT, "samples.png")

# %% [markdown]
# ## Augmentation
#
# A network that sees the same 4,700 pictures for 20 epochs can learn them by
# heart. Augmentation shows a slightly different picture each time: turned a few
# degrees, shifted, zoomed — as patients stand differently in front of the
# detector. The label does not change. (`minicnn train` uses
# `transforms.augmentation()`: RandomAffine and RandomHorizontalFlip.) Each random
# transform draws only from the numpy Generator it is given, so a seed repeats it.

# %%
augment = transforms.Compose(transforms.augmentation())
print("augmentation:", augment)
image = train.images[np.flatnonzero(train.labels == 1)[0]]
rng = np.random.default_rng(0)
fig, axes = plt.subplots(1, 6, figsize=(12, 2.4))
axes[0].imshow(image[0], cmap="gray", vmin=0, vmax=1)
axes[0].set_title("original", fontsize=9)
for ax in axes[1:]:
    ax.imshow(augment(image, rng)[0], cmap="gray", vmin=0, vmax=1)
    ax.set_title("augmented", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle("augmentation of a SYNTHETIC chest X-ray" if kind == "SYNTHETIC"
             else f"augmentation of a real chest X-ray: {splits.info['source']}", fontsize=10,
             color="darkred" if kind == "SYNTHETIC" else "black")
save(fig, OUT, "augmentation.png")

# %% [markdown]
# Normalisation: networks train best on inputs centred near 0 with spread near 1.
# The mean and standard deviation come from the **training** split only — the val
# and test images must not leak into any choice.

# %%
mean, std = float(train.images.mean()), float(train.images.std())
normalise = transforms.Normalize(mean, std)
print(f"training pixels: mean {mean:.3f}, std {std:.3f}; after Normalize: "
      f"mean {normalise(train.images[0]).mean():+.3f} for one image")

# %% [markdown]
# ## Class imbalance
#
# PneumoniaMNIST's training split is about 74% pneumonia; the share in the split
# used here is printed below. A lazy network that always answers "pneumonia" is
# right that often, and never clears a healthy child. Two remedies, both in `minicnn.data`:
#
# 1. **weight the loss**: `w_k = N / (K · n_k)`, so every class carries the same
#    total weight, passed as `cross_entropy(..., weight=w)`;
# 2. **resample**: draw each training image with probability ∝ 1 / (its class
#    size), so batches are balanced on average (`balanced_sampler`).

# %%
counts = train.class_counts()
w = class_weights(train.labels)
print(f"training counts {dict(zip(train.classes, counts.tolist()))}; "
      f"class weights {[round(float(v), 3) for v in w]}")
print(f"check: sum_k n_k w_k = {float((counts * w).sum()):.1f} = N = {counts.sum()}")
print(f"{counts[1] / counts.sum():.0%} of this training split is {train.classes[1]}: "
      "the accuracy of a network that always says so")

# The "always pneumonia" network: logits that favour class 1 for every image.
logits = minicnn.tensor(np.tile([[0.0, 2.0]], (len(train), 1)))
labels = minicnn.tensor(train.labels)
plain = F.cross_entropy(logits, labels).item()
weighted = F.cross_entropy(logits, labels, weight=minicnn.tensor(w)).item()
print(f"'always pneumonia': plain loss {plain:.3f}, weighted loss {weighted:.3f} "
      "(the weights make ignoring the minority class cost more)")

batch = 32
shares = {}
for name, loader in [("shuffle", DataLoader(train, batch_size=batch, shuffle=True, seed=0)),
                     ("balanced sampler", DataLoader(train, batch_size=batch, seed=0,
                                                     sampler=balanced_sampler(train.labels)))]:
    epochs = 5
    seen = np.concatenate([y.numpy() for e in range(epochs) for _, y in loader.batches(epoch=e)])
    shares[name] = np.bincount(seen, minlength=2) / seen.size
    print(f"{name:17s}: {epochs} epochs serve {seen.size} images, "
          f"{shares[name][1]:.0%} {train.classes[1]}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].bar(train.classes, counts, color=["#4a8", "#c64"])
axes[0].set_title("training images per class")
for k, (name, share) in enumerate(shares.items()):
    axes[1].bar(np.arange(2) + 0.38 * k, share, width=0.36, label=name)
axes[1].set_xticks(np.arange(2) + 0.19, train.classes)
axes[1].axhline(0.5, color="gray", lw=0.7, ls="--")
axes[1].set_title("class share of the batches served")
axes[1].legend()
fig.suptitle("class imbalance of the SYNTHETIC training split" if kind == "SYNTHETIC"
             else f"class imbalance of {splits.info['source']}", fontsize=10,
             color="darkred" if kind == "SYNTHETIC" else "black")
save(fig, OUT, "imbalance.png")
