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
# - what the first layer learned (its filters).
#
# Everything runs on minicnn alone: its layers, autograd, optimiser and kernels.
# The first run compiles minicnn's numba kernels (10–20 s, once).
# The same recipe, with checkpoints, resuming and a decision threshold (0.5, or chosen
# on validation with `--threshold val`), is `minicnn train` (`minicnn.xray.train.fit`).
#
# Run it: `python lessons/08_training.py [--quick] [--out FOLDER] [--data pneumoniamnist.npz]
# [--epochs N] [--device cpu|cuda-sim|cuda]`.
# Without `--data` it trains on minicnn's SYNTHETIC chest X-rays.

# %%
import inspect
from pathlib import Path

import numpy as np

import minicnn
from minicnn.xray import viz
from minicnn.optim import SGD
from minicnn.xray.train import Run, evaluate, resolve_config, train_step

from minicnn.lesson import setup, saved


def options(parser):
    parser.add_argument("--epochs", type=int, default=None, help="default 2 quick, 6 full")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda-sim or cuda")


args, OUT = setup("08_training", "Lesson 08: training the chest X-ray classifier",
                  options, data=True, compiles=True)
epochs = args.epochs or (2 if args.quick else 6)

# %% [markdown]
# ## Data and network
#
# 28 × 28 grey images (the size of PneumoniaMNIST), normalised with the training
# split's mean and standard deviation, augmented on the fly. The network is
# `ChestXrayCNN` (lesson 05): three conv–ReLU–maxpool stages and two linear layers.
# `minicnn.xray.train.Run` builds all of it from one set of settings — the data, the
# model, Adam with a cosine schedule, a class-weighted loss, the loader — exactly
# as `minicnn train` does; this lesson then drives it by hand. (`minicnn train` itself
# defaults to `chestxray_bn`, the same network with batch norm, and keeps the average of
# the last epochs' weights: `Run.fit`, which this lesson's loop stands in for.)

# %%
sizes = {"train": 96, "val": 48, "test": 48} if args.quick else None
run = Run(resolve_config(data=args.data, model="chestxray", image_size=28, epochs=epochs,
                         batch_size=32,
                         optimizer="adam", lr=2e-3, schedule="cosine", balance="weights",
                         synthetic_sizes=sizes, device=args.device, out=f"{OUT}/run"),
          progress=False)
model, loader, optimizer = run.model, run.loader, run.optimizer
train, val = run.splits.train, run.splits.val
kind = "SYNTHETIC" if run.splits.info["synthetic"] else "real"
print(f"data: {run.splits.info['source']} ({kind}); train {len(train)}, val {len(val)} images")
if args.quick:
    print("quick mode: a few steps only, to see the machinery; run without --quick to train")
print(f"{model.num_parameters():,d} parameters, device {args.device}, "
      f"class weights {[round(float(v), 3) for v in run.loss_weight.numpy()]}")

# %% [markdown]
# ## One step, dissected
#
# `train_step` (printed below, the one `minicnn train` runs) takes one batch. Forward
# gives logits (N, 2); cross-entropy turns them into one number; `backward()` fills
# every parameter's `.grad`; a step moves every parameter a little against its
# gradient (here plain SGD, `p -= lr * grad`). Run forward again on the same batch:
# the loss is lower.

# %%
package_root = Path(minicnn.__file__).parent.parent
print(f"{Path(inspect.getsourcefile(train_step)).relative_to(package_root)}:")
print(inspect.getsource(train_step))
x, y = next(loader.batches(epoch=0))
# run.loss is the class-weighted cross-entropy; the step's gradients stay in each p.grad
logits, before = train_step(model, run.loss, SGD(model.parameters(), lr=0.05), x, y)
print(f"batch x {x.shape}, y {y.shape} -> logits {logits.shape} -> loss {before:.4f}")
for name, p in model.named_parameters():
    g = p.grad.numpy()
    print(f"  {name:22s} {str(p.shape):16s} |grad| mean {np.abs(g).mean():.2e}")
with minicnn.no_grad():
    after = run.loss(model(x), y).item()
print(f"the same batch after one SGD step (lr 0.05): loss {before:.4f} -> {after:.4f}")

# %% [markdown]
# ## The loop
#
# An epoch is one pass over the training images in a fresh random order, with
# fresh augmentation, one step like the one above per batch. That loop is
# `Run.train_epoch` in `minicnn/xray/train.py`, the same code `minicnn train` runs; the
# lines printed here from the installed file show it calling `train_step` per batch.
# After each epoch the network is
# scored on the validation split in evaluation mode (no augmentation, no
# gradients; `minicnn.xray.train.evaluate`). ROC-AUC (lesson 09) is the chance that a
# random pneumonia image scores above a random normal one.

# %%
source, first = inspect.getsourcelines(Run.train_epoch)
start = next(k for k, line in enumerate(source) if "for b, (x, y)" in line)
stop = next(k for k, line in enumerate(source) if "train_step(" in line)
where = Path(inspect.getsourcefile(Run.train_epoch)).relative_to(package_root)
print(f"{where}, Run.train_epoch, lines {first + start}-{first + stop}:")
print("".join(source[start:stop + 1]))


class NeverStop:
    """train_epoch asks `stop.requested` after each batch (minicnn train sets it on Ctrl-C)."""
    requested = False


history = []
for epoch in range(epochs):
    lr = optimizer.param_groups[0]["lr"]
    record = run.train_epoch(epoch, NeverStop())          # every batch: forward, loss, backward, step
    run.scheduler.step()
    scores, probs = evaluate(model, val, run.mean, run.std, run.positive, device=args.device)
    record.update({"epoch": epoch + 1, "lr": lr, "val_loss": scores["loss"],
                   "val_auc": scores["auc"], "val_acc": float((probs.argmax(1) == val.labels).mean())})
    history.append(record)
    print(f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f} "
          f"acc {record['train_acc']:.3f} | val loss {record['val_loss']:.4f} "
          f"AUC {record['val_auc']:.3f} acc {record['val_acc']:.3f} | "
          f"{record['images_per_s']:.0f} images/s")

# %% [markdown]
# Reading the curves: both losses falling means the network is still learning. A
# training loss that keeps falling while the validation loss rises means it is
# memorising the training images (overfitting): stop there, or add augmentation,
# dropout or data. `minicnn train` keeps the epoch with the best validation AUC.

# %%
note = "SYNTHETIC data" if run.splits.info["synthetic"] else ""
saved(viz.training_curves(history, f"{OUT}/training_curves.png", note=note))

# %% [markdown]
# ## What the first layer learned
#
# The filters of the first convolution (their count and size are printed). Trained
# from random numbers, several look like the edge detectors of lesson 01 (a bright side and a dark side).

# %%
first = model.features[0].weight.numpy()
print(f"first layer: {first.shape[0]} filters of {first.shape[1]} x {first.shape[2]} x {first.shape[3]}")
saved(viz.filters(first, f"{OUT}/filters.png",
                  title="First-layer filters (red +, blue -)", note=note))

# %% [markdown]
# **Try it**: `--epochs 15`, `--device cuda-sim` (the CUDA kernels on the emulator:
# slow, same answers), or the real data: `--data pneumoniamnist.npz`.
