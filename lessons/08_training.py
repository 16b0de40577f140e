# %% [markdown]
# # Lesson 08 — Training the chest X-ray classifier
#
# **What this lesson teaches**
# - the training loop, written out: mini-batch → forward → loss → backward →
#   optimiser step, repeated over epochs;
# - what one step does (the loss on the same batch goes down) and what the
#   gradients look like layer by layer;
# - watching training: loss and accuracy on train, loss and ROC-AUC on validation,
#   and what overfitting looks like;
# - what the first layer learned (its 3 × 3 filters).
#
# Everything runs on minicnn alone: its layers, autograd, optimiser and kernels.
# The same recipe, with checkpoints, resuming and a threshold chosen on validation,
# is `minicnn train` (`minicnn.train.fit`).
#
# Run it: `python lessons/08_training.py [--quick] [--out FOLDER] [--data pneumoniamnist.npz]
# [--epochs N] [--device cpu|cuda-sim|cuda]`.
# Without `--data` it trains on minicnn's SYNTHETIC chest X-rays.

# %%
import time

import numpy as np

import minicnn
from minicnn import functional as F, viz
from minicnn.data import DataLoader, class_weights, open_splits, transforms
from minicnn.nn.models import ChestXrayCNN
from minicnn.optim import SGD, Adam, CosineAnnealingLR
from minicnn.train import evaluate

from minicnn.lesson import setup, saved


def options(parser):
    parser.add_argument("--epochs", type=int, default=None, help="default 2 quick, 6 full")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda-sim or cuda")


args, OUT = setup("08_training", "Lesson 08: training the chest X-ray classifier",
                  options, data=True)
epochs = args.epochs or (2 if args.quick else 6)
minicnn.manual_seed(0)

# %% [markdown]
# ## Data and network
#
# 28 × 28 grey images (the size of PneumoniaMNIST), normalised with the training
# split's mean and standard deviation, augmented on the fly. The network is
# `ChestXrayCNN` (lesson 05): three conv–ReLU–maxpool stages and two linear layers.

# %%
sizes = {"train": 96, "val": 48, "test": 48} if args.quick else None
splits = open_splits(args.data, image_size=28, synthetic_sizes=sizes)
train, val = splits.train, splits.val
kind = "SYNTHETIC" if splits.info["synthetic"] else "real"
print(f"data: {splits.info['source']} ({kind}); train {len(train)}, val {len(val)} images")
if args.quick and not splits.info["synthetic"]:
    keep = np.random.default_rng(0).permutation(len(train))[:512]     # a taste of the real set
    train = type(train)(train.images[keep], train.labels[keep], train.classes, name=train.name)
    print(f"quick mode: training on {len(train)} of the images")

mean, std = float(train.images.mean()), float(train.images.std())
train_set = train.with_transform(transforms.Compose(
    transforms.augmentation() + [transforms.Normalize(mean, std)]))
loader = DataLoader(train_set, batch_size=32, shuffle=True, seed=0, device=args.device)

model = ChestXrayCNN(in_channels=1, num_classes=2, image_size=28).to(args.device)
weight = minicnn.tensor(class_weights(train.labels, 2), device=args.device)
optimizer = Adam(model.parameters(), lr=2e-3)
schedule = CosineAnnealingLR(optimizer, T_max=epochs)
if args.quick:
    print("quick mode: a few steps only, to see the machinery; run without --quick to train")
print(f"{model.num_parameters():,d} parameters, device {args.device}, "
      f"class weights {[round(float(v), 3) for v in weight.numpy()]}")

# %% [markdown]
# ## One step, dissected
#
# Take one batch. Forward gives logits (N, 2); cross-entropy turns them into one
# number; `backward()` fills every parameter's `.grad`; a step moves every
# parameter a little against its gradient (here plain SGD, `p -= lr * grad`). Run
# forward again on the same batch: the loss is lower.

# %%
x, y = next(loader.batches(epoch=0))
logits = model(x)
loss = F.cross_entropy(logits, y, weight=weight)
optimizer.zero_grad()
loss.backward()
print(f"batch x {x.shape}, y {y.shape} -> logits {logits.shape} -> loss {loss.item():.4f}")
for name, p in model.named_parameters():
    g = p.grad.numpy()
    print(f"  {name:22s} {str(p.shape):16s} |grad| mean {np.abs(g).mean():.2e}")
SGD(model.parameters(), lr=0.05).step()
with minicnn.no_grad():
    after = F.cross_entropy(model(x), y, weight=weight).item()
print(f"the same batch after one SGD step (lr 0.05): loss {loss.item():.4f} -> {after:.4f}")

# %% [markdown]
# ## The loop
#
# An epoch is one pass over the training images in a fresh random order, with
# fresh augmentation. After each, the network is scored on the validation split in
# evaluation mode (no augmentation, no gradients; `minicnn.train.evaluate`). ROC-AUC
# (lesson 09) is the chance that a random pneumonia image scores above a random
# normal one.

# %%
def validation_scores():
    """(loss, ROC-AUC, accuracy) on the validation split, in evaluation mode."""
    scores, probs = evaluate(model, val, np.float32([mean]), np.float32([std]), positive=1,
                             device=args.device)
    model.train()
    return scores["loss"], scores["auc"], float((probs.argmax(1) == val.labels).mean())


history = []
for epoch in range(epochs):
    model.train()
    start, total, correct, seen = time.perf_counter(), 0.0, 0, 0
    for x, y in loader.batches(epoch=epoch):
        logits = model(x)
        loss = F.cross_entropy(logits, y, weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * y.shape[0]
        correct += int((logits.numpy().argmax(1) == y.numpy()).sum())
        seen += y.shape[0]
    schedule.step()
    val_loss, val_auc, val_acc = validation_scores()
    history.append({"epoch": epoch + 1, "train_loss": total / seen, "train_acc": correct / seen,
                    "val_loss": val_loss, "val_auc": val_auc, "val_acc": val_acc})
    print(f"epoch {epoch + 1}/{epochs}: train loss {total / seen:.4f} acc {correct / seen:.3f} | "
          f"val loss {val_loss:.4f} AUC {val_auc:.3f} acc {val_acc:.3f} | "
          f"{seen / (time.perf_counter() - start):.0f} images/s")

# %% [markdown]
# Reading the curves: both losses falling means the network is still learning. A
# training loss that keeps falling while the validation loss rises means it is
# memorising the training images (overfitting): stop there, or add augmentation,
# dropout or data. `minicnn train` keeps the epoch with the best validation AUC.

# %%
note = "SYNTHETIC data" if splits.info["synthetic"] else ""
saved(viz.training_curves(history, f"{OUT}/training_curves.png", note=note))

# %% [markdown]
# ## What the first layer learned
#
# The 16 filters of the first convolution, each 3 × 3. Trained from random numbers,
# several look like the edge detectors of lesson 01 (a bright side and a dark side).

# %%
saved(viz.filters(model.features[0].weight.numpy(), f"{OUT}/filters.png",
                  title="First-layer filters (red +, blue -)", note=note))

# %% [markdown]
# **Try it**: `--epochs 15`, `--device cuda-sim` (the CUDA kernels on the emulator:
# slow, same answers), or the real data: `--data pneumoniamnist.npz`.
