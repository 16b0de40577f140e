"""Misuse gives an error a learner can act on: it names the op, the shapes and the fix.

Each test makes one mistake and checks the words of the message, not only its type:
an IndexError from deep inside a kernel would pass a type check and help nobody.
"""
import re

import numpy as np
import pytest

import minicnn
import minicnn.functional as F


def t(*shape, device="cpu", requires_grad=False, dtype=np.float32):
    return minicnn.tensor(np.ones(shape, dtype=dtype), device=device,
                          requires_grad=requires_grad, dtype=dtype)


def raises(exc, *fragments):
    """pytest.raises that also asserts every fragment appears in the message."""
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *args):
            handled = self.ctx.__exit__(*args)
            message = str(self.info.value)
            for fragment in fragments:
                assert fragment in message, \
                    f"{exc.__name__} message lacks {fragment!r}: {message!r}"
            return handled
    return Check()


# ----------------------------------------------------------------------------- convolution

def test_conv2d_wrong_channel_count_names_both_shapes():
    with raises(ValueError, "3 channels", "expects 1", "(2, 3, 8, 8)", "(4, 1, 3, 3)"):
        F.conv2d(t(2, 3, 8, 8), t(4, 1, 3, 3))


def test_conv2d_takes_an_unbatched_image_as_pytorch_and_refuses_other_ranks():
    x, w = t(3, 8, 8), t(4, 3, 3, 3)
    one = F.conv2d(x, w)
    assert one.shape == (4, 6, 6)
    np.testing.assert_array_equal(one.numpy(), F.conv2d(x.unsqueeze(0), w).numpy()[0])
    with raises(ValueError, "(N, C, H, W) or (C, H, W)", "(8, 8)"):
        F.conv2d(t(8, 8), w)
    with raises(ValueError, "weight", "4-D", "(4, 3, 3)"):
        F.conv2d(t(1, 3, 8, 8), t(4, 3, 3))


def test_conv2d_kernel_larger_than_padded_input():
    with raises(ValueError, "kernel 7x7", "larger than the padded input 6x6", "(1, 1, 4, 4)"):
        F.conv2d(t(1, 1, 4, 4), t(1, 1, 7, 7), padding=1)
    with raises(ValueError, "kernel 1x9", "8x8"):
        F.conv2d(t(1, 1, 8, 8), t(1, 1, 1, 9))  # non-square: only the width is too big


@pytest.mark.parametrize("stride,padding,exc,fragment", [
    (0, 0, ValueError, "stride must be at least 1"),
    ((1, 0), 0, ValueError, "stride must be at least 1"),
    (1, -1, ValueError, "padding must be non-negative"),
    (1.5, 0, TypeError, "stride must be an int or a pair of ints, got 1.5"),
    ((1, 2, 3), 0, TypeError, "stride must be an int or a pair of ints"),
    (1, "full", ValueError, "padding must be a number, a pair, 'valid' or 'same', got 'full'"),
    (2, "same", ValueError, "padding='same' needs stride 1"),
    (1, (1.5, 1), TypeError, "padding must be an int or a pair of ints"),
])
def test_conv2d_bad_stride_or_padding(stride, padding, exc, fragment):
    with raises(exc, "conv2d", fragment):
        F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), stride=stride, padding=padding)


def test_conv2d_bias_shape():
    with raises(ValueError, "bias", "(4,)", "(3,)"):
        F.conv2d(t(1, 1, 5, 5), t(4, 1, 3, 3), t(3))


def test_conv2d_dtype_mismatch():
    with raises(TypeError, "float32", "float64"):
        F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3, dtype=np.float64))


def test_conv2d_integer_input():
    with raises(TypeError, "floating point", "int64"):
        F.conv2d(minicnn.tensor(np.ones((1, 1, 5, 5), np.int64)), t(1, 1, 3, 3))


def test_conv2d_numpy_input():
    with raises(TypeError, "minicnn Tensor", "ndarray"):
        F.conv2d(np.ones((1, 1, 5, 5), np.float32), t(1, 1, 3, 3))


# ----------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_padding_larger_than_half_the_window(pool):
    with raises(ValueError, "padding (2, 2)", "half the kernel size (3, 3)"):
        pool(t(1, 1, 8, 8), 3, padding=2)
    with raises(ValueError, "padding (0, 2)", "(2, 2)"):
        pool(t(1, 1, 8, 8), 2, padding=(0, 2))


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_window_larger_than_input(pool):
    with raises(ValueError, "window 5x5", "larger than the padded input 3x3", "(1, 2, 3, 3)"):
        pool(t(1, 2, 3, 3), 5)


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_wrong_rank_and_bad_stride(pool):
    with raises(ValueError, "(N, C, H, W) or (C, H, W)", "(8, 8)"):
        pool(t(8, 8), 2)
    with raises(ValueError, "at least 1"):
        pool(t(1, 1, 8, 8), 2, stride=0)
    with raises(ValueError, "at least 1"):
        pool(t(1, 1, 8, 8), 0)


# ----------------------------------------------------------------------------- linear

def test_linear_feature_mismatch_names_both_shapes():
    with raises(ValueError, "5 features", "expects 4", "(2, 5)", "(3, 4)"):
        F.linear(t(2, 5), t(3, 4))


def test_linear_on_an_unflattened_input():
    with raises(ValueError, "(2, 3, 4, 4)", "flatten"):
        F.linear(t(2, 3, 4, 4), t(10, 48))


def test_linear_bias_and_weight_shapes():
    with raises(ValueError, "bias", "(3,)", "(4,)"):
        F.linear(t(2, 5), t(3, 5), t(4))
    with raises(ValueError, "weight must be 2-D", "(5,)"):
        F.linear(t(2, 5), t(5))


# ----------------------------------------------------------------------------- losses

def test_cross_entropy_float_labels():
    with raises(TypeError, "integer class indices", "float32", ".long()"):
        F.cross_entropy(t(3, 2), minicnn.tensor([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("label", [2, 7, -1])
def test_cross_entropy_label_out_of_range_names_label_and_range(label):
    target = minicnn.tensor([0, label, 1])
    with raises(ValueError, f"label {label}", "[0, 1]", "2 classes"):
        F.cross_entropy(t(3, 2), target)


def test_cross_entropy_shapes_and_reduction():
    with raises(ValueError, "input of shape (6,)", "one sample", "class indices need shape ()"):
        F.cross_entropy(t(6), minicnn.tensor([0, 1]))
    with raises(ValueError, "target of shape (4,)", "input of shape (3, 2)", "need shape (3,)"):
        F.cross_entropy(t(3, 2), minicnn.tensor([0, 1, 1, 0]))
    with raises(ValueError, "16 rows of scores for 64 labels", "x.view(x.size(0), -1)"):
        F.cross_entropy(t(16, 2), minicnn.tensor([0, 1] * 32))
    with raises(ValueError, "reduction", "'avg'"):
        F.cross_entropy(t(3, 2), minicnn.tensor([0, 1, 1]), reduction="avg")
    with raises(ValueError, "one entry per class", "(2,)", "(3,)"):
        F.cross_entropy(t(3, 2), minicnn.tensor([0, 1, 1]), weight=t(3))


def test_softmax_dim_out_of_range():
    with raises(ValueError, "dim 2", "(3, 4)"):
        F.softmax(t(3, 4), dim=2)
    with raises(ValueError, "dim -3"):
        F.log_softmax(t(3, 4), dim=-3)


def test_dropout_probability():
    with raises(ValueError, "between 0 and 1", "1.5"):
        F.dropout(t(3), p=1.5)


# ----------------------------------------------------------------------------- devices

def test_tensors_on_different_devices():
    a, b = t(2, 3), t(2, 3, device="cuda-sim")
    with raises(RuntimeError, "add", "different devices", "cpu", "cuda-sim", ".to("):
        a + b
    with raises(RuntimeError, "matmul", "different devices", "cpu", "cuda-sim"):
        a @ t(3, 2, device="cuda-sim")


def test_functional_ops_on_different_devices():
    with raises(RuntimeError, "conv2d", "different devices", "cpu", "cuda-sim"):
        F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3, device="cuda-sim"))
    with raises(RuntimeError, "linear", "different devices", "cpu", "cuda-sim"):
        F.linear(t(2, 3), t(4, 3), t(4, device="cuda-sim"))
    with raises(RuntimeError, "cross_entropy", "different devices", "cpu", "cuda-sim"):
        F.cross_entropy(t(3, 2), minicnn.tensor([0, 1, 1], device="cuda-sim"))


def test_unknown_device():
    with raises(ValueError, "unknown device 'gpu'", "cpu", "cuda", "cuda-sim"):
        t(2, device="gpu")


# ----------------------------------------------------------------------------- autograd

def test_backward_on_non_scalar_without_gradient():
    y = t(2, 3, requires_grad=True) * 2.0
    with raises(RuntimeError, "(2, 3)", "not a scalar", "y.backward(grad)"):
        y.backward()


def test_backward_gradient_of_the_wrong_shape():
    y = t(2, 3, requires_grad=True) * 2.0
    with raises(ValueError, "(3, 2)", "(2, 3)"):
        y.backward(np.ones((3, 2), np.float32))


def test_backward_without_a_graph():
    with raises(RuntimeError, "does not require grad", "requires_grad=True"):
        t(1).sum().backward()


def test_second_backward_message():
    x = t(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with raises(RuntimeError, "already used", "retain_graph=True"):
        y.backward()


def test_integer_tensor_cannot_require_grad():
    with raises(TypeError, "floating-point", "int64"):
        minicnn.tensor([1, 2], requires_grad=True)


# ----------------------------------------------------------------------------- tensor shapes

def test_reshape_to_an_impossible_shape():
    with raises(ValueError, "(2, 3)", "6 elements", "(4, 2)"):
        t(2, 3).reshape(4, 2)


def test_matmul_shapes_that_do_not_line_up():
    with raises(ValueError, "matmul", "(3, 4)", "(5, 2)", "4 columns", "5 rows"):
        t(3, 4) @ t(5, 2)
    with raises(ValueError, "matmul", "(3,)", "(4, 2)"):
        t(3) @ t(4, 2)
    with raises(ValueError, "matmul", "()"):
        minicnn.tensor(2.0) @ t(3)


def test_item_of_many_elements():
    with raises(ValueError, "6 elements", "(2, 3)"):
        t(2, 3).item()


def test_pow_with_a_tensor_exponent():
    with raises(TypeError, "exponent", "number"):
        t(2) ** t(2)


def test_manual_seed_and_kernel_choice():
    with raises(ValueError, "non-negative integer", "-1"):
        minicnn.manual_seed(-1)
    with raises(ValueError, "'numba' or 'reference'", "'fast'"):
        minicnn.use_cpu_kernels("fast")


def test_messages_name_the_op():
    """Every functional error starts with the op's name, so the learner knows where."""
    cases = [
        (lambda: F.conv2d(t(2, 3, 8, 8), t(4, 1, 3, 3)), "conv2d"),
        (lambda: F.max_pool2d(t(1, 1, 8, 8), 3, padding=2), "max_pool2d"),
        (lambda: F.avg_pool2d(t(1, 1, 8, 8), 3, padding=2), "avg_pool2d"),
        (lambda: F.linear(t(2, 5), t(3, 4)), "linear"),
        (lambda: F.cross_entropy(t(3, 2), minicnn.tensor([0, 5, 1])), "cross_entropy"),
        (lambda: F.softmax(t(3), dim=1), "softmax"),
        (lambda: F.batch_norm(t(3), None, None), "batch_norm"),
    ]
    for call, op in cases:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert re.match(rf"{op}\b", str(info.value)), f"{op}: message {str(info.value)!r}"


def test_batch_norm_channel_mismatch():
    stats = (np.zeros(3, np.float32), np.ones(3, np.float32))
    with raises(ValueError, "batch_norm", "weight", "(3,)", "(4,)", "(2, 3, 4, 4)"):
        F.batch_norm(t(2, 3, 4, 4), *stats, weight=t(4), training=True)
    with raises(ValueError, "running_mean", "(3,)", "(2,)"):
        F.batch_norm(t(2, 3, 4, 4), np.zeros(2, np.float32), stats[1])
    with raises(ValueError, "evaluation", "running_mean"):
        F.batch_norm(t(2, 3), None, None, training=False)


def test_truth_value_of_a_whole_tensor():
    a = minicnn.tensor([1.0, 2.0])
    with raises(ValueError, "ambiguous", "2 elements"):
        if a == a:
            pass
    assert not minicnn.tensor(0.0) and minicnn.tensor([3.0]), "one element: its own truth value"
