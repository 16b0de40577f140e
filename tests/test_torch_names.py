"""PyTorch's names in minicnn mean what they mean in PyTorch: each one run in both libraries.

Tensor methods and top-level functions go forward and backward on every device and
are compared with torch (values, gradients, shapes, index dtypes); the data utilities
are compared with torch.utils.data where PyTorch's result is not random.
"""
import re

import numpy as np
import pytest

import minicnn
from minicnn.utils import data as mdata

torch = pytest.importorskip("torch", reason="compared with PyTorch")

A = np.array([[[0.5, -1.0, 2.0, 2.0], [3.0, 0.0, -2.0, 1.0], [1.0, 1.0, 1.0, -4.0]],
              [[2.0, 0.5, 0.5, -1.0], [-3.0, 4.0, 0.0, 4.0], [0.0, 2.0, -1.0, 3.0]]],
             np.float32)       # (2, 3, 4), with ties


def _both(fn, arrays, device):
    """fn(lib, *tensors) in minicnn (on device) and torch; values and input grads compared."""
    ours = [minicnn.tensor(a, requires_grad=True, device=device) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = fn(minicnn, *ours), fn(torch, *theirs)
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    weights = np.linspace(-1, 1, max(y.numpy().size, 1)).reshape(y.shape).astype(np.float32)
    (y * minicnn.tensor(weights, device=device)).sum().backward()
    (ty * torch.from_numpy(weights)).sum().backward()
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)


CASES = {
    "sum dim": lambda L, x: x.sum(dim=1),
    "sum dims keepdim": lambda L, x: x.sum(dim=(0, 2), keepdim=True),
    "mean dim -1": lambda L, x: x.mean(-1),
    "mean keepdim": lambda L, x: x.mean(1, keepdim=True) * 3.0,
    "max values dim": lambda L, x: x.max(dim=2)[0],
    "max values keepdim": lambda L, x: x.max(1, keepdim=True).values,
    "min values": lambda L, x: x.min(0)[0],
    "torch.max(t, dim)": lambda L, x: L.max(x, 1)[0] * 2.0,
    "torch.max(t)": lambda L, x: L.max(x) + x.sum(),
    "permute": lambda L, x: x.permute(2, 0, 1) * 1.5,
    "permute negative": lambda L, x: x.permute(-1, -3, -2).sum(dim=0),
    "unsqueeze/squeeze": lambda L, x: x.unsqueeze(1).unsqueeze(-1).squeeze(-1).squeeze(1),
    "squeeze one dim": lambda L, x: x[:, :1].squeeze(1) + x[:, 1],
    "view -1": lambda L, x: x.view(-1, 4)[1:] * 2.0,
    "clone": lambda L, x: x.clone() * x,
    "cat": lambda L, x: L.cat([x, x * 2.0, x[:, :1]], dim=1),
    "cat negative dim": lambda L, x: L.cat([x, -x], dim=-1),
    "stack": lambda L, x: L.stack([x[0], x[1] * 3.0], dim=1),
    "stack last": lambda L, x: L.stack([x, x], dim=-1).sum(dim=-1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tensor_names_forward_and_backward_as_torch(backend, name):
    _both(CASES[name], [A], backend)


@pytest.mark.parametrize("dim, keepdim", [(0, False), (1, True), (-1, False), (2, True)])
def test_max_min_argmax_indices_are_torchs(backend, dim, keepdim):
    x, t = minicnn.tensor(A, device=backend), torch.from_numpy(A)
    for name in ("max", "min"):
        values, indices = getattr(x, name)(dim, keepdim=keepdim)
        tv, ti = getattr(t, name)(dim, keepdim=keepdim)
        assert indices.dtype == np.int64 and tuple(indices.shape) == tuple(ti.shape)
        np.testing.assert_array_equal(indices.numpy(), ti.numpy())
        np.testing.assert_array_equal(values.numpy(), tv.numpy())
    np.testing.assert_array_equal(x.argmax(dim, keepdim=keepdim).numpy(),
                                  t.argmax(dim, keepdim=keepdim).numpy())
    assert x.argmax().item() == t.argmax().item()


def test_the_tutorial_accuracy_lines_count(backend):
    outputs = minicnn.tensor(A[:, :, :2].reshape(6, 2), device=backend)
    labels = minicnn.tensor([0, 1, 1, 0, 0, 1], device=backend)
    _, predicted = minicnn.max(outputs.data, 1)
    t_out, t_lab = torch.from_numpy(A[:, :, :2].reshape(6, 2)), torch.tensor([0, 1, 1, 0, 0, 1])
    _, t_pred = torch.max(t_out.data, 1)
    assert (predicted == labels).sum().item() == (t_pred == t_lab).sum().item()
    assert isinstance((predicted == labels).sum().item(), int)
    assert len(labels) == t_lab.size(0) and outputs.dim() == t_out.dim()


def test_reductions_refuse_dim_and_axis_together():
    with pytest.raises(TypeError, match="dim .* or axis"):
        minicnn.tensor(A).sum(dim=0, axis=1)


def test_permute_and_cat_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        minicnn.tensor(A).permute(0, 0, 1)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(2, 2, 1\) differ outside dim 2"):
        minicnn.cat([minicnn.tensor(A), minicnn.tensor(A[:, :2, :1])], dim=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        minicnn.max(torch.zeros(2), 0)


def test_dtypes_and_devices_under_torchs_names():
    assert minicnn.tensor([1, 2]).dtype == minicnn.int64
    assert minicnn.tensor([1.5]).float().dtype == minicnn.float32
    assert minicnn.tensor([1.5]).to(minicnn.float64).dtype == minicnn.float64
    assert minicnn.device("cuda:0") == "cuda" and minicnn.device("cpu") == "cpu"
    assert minicnn.cuda.is_available() in (True, False)
    assert minicnn.from_numpy(np.arange(3, dtype=np.int32)).dtype == np.int32


# --------------------------------------------------------------------------- utils.data

class Squares(mdata.Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return np.full((1, 2, 2), i, np.float32), i


def test_default_collate_follows_torchs_rules():
    from torch.utils.data import default_collate as torch_collate
    samples = [(np.full((2,), i, np.float32), i, float(i) / 2, {"k": i}) for i in range(3)]
    ours, theirs = mdata.default_collate(samples), torch_collate(samples)
    assert isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs)
    for o, t in zip(ours[:3], theirs[:3]):
        assert np.dtype(o.dtype) == np.dtype(str(t.dtype).replace("torch.", ""))
        np.testing.assert_array_equal(o.numpy(), t.numpy())
    np.testing.assert_array_equal(ours[3]["k"].numpy(), theirs[3]["k"].numpy())


def test_dataloader_over_getitem_batches_and_reshuffles_each_epoch():
    minicnn.manual_seed(3)
    loader = mdata.DataLoader(Squares(), batch_size=3, shuffle=True)
    assert len(loader) == 3 == len(torch.utils.data.DataLoader(list(range(7)), batch_size=3))
    first = [labels.tolist() for _, labels in loader]
    second = [labels.tolist() for _, labels in loader]
    assert sorted(sum(first, [])) == list(range(7)) and first != second
    images, labels = next(iter(mdata.DataLoader(Squares(), batch_size=4, drop_last=True)))
    assert images.shape == (4, 1, 2, 2) and images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 3]
    minicnn.manual_seed(3)
    again = [labels.tolist() for _, labels in mdata.DataLoader(Squares(), batch_size=3,
                                                                shuffle=True)]
    assert again == first, "manual_seed fixes the order, as torch.manual_seed does"


def test_tensor_dataset_random_split_subset_and_samplers():
    x = minicnn.tensor(np.arange(20, dtype=np.float32).reshape(10, 2))
    y = minicnn.tensor(np.arange(10))
    ds = mdata.TensorDataset(x, y)
    row = ds[3]
    assert row[0].tolist() == [6.0, 7.0] and row[1].item() == 3
    with pytest.raises(ValueError, match=r"\(10, 2\).*\(3,\)"):
        mdata.TensorDataset(x, minicnn.tensor([1, 2, 3]))
    for lengths in ([0.7, 0.3], [0.33, 0.33, 0.34], [3, 7]):
        ours = [len(s) for s in mdata.random_split(ds, lengths, generator=0)]
        theirs = [len(s) for s in torch.utils.data.random_split(range(10), lengths)]
        assert ours == theirs
    parts = mdata.random_split(ds, [4, 6], generator=1)
    seen = sorted(int(parts[k][i][1].item()) for k in range(2) for i in range(len(parts[k])))
    assert seen == list(range(10))
    with pytest.raises(ValueError, match="sum"):
        mdata.random_split(ds, [4, 5])
    weights = np.r_[np.zeros(5), np.ones(5)]
    sampler = mdata.WeightedRandomSampler(weights, num_samples=50)
    drawn = [int(lab) for _, labels in mdata.DataLoader(ds, batch_size=10, sampler=sampler)
             for lab in labels.tolist()]
    assert len(drawn) == 50 and min(drawn) >= 5
    order = [labels.tolist() for _, labels in
             mdata.DataLoader(ds, batch_size=5, sampler=mdata.SequentialSampler(ds))]
    assert order == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_dataloader_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="batch_sampler"):
        mdata.DataLoader(Squares(), batch_sampler=[[0, 1]])
    with pytest.raises(TypeError, match="__getitem__"):
        mdata.DataLoader(object())
    with pytest.raises(TypeError, match="torch.Generator"):
        mdata.DataLoader(Squares(), generator=torch.Generator())


# --------------------------------------------------------------------------- nn modules

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 1.5], [0.0, 0.0, 0.0]],
                  np.float32)
LABELS = np.array([0, 2, 1, 1])
CLASS_WEIGHTS = np.array([0.5, 2.0, 1.0], np.float32)

LOSSES = {
    "CrossEntropyLoss": lambda L: L.nn.CrossEntropyLoss(),
    "CrossEntropyLoss weighted smoothing": lambda L: L.nn.CrossEntropyLoss(
        weight=L.tensor(CLASS_WEIGHTS), label_smoothing=0.2),
    "CrossEntropyLoss ignore sum": lambda L: L.nn.CrossEntropyLoss(ignore_index=1,
                                                                   reduction="sum"),
    "CrossEntropyLoss none": lambda L: L.nn.CrossEntropyLoss(reduction="none"),
    "NLLLoss weighted": lambda L: L.nn.NLLLoss(weight=L.tensor(CLASS_WEIGHTS)),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_modules_are_torchs(backend, name):
    ours, theirs = LOSSES[name](minicnn), LOSSES[name](torch)
    if backend != "cpu":
        ours = ours.to(backend)
    target = minicnn.tensor(LABELS, device=backend)

    def run(L, module, x, t):
        x = L.nn.functional.log_softmax(x, dim=1) if "NLL" in name else x
        return module(x, t)
    _both(lambda L, x: run(L, ours if L is minicnn else theirs, x,
                           target if L is minicnn else torch.from_numpy(LABELS)),
          [LOGITS], backend)


def test_mse_and_bce_modules_are_torchs(backend):
    soft = (LOGITS > 0).astype(np.float32)
    _both(lambda L, x: L.nn.MSELoss()(x, L.tensor(soft)) if L is torch else
          L.nn.MSELoss()(x, L.tensor(soft, device=backend)), [LOGITS], backend)
    _both(lambda L, x: L.nn.BCEWithLogitsLoss(reduction="sum")(x, L.tensor(soft)) if L is torch
          else L.nn.BCEWithLogitsLoss(reduction="sum")(x, L.tensor(soft, device=backend)),
          [LOGITS], backend)


IMAGE = np.random.default_rng(4).standard_normal((2, 2, 7, 6)).astype(np.float32)


@pytest.mark.parametrize("make", [
    lambda L: L.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    lambda L: L.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda L: L.nn.AvgPool2d(2, divisor_override=3),
    lambda L: L.nn.Softmax(dim=1),
    lambda L: L.nn.LogSoftmax(dim=-1),
    lambda L: L.nn.Sequential(L.nn.Identity(), L.nn.AvgPool2d(1), L.nn.ReLU(inplace=True)),
], ids=["maxpool ceil", "avgpool ceil no-pad", "avgpool divisor", "softmax", "log_softmax",
        "identity relu"])
def test_layer_arguments_mean_what_they_mean_in_torch(backend, make):
    ours, theirs = make(minicnn), make(torch)
    _both(lambda L, x: (ours if L is minicnn else theirs)(x), [IMAGE], backend)


def test_conv2d_module_same_padding_and_max_pool_indices(backend):
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(2, 3, (2, 3), padding="same")
    ours = minicnn.nn.Conv2d(2, 3, (2, 3), padding="same").to(backend)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    _both(lambda L, x: (ours if L is minicnn else theirs)(x), [IMAGE], backend)
    values, indices = minicnn.nn.MaxPool2d(2, return_indices=True, ceil_mode=True)(
        minicnn.tensor(IMAGE, device=backend))
    tv, ti = torch.nn.MaxPool2d(2, return_indices=True, ceil_mode=True)(torch.from_numpy(IMAGE))
    np.testing.assert_array_equal(indices.numpy(), ti.numpy())
    np.testing.assert_array_equal(values.numpy(), tv.numpy())


@pytest.mark.parametrize("kwargs, words", [
    (dict(groups=2), "groups=2"), (dict(dilation=2), "dilation=(2, 2)"),
    (dict(padding_mode="reflect"), "padding_mode='reflect'"),
])
def test_conv2d_module_refuses_what_the_kernels_do_not_compute(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        minicnn.nn.Conv2d(2, 4, 3, **kwargs)


def test_data_is_a_detached_tensor_sharing_memory_as_in_torch(backend):
    x = minicnn.tensor(LOGITS, requires_grad=True, device=backend)
    t = torch.tensor(LOGITS, requires_grad=True)
    d, td = x.data, t.data
    assert isinstance(d, minicnn.Tensor) and not d.requires_grad and td.requires_grad is False
    np.testing.assert_array_equal(d.max(1)[1].numpy(), td.max(1)[1].numpy())   # old tutorials
    assert d.array is x.array, "the same memory, not a copy"
    x.data = x.data * 2.0
    t.data = t.data * 2.0
    np.testing.assert_array_equal(x.numpy(), t.detach().numpy())
    assert x.requires_grad and x.is_leaf


def test_a_torch_tensor_handed_to_minicnn_says_how_to_convert_it():
    w = minicnn.tensor(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"torch\.Tensor.*minicnn\.tensor\(t\.detach\(\)\.cpu\(\)\.numpy\(\)\)"):
        minicnn.nn.functional.conv2d(torch.zeros(1, 1, 5, 5), w)
    with pytest.raises(TypeError, match=r"numpy\.ndarray; wrap the array with minicnn\.tensor"):
        minicnn.nn.functional.relu(np.zeros(3, np.float32))
