# %% [markdown]
# # Lesson 11 — Looking inside: feature maps and Grad-CAM
#
# **What this lesson teaches**
# - feature maps: what each convolutional stage of a trained ChestXrayCNN outputs
#   for one X-ray — edges first, then larger, more abstract patterns at lower
#   resolution;
# - Grad-CAM (`minicnn.xray.gradcam`): which regions of the image drove the pneumonia
#   score, from the gradient of that score with respect to the last feature maps;
# - occlusion: the same question answered by brute force — cover a patch, see how
#   much the score drops — as a check on Grad-CAM.
#
# Neither proves the network is right. They show where it looked, which is how one
# catches a network that learned a hospital's text marker instead of the lungs.
#
# Run it: `python lessons/11_looking_inside.py [--quick] [--out FOLDER] [--data pneumoniamnist.npz]`.
# It first trains a small ChestXrayCNN with `minicnn.xray.train.fit` (SYNTHETIC data by
# default: the pictures show synthetic opacities, not patients).

# %%
import numpy as np

import minicnn
from minicnn.xray import viz
from minicnn.xray.gradcam import grad_cam, split_at_last_conv
from minicnn.xray.train import normalise

from minicnn.lesson import setup, save, saved, train_classifier, plt

args, OUT = setup("11_looking_inside", "Lesson 11: feature maps, Grad-CAM and occlusion",
                  data=True, train=True)

# %%
result = train_classifier(args, OUT)
model, test, positive = result.model, result.splits.test, result.positive
note = "SYNTHETIC data" if result.splits.info["synthetic"] else ""
model.eval()
sick = np.flatnonzero(test.labels == positive)
image = test.images[sick[0]]                                  # (1, 28, 28) in [0, 1]
x = normalise(image[None], result.mean, result.std)           # as the network was trained

# %% [markdown]
# ## Feature maps
#
# Run the image through `model.features` one layer at a time and keep what each
# ReLU puts out (the shapes are printed below). Stage 1, at full resolution,
# responds to edges and brightness; the last stage, after two poolings, to larger
# regions. Bright = strongly active. Each panel is titled with its channel
# number, the panels ordered by how active the channel is on this image.

# %%
stages = []
h = minicnn.tensor(x)
with minicnn.no_grad():
    for i, layer in enumerate(model.features):
        h = layer(h)
        if type(layer).__name__ == "ReLU":
            stages.append((f"after features.{i} (ReLU)", h.numpy()[0]))
for name, maps in stages:
    active = (maps > 0).mean()
    print(f"{name}: {maps.shape[0]} maps of {maps.shape[1]}x{maps.shape[2]}, {active:.0%} of values > 0")

show = 8
for stage, (name, maps) in enumerate(stages, start=1):
    strength = maps.reshape(len(maps), -1).mean(axis=1)
    strongest = np.argsort(strength)[::-1][:show]         # channel numbers, most active first
    print(f"stage {stage}: the {show} most active channels, in order: {strongest.tolist()}")
    fig, axes = plt.subplots(1, show + 1, figsize=(1.5 * (show + 1), 2.1))
    axes[0].imshow(image[0], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=8)
    for rank, (ax, c) in enumerate(zip(axes[1:], strongest), start=1):
        ax.imshow(maps[c], cmap="magma", vmin=0)
        ax.set_title(f"channel {c}\n#{rank}, mean {strength[c]:.2f}", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"stage {stage} ({name}): the {show} most active of {len(maps)} channels, "
                 f"{maps.shape[1]}x{maps.shape[2]}" + (f" — {note}" if note else ""), fontsize=9,
                 color="darkred" if note else "black")
    save(fig, OUT, f"feature_maps_stage{stage}.png")

# %% [markdown]
# ## Grad-CAM
#
# For the pneumonia score y (a logit) and the last convolutional layer's maps A_k:
#
#     alpha_k = mean over (i, j) of  dy / dA_k[i, j]     how much map k pushes y up
#     cam     = ReLU( Σ_k alpha_k · A_k )                 where those maps are active
#
# then enlarged to the image size. `minicnn.xray.gradcam.grad_cam` gets dy/dA from the
# engine's own autograd: it cuts `model.features` after the last convolution's
# ReLU (so A are the maps that ReLU puts out; the cell prints where the cut
# falls), makes A a leaf that requires grad, runs the rest and calls `backward()`.

# %%
head, tail = split_at_last_conv(model)
print(f"the cut: head = features[0:{len(head)}], ending in "
      f"{' -> '.join(type(layer).__name__ for layer in list(head)[-2:])}; tail = "
      f"{' -> '.join(type(layer).__name__ for layer in tail) or 'nothing'}; then the classifier")
with minicnn.no_grad():
    A = head(minicnn.tensor(x))
print(f"A, the maps Grad-CAM weighs: {A.shape}, {float((A.numpy() >= 0).mean()):.0%} of them >= 0 "
      "(they come out of a ReLU)")
count = 4 if args.quick else 8
picks = np.concatenate([sick[:count // 2], np.flatnonzero(test.labels != positive)[:count // 2]])
batch = normalise(test.images[picks], result.mean, result.std)
cams, probs = grad_cam(model, batch, target_class=positive)
for k, i in enumerate(picks):
    hot = (cams[k] > 0.5).mean()
    print(f"test image {i:3d} ({test.classes[test.labels[i]]:9s}): P(pneumonia) "
          f"{probs[k, positive]:.2f}; {hot:.0%} of the image is above half the map's peak")
saved(viz.gradcam_grid(test.images[picks], cams, test.labels[picks], probs[:, positive],
                       test.classes, positive, f"{OUT}/gradcam.png", note=note))

# %% [markdown]
# ## Occlusion: a check that needs no gradients
#
# Slide a square over the image, replacing what it covers by its average (the
# detail goes, the brightness stays); wherever that lowers the pneumonia
# probability most, the network relied on what was there. It costs one
# forward pass per position, so it is slow for big images — Grad-CAM needs one
# forward and one backward — but it makes no assumptions.

# %%
patch, step = 7, (4 if args.quick else 2)
positions = [(r, c) for r in range(0, 28 - patch + 1, step) for c in range(0, 28 - patch + 1, step)]
covered = np.repeat(image[None], len(positions), axis=0)
for k, (r, c) in enumerate(positions):
    # fill with the patch's own mean: the detail goes, the brightness stays
    covered[k, 0, r:r + patch, c:c + patch] = image[0, r:r + patch, c:c + patch].mean()
with minicnn.no_grad():
    base = minicnn.functional.softmax(model(minicnn.tensor(x)), dim=1).numpy()[0, positive]
    scores = minicnn.functional.softmax(
        model(minicnn.tensor(normalise(covered, result.mean, result.std))), dim=1).numpy()[:, positive]
drop = np.zeros((28, 28))
hits = np.zeros((28, 28))
for (r, c), s in zip(positions, scores):
    drop[r:r + patch, c:c + patch] += base - s
    hits[r:r + patch, c:c + patch] += 1
drop /= np.maximum(hits, 1)
cam0 = grad_cam(model, x, target_class=positive)[0][0]
print(f"P(pneumonia) {base:.2f}; the largest drop when a patch is covered: {drop.max():.3f}")
if cam0.std() > 0 and drop.std() > 0:
    agree = np.corrcoef(drop.ravel(), cam0.ravel())[0, 1]
    print(f"correlation of the occlusion map with Grad-CAM: {agree:+.2f}")
else:
    print("one of the maps is flat (an untrained network looks nowhere in particular): "
          "train longer, without --quick")

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax in axes:
    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
axes[0].set_title("X-ray", fontsize=9)
axes[1].imshow(cam0, cmap="jet", alpha=0.45, vmin=0, vmax=1)
axes[1].set_title("Grad-CAM", fontsize=9)
lim = max(np.abs(drop).max(), 1e-6)
axes[2].imshow(drop, cmap="RdBu_r", alpha=0.6, vmin=-lim, vmax=lim)
axes[2].set_title("occlusion: score drop (red) or rise (blue)", fontsize=9)
if note:
    fig.suptitle("Grad-CAM and occlusion on a SYNTHETIC test image", fontsize=10, color="darkred")
save(fig, OUT, "occlusion.png")

# %% [markdown]
# ## Reading the maps with care
#
# Grad-CAM here is a map the size of A (printed above) blown up to the size of
# the image: it points at regions, not pixels. Where it and the occlusion map
# agree, and both sit on the lung opacities,
# the network is using what a radiologist would. Where they light up outside the
# lungs — the heart, the diaphragm, a corner — the network has found some other
# difference between the classes in this data set, and that is worth knowing before
# anyone trusts its score. On real X-rays the classic finding is a network that
# reads the hospital's text marker or the portable-film look of sicker patients.
