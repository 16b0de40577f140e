# %% [markdown]
# # Lesson 05 — Architecture: shapes, parameters, FLOPs
#
# **What this lesson teaches**
# - how a CNN is put together from the layers of lessons 01–03: `minicnn.nn`'s
#   `Conv2d`, `ReLU`, `MaxPool2d`, `Flatten`, `Linear`, in a `Sequential`;
# - the networks of `minicnn.nn.models`: `ChestXrayCNN` (the project's pneumonia
#   classifier, 28 × 28 grey images; `ChestXrayBN`, the default of `minicnn train`, is
#   the same with a batch norm after each convolution, end of this lesson) and `AlexNet`
#   (227 × 227 colour images, 2012);
# - the shape of the data after every layer, from the formula
#   `Ho = (H + 2p − k) // s + 1`, checked by running the network;
# - where the parameters are (mostly the fully connected layers) and where the work
#   is (mostly the convolutions);
# - batch normalisation (`nn.BatchNorm2d`): its forward and backward, and why it
#   behaves differently in training and in evaluation (running statistics).
#
# Run it: `python lessons/05_architecture.py [--quick] [--out FOLDER]`.
#
# Counting: a `Conv2d(C, F, k)` has `F·C·k·k + F` parameters and does
# `F·C·k·k` multiply-adds for each of its `Ho·Wo` output pixels. A `Linear(In, Out)`
# has `Out·In + Out` parameters and does `Out·In` multiply-adds. One multiply-add is
# two floating-point operations (FLOPs).

# %%
import numpy as np

import minicnn
from minicnn import nn
from minicnn.nn.models import ChestXrayCNN, AlexNet

from minicnn.lesson import setup, save, plt

args, OUT = setup("05_architecture", "Lesson 05: the layers of ChestXrayCNN and AlexNet")

# %% [markdown]
# ## Walking through a network, layer by layer
#
# Both models are `features` (the convolutional part) followed by `classifier`
# (flatten and fully connected layers). We compute each layer's output shape from
# its settings, count its parameters and multiply-adds, and — where cheap enough —
# run an image through to check the shapes.

# %%
def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def layer_table(model, image_shape):
    """One row per layer: name, output shape (C, H, W) or (features,), params, MACs."""
    rows, shape = [], image_shape
    for part in ("features", "classifier"):
        for i, layer in enumerate(getattr(model, part)):
            params = sum(p.numel() for p in layer.parameters())
            macs = 0
            if isinstance(layer, nn.Conv2d):
                (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
                C, H, W = shape
                shape = (layer.out_channels, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)
                macs = layer.out_channels * C * kh * kw * shape[1] * shape[2]
            elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
                (k, _), (s, _), (p, _) = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
                C, H, W = shape
                shape = (C, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1)
            elif isinstance(layer, nn.Flatten):
                shape = (int(np.prod(shape)),)
            elif isinstance(layer, nn.Linear):
                shape = (layer.out_features,)
                macs = layer.in_features * layer.out_features
            rows.append((f"{part}.{i} {type(layer).__name__}", shape, params, macs))
    return rows


def print_table(title, rows):
    print(f"\n{title}")
    print(f"{'layer':28s} {'output shape':>16s} {'parameters':>12s} {'MFLOPs':>10s}")
    for name, shape, params, macs in rows:
        print(f"{name:28s} {str(shape):>16s} {params:12,d} {2 * macs / 1e6:10.2f}")
    total_p = sum(r[2] for r in rows)
    total_f = 2 * sum(r[3] for r in rows)
    print(f"{'total':28s} {'':>16s} {total_p:12,d} {total_f / 1e6:10.2f}")
    return total_p, total_f


minicnn.manual_seed(0)
chest = ChestXrayCNN(in_channels=1, num_classes=2, image_size=28)
chest_rows = layer_table(chest, (1, 28, 28))
print_table("ChestXrayCNN, input (1, 28, 28)", chest_rows)
print("parameters (minicnn's own count):", f"{chest.num_parameters():,d}")

with minicnn.no_grad():
    x = minicnn.randn(2, 1, 28, 28)
    h = chest.features(x)
    print(f"\nrun it: features {x.shape} -> {h.shape}; classifier -> {chest.classifier(h).shape}")
    assert h.shape[1:] == chest_rows[len(chest.features) - 1][1], "formula and run disagree"

# %% [markdown]
# AlexNet is much bigger. Its first convolution, with a large kernel and a large
# stride (printed below), shrinks the 227 × 227 image at once. Note how the three fully connected layers
# hold almost all the parameters, while the convolutions do almost all the work.

# %%
alex = AlexNet(in_channels=3, num_classes=2, image_size=227)
alex_rows = layer_table(alex, (3, 227, 227))
first = alex.features[0]
print(f"AlexNet's first convolution: kernel {first.kernel_size}, stride {first.stride}: "
      f"(3, 227, 227) -> {alex_rows[0][1]}")
alex_p, alex_f = print_table("AlexNet, input (3, 227, 227)", alex_rows)
conv_share = sum(r[3] for r in alex_rows if "Conv2d" in r[0]) * 2 / alex_f
fc_share = sum(r[2] for r in alex_rows if "Linear" in r[0]) / alex_p
print(f"\nconvolutions do {conv_share:.0%} of AlexNet's FLOPs; "
      f"linear layers hold {fc_share:.0%} of its parameters")
if not args.quick:
    with minicnn.no_grad():
        h = alex.features(minicnn.randn(1, 3, 227, 227))
    print(f"run it: AlexNet features (1, 3, 227, 227) -> {h.shape}")
    assert h.shape[1:] == alex_rows[len(alex.features) - 1][1], "formula and run disagree"

# %% [markdown]
# ## The receptive field
#
# Each output pixel of a layer "sees" a square of the input image, which grows with
# every convolution and pooling: `r_out = r_in + (k − 1)·j_in`, where `j` (the jump)
# is the product of the strides so far.

# %%
def receptive_fields(model):
    r, j, out = 1, 1, []
    for i, layer in enumerate(model.features):
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _pair(layer.kernel_size)[0], _pair(layer.stride)[0]
            r, j = r + (k - 1) * j, j * s
            out.append((f"features.{i} {type(layer).__name__}", r))
    return out


for name, rf in receptive_fields(chest):
    print(f"ChestXrayCNN {name:24s} sees {rf:3d} x {rf:<3d} input pixels")

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 7))
for col, (title, rows) in enumerate([("ChestXrayCNN", chest_rows), ("AlexNet", alex_rows)]):
    rows = [r for r in rows if r[2] or r[3]]                # layers that have weights
    names = [r[0].split(" ")[0] + "\n" + r[0].split(" ")[1] for r in rows]
    axes[0, col].bar(names, [r[2] for r in rows], color="#48c")
    axes[0, col].set_title(f"{title}: parameters per layer")
    axes[1, col].bar(names, [2 * r[3] / 1e6 for r in rows], color="#c84")
    axes[1, col].set_title(f"{title}: MFLOPs per image, per layer")
    for ax in axes[:, col]:
        ax.tick_params(axis="x", labelsize=7)
fig.tight_layout()
save(fig, OUT, "params_and_flops.png")

# %% [markdown]
# ## One thing `Sequential` does for speed: Conv2d + ReLU (+ MaxPool2d) as one op
#
# A ReLU after a convolution reads the whole feature map and writes it again, for
# nothing but `max(y, 0)`; a 2x2 max-pool after it reads the map once more. When a
# `Sequential` meets a `Conv2d` followed by a `ReLU` it runs the two as one op,
# `F.conv2d_relu`, and with a `MaxPool2d(2)` after them the three, `F.conv2d_relu_pool`:
# the convolution's kernel applies the ReLU and keeps each 2x2 window's maximum as it
# writes its output, so the full-size map is never written; backward sends each
# gradient to the position the window picked as it reads it. `fusions()` lists what
# runs fused, and `print(chest.features)` marks it. The numbers agree with running
# the layers one by one:

# %%
from minicnn import functional as F

print(chest.features.fusions())
x = minicnn.randn(8, 1, 28, 28)
fused_calls, conv2d_relu_pool = [], F.conv2d_relu_pool
F.conv2d_relu_pool = lambda x, w, *rest, **kw: fused_calls.append(tuple(w.shape)) or \
    conv2d_relu_pool(x, w, *rest, **kw)                  # count the fused calls, then do them
try:
    fused = chest.features(x).numpy()
finally:
    F.conv2d_relu_pool = conv2d_relu_pool
print(f"Sequential ran F.conv2d_relu_pool {len(fused_calls)} times, weights {fused_calls}")
y = x
for layer in chest.features:                     # the same layers, one call each
    y = layer(y)
print(f"Sequential (fused) vs layer by layer: largest difference "
      f"{np.abs(fused - y.numpy()).max():.1e}")

# %% [markdown]
# ## Batch normalisation
#
# Deep networks train faster when every layer sees inputs of a steady size.
# `nn.BatchNorm2d(C)`, placed after a convolution, normalises each channel c over
# the batch and the image (the N·H·W values of that channel), then lets the
# network rescale it with two learned numbers per channel, γ (`weight`) and
# β (`bias`):
#
#     μ_c = mean of x[:, c],   σ²_c = mean of (x[:, c] − μ_c)²     (the biased variance)
#     x̂ = (x − μ_c) / √(σ²_c + ε),    y = γ_c · x̂ + β_c
#
# It is `minicnn.functional.batch_norm`, and the module `nn.BatchNorm2d`
# (`minicnn/nn/norm.py`). First, the forward pass by hand against the engine's, in
# training mode (in float64, so that the two agree to the last digits):

# %%
from minicnn import functional as F

rng = np.random.default_rng(5)
xb = (rng.standard_normal((8, 3, 5, 4)) * [[[[2.0]], [[0.5]], [[4.0]]]] + 3.0)   # 3 channels
x_bn = minicnn.tensor(xb, requires_grad=True, dtype=np.float64)       # float64: exact checks
gamma_t = minicnn.tensor([1.5, 0.5, 2.0], requires_grad=True, dtype=np.float64)  # as if trained
beta_t = minicnn.tensor([0.1, -0.2, 0.3], requires_grad=True, dtype=np.float64)
eps = 1e-5
y_bn = F.batch_norm(x_bn, np.zeros(3), np.ones(3), gamma_t, beta_t, training=True, eps=eps)
mu, var = xb.mean(axis=(0, 2, 3)), xb.var(axis=(0, 2, 3))
gamma, beta = gamma_t.numpy(), beta_t.numpy()
xhat = (xb - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps)
by_hand = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
print(f"channel means before {np.round(mu, 2)}, stds {np.round(np.sqrt(var), 2)}")
print(f"after: means {np.round(y_bn.numpy().mean(axis=(0, 2, 3)), 3)} (= beta), "
      f"stds {np.round(y_bn.numpy().std(axis=(0, 2, 3)), 3)} (= gamma)")
print(f"forward by hand vs minicnn: largest difference {np.abs(by_hand - y_bn.numpy()).max():.1e}")

# %% [markdown]
# **Backward.** Every x̂ of a channel depends on every x of that channel through
# μ and σ², so the gradient is not just γ/σ. With M = N·H·W values per channel and
# g = dL/dy:
#
#     dL/dβ = Σ g,        dL/dγ = Σ g · x̂               (sums over the M values of the channel)
#     dL/dx = γ / (M·√(σ² + ε)) · ( M·g − Σ g − x̂ · Σ (g · x̂) )
#
# Read it as: the plain γ/σ·g, minus its mean (μ moved with x), minus its part
# along x̂ (σ moved with x). Checked against the engine's autograd:

# %%
g = rng.standard_normal(xb.shape)
(y_bn * minicnn.tensor(g, dtype=np.float64)).sum().backward()
M = xb.size // 3
sums = lambda a: a.sum(axis=(0, 2, 3))[None, :, None, None]          # noqa: E731
gx_hand = gamma[None, :, None, None] / (M * np.sqrt(var[None, :, None, None] + eps)) * \
    (M * g - sums(g) - xhat * sums(g * xhat))
for name, hand, engine in [("dL/dx", gx_hand, x_bn.grad.numpy()),
                           ("dL/dgamma", (g * xhat).sum(axis=(0, 2, 3)), gamma_t.grad.numpy()),
                           ("dL/dbeta", g.sum(axis=(0, 2, 3)), beta_t.grad.numpy())]:
    print(f"{name:9s} by hand vs minicnn: largest difference "
          f"{np.abs(hand - engine).max() / np.abs(engine).max():.1e} of its largest value")

# %% [markdown]
# **Training vs evaluation.** At test time there may be one image, and its score
# must not depend on which other images share its batch. So, while training, the
# layer keeps running estimates of each channel's mean and variance:
#
#     running = (1 − momentum) · running + momentum · (this batch's value)
#
# (`momentum` is the layer's setting, 0.1 by default as in PyTorch; the running
# variance takes the unbiased batch variance, M/(M − 1) · σ², as PyTorch does),
# and `model.eval()` switches the layer to use them in place of the batch's.
# `model.train()` switches back. Forgetting `eval()` before testing is a
# classic bug: the scores then change with the batch.

# %%
xb = xb.astype(np.float32)                            # a layer's parameters are float32
bn2 = nn.BatchNorm2d(3)
running_mean, running_var = np.zeros(3), np.ones(3)
bn2.train()
for step in range(5):                                 # five training batches
    batch = xb[rng.permutation(8)[:4]]
    bn2(minicnn.tensor(batch))
    batch = batch.astype(np.float64)
    m_b = batch.shape[0] * batch.shape[2] * batch.shape[3]
    mom = bn2.momentum
    running_mean = (1 - mom) * running_mean + mom * batch.mean(axis=(0, 2, 3))
    running_var = (1 - mom) * running_var + mom * batch.var(axis=(0, 2, 3)) * m_b / (m_b - 1)


def as_array(v):
    return v.numpy() if hasattr(v, "numpy") else np.asarray(v)


print(f"momentum {bn2.momentum}; running mean after 5 batches: by hand {np.round(running_mean, 4)}, "
      f"minicnn {np.round(as_array(bn2.running_mean), 4)}")
print(f"running var  after 5 batches: by hand {np.round(running_var, 4)}, "
      f"minicnn {np.round(as_array(bn2.running_var), 4)}")
one = minicnn.tensor(xb[:1])
with minicnn.no_grad():
    bn2.eval()
    alone = bn2(one).numpy()
    in_batch = bn2(minicnn.tensor(xb)).numpy()[:1]
    bn2.train()
    train_alone = bn2(minicnn.tensor(xb[:2])).numpy()[:1]
    train_batch = bn2(minicnn.tensor(xb)).numpy()[:1]
print(f"eval mode: image 0 alone vs in a batch of 8 differs by {np.abs(alone - in_batch).max():.1e}")
print(f"train mode: image 0 in a batch of 2 vs of 8 differs by "
      f"{np.abs(train_alone - train_batch).max():.2f} (the batch's own statistics)")

# %% [markdown]
# ## The default network: ChestXrayBN
#
# `minicnn train` trains `ChestXrayBN`: ChestXrayCNN with a `BatchNorm2d` after each
# convolution (whose bias it drops: the batch norm subtracts each channel's mean and
# adds its own shift). There the batch norm, the ReLU and the max-pool run as one op,
# `F.batch_norm_relu_pool`:

# %%
from minicnn.nn.models import ChestXrayBN

bn_net = ChestXrayBN(in_channels=1, num_classes=2, image_size=28)
print(bn_net.features)
print(f"{bn_net.num_parameters():,d} parameters (ChestXrayCNN: {chest.num_parameters():,d})")
