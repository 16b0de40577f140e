"""The CUDA glue of batch norm, dropout, adaptive average pooling and binary
cross-entropy with logits (lesson 10): a mixin of CudaKernels (_cuda_glue.py), whose
launch, argument checks and allocation it uses, for devices "cuda" and "cuda-sim".

  batch_norm_forward      training: batch_norm_stats (one block per channel: mean,
                          1/sqrt(var + eps), running statistics in place), then
                          batch_norm_apply; eval: batch_norm_eval_stats, batch_norm_apply
  batch_norm_backward     batch_norm_grad_sums (one block per channel), then
                          batch_norm_backward_input
  dropout_*               dropout_forward draws the mask on the device (Philox4x32-10,
                          dropout.cu) and keeps it (uint8); dropout_backward reuses it
  adaptive_avg_pool2d_*   one kernel each (the backward gathers)
  bce_with_logits_*       elementwise losses, then bce_reduce (one block) for
                          "mean" / "sum"; elementwise gradients

Every sum here is made by one block in a fixed order (norm.cu, loss.cu): the same bits
on every run. The table (its shapes) is the class Backend in minicnn/backends/table.py.
"""
import math

import numpy as np

from minicnn.backends._cuda_launch import _i32, per_element, per_row, single_block
from minicnn.kernels.reference import _split64, dropout_scale, keep_threshold


class LayerKernels:
    """Table entries of CudaKernels for the layers above (see the module docstring)."""

    def _filled(self, a, size, value, op, what):
        """a checked, or a new (size,) array holding `value` where a is None."""
        if a is not None:
            return self._floats(a, op, what)
        out = self._empty((size,))
        out.fill(value)
        return out

    def _optional(self, a, like, op, what):
        """(array, 1) for an array of like's shape, (like, 0) for None (then unread)."""
        if a is None:
            return like, np.int32(0)
        a = self._floats(a, op, what)
        if a.shape != like.shape:
            raise ValueError(f"{op}: {what} has shape {tuple(a.shape)}, expected "
                             f"{tuple(like.shape)} (the caller broadcasts it)")
        return a, np.int32(1)

    # -- batch norm (norm.cu)

    def batch_norm_forward(self, x, weight, bias, running_mean, running_var, training,
                           momentum, eps):
        """x (N,C,L) -> (y (N,C,L), mean (C,), invstd (C,)); running stats in place
        when training and given"""
        op = "batch_norm"
        x = self._floats(x, op, "input")
        n, c, l = x.shape
        w = self._filled(weight, c, 1, op, "weight")
        b = self._filled(bias, c, 0, op, "bias")
        mean, invstd = self._empty((c,)), self._empty((c,))
        if training:
            update = running_mean is not None
            rm = self._in_place(running_mean, op, "running_mean") if update else mean
            rv = self._in_place(running_var, op, "running_var") if update else invstd
            self.launch("norm", "batch_norm_stats", per_row(c), x, mean, invstd, rm, rv,
                        *_i32(n, c, l), np.float32(eps), np.float32(momentum), *_i32(update))
        else:
            rm = self._floats(running_mean, op, "running_mean")
            rv = self._floats(running_var, op, "running_var")
            self.launch("norm", "batch_norm_eval_stats", per_element(c), rm, rv, mean, invstd,
                        *_i32(c), np.float32(eps))
        y = self._empty(x.shape)
        self.launch("norm", "batch_norm_apply", per_element(x.size), x, mean, invstd, w, b, y,
                    *_i32(c, l, x.size))
        return y, mean, invstd

    def batch_norm_backward(self, gy, x, weight, mean, invstd, training,
                            needs=(True, True, True)):
        """gy, x (N,C,L), mean, invstd (C,) -> (gx, gw, gb), None where not needed"""
        op = "batch_norm backward"
        gy, x = self._floats(gy, op, "output gradient"), self._floats(x, op, "input")
        mean, invstd = self._floats(mean, op, "mean"), self._floats(invstd, op, "invstd")
        n, c, l = x.shape
        gw, gb = self._empty((c,)), self._empty((c,))
        if needs[1] or needs[2] or (needs[0] and training):
            self.launch("norm", "batch_norm_grad_sums", per_row(c), gy, x, mean, invstd, gw, gb,
                        *_i32(n, c, l))
        gx = None
        if needs[0]:
            w = self._filled(weight, c, 1, op, "weight")
            gx = self._empty(x.shape)          # gw, gb unread in eval
            self.launch("norm", "batch_norm_backward_input", per_element(x.size), gy, x, mean,
                        invstd, w, gw, gb, gx, *_i32(c, l, x.size, n * l, bool(training)))
        return gx, (gw if needs[1] else None), (gb if needs[2] else None)

    def batch_norm_relu_pool_forward(self, x, weight, bias, running_mean, running_var,
                                     training, momentum, eps):
        """x (N,C,H,W) -> (y, idx (N,C,H//2,W//2), mean, invstd): this backend's batch norm,
        ReLU and pool kernels in turn (the table's entries called through the class, so a
        trace sees one op)"""
        n, c, h, w = x.shape
        cls = type(self)
        v, mean, invstd = cls.batch_norm_forward(self, x.reshape(n, c, h * w), weight, bias,
                                                 running_mean, running_var, training,
                                                 momentum, eps)
        v = cls.relu_forward(self, v.reshape(x.shape))
        y, idx = cls.max_pool2d_forward(self, v, (2, 2), (2, 2), (0, 0))
        return y, idx, mean, invstd

    def batch_norm_relu_pool_backward(self, gy, x, y, idx, weight, mean, invstd, training,
                                      needs=(True, True, True)):
        """gy, y, idx (N,C,H//2,W//2), x (N,C,H,W) -> (gx, gw, gb): pool, ReLU and batch
        norm backward in turn"""
        n, c, h, w = x.shape
        cls = type(self)
        g = cls.max_pool2d_backward(self, cls.relu_backward(self, gy, y), idx, x.shape)
        gx, gw, gb = cls.batch_norm_backward(self, g.reshape(n, c, h * w),
                                             x.reshape(n, c, h * w), weight, mean, invstd,
                                             training, needs)
        return (None if gx is None else gx.reshape(x.shape)), gw, gb

    # -- dropout (dropout.cu)

    def dropout_forward(self, x, p, seed, offset=0):
        """x any shape -> (y like x, mask like x, uint8 1 = kept), the mask drawn here"""
        x = self._floats(x, "dropout", "input")
        y, mask = self._empty(x.shape), self._empty(x.shape, np.uint8)
        key, off = _split64(seed), _split64(offset)
        self.launch("dropout", "dropout_forward", per_element(math.ceil(x.size / 4)), x, y, mask,
                    *_i32(x.size), *(np.uint32(v) for v in (*key, *off, keep_threshold(p))),
                    np.float32(dropout_scale(p)))
        return y, mask

    def dropout_backward(self, gy, mask, p):
        """gy, mask (the forward's) -> gx = gy * mask * scale"""
        gy = self._floats(gy, "dropout backward", "output gradient")
        if not isinstance(mask, self.xp.ndarray) or mask.dtype != np.uint8:
            raise TypeError(f"dropout backward on device '{self.device}': mask must be the "
                            f"forward's uint8 {self.xp.__name__} array, got "
                            f"{type(mask).__name__} of dtype {getattr(mask, 'dtype', None)}")
        mask = self.xp.asarray(mask, order="C")
        gx = self._empty(gy.shape)
        self.launch("dropout", "dropout_backward", per_element(gy.size), gy, mask, gx,
                    *_i32(gy.size), np.float32(dropout_scale(p)))
        return gx

    # -- adaptive average pooling (adaptive_pool.cu)

    def adaptive_avg_pool2d_forward(self, x, out_hw):
        """x (N,C,H,W), out_hw (Ho, Wo) -> y (N,C,Ho,Wo)"""
        x = self._floats(x, "adaptive_avg_pool2d", "input")
        n, c, h, w = x.shape
        y = self._empty((n, c, *out_hw))
        self.launch("adaptive_pool", "adaptive_avg_pool2d_forward", per_element(y.size), x, y,
                    *_i32(n, c, h, w, *out_hw))
        return y

    def adaptive_avg_pool2d_backward(self, gy, x_shape):
        """gy (N,C,Ho,Wo) -> gx x_shape (N,C,H,W), every pixel written"""
        gy = self._floats(gy, "adaptive_avg_pool2d backward", "output gradient")
        gx = self._empty(x_shape)
        self.launch("adaptive_pool", "adaptive_avg_pool2d_backward", per_element(gx.size), gy,
                    gx, *_i32(*x_shape, *gy.shape[2:]))
        return gx

    # -- binary cross-entropy with logits (loss.cu)

    def bce_with_logits_forward(self, x, target, weight, pos_weight, reduction):
        """x, target one shape; weight, pos_weight that shape or None -> loss like x or ()"""
        op = "binary_cross_entropy_with_logits"
        x, t = self._floats(x, op, "input"), self._floats(target, op, "target")
        w, has_w = self._optional(weight, x, op, "weight")
        pw, has_pw = self._optional(pos_weight, x, op, "pos_weight")
        loss = self._empty(x.shape)
        self.launch("loss", "bce_with_logits_forward", per_element(x.size), x, t, w, pw, loss,
                    *_i32(x.size), has_w, has_pw)
        if reduction == "none":
            return loss
        out = self._empty((1,))
        self.launch("loss", "bce_reduce", single_block(), loss, out,
                    *_i32(x.size, reduction == "mean"))
        return out.reshape(())

    def bce_with_logits_backward(self, x, target, weight, pos_weight, reduction, gloss,
                                 needs=(True, False)):
        """-> (gx, gt) like x, None where needs (input, target) says False"""
        op = "binary_cross_entropy_with_logits backward"
        x, t = self._floats(x, op, "input"), self._floats(target, op, "target")
        w, has_w = self._optional(weight, x, op, "weight")
        pw, has_pw = self._optional(pos_weight, x, op, "pos_weight")
        gloss = self._floats(gloss, op, "loss gradient").reshape(-1)
        mode = {"none": 0, "sum": 1, "mean": 2}[reduction]
        gx = self._empty(x.shape) if needs[0] else None
        gt = self._empty(x.shape) if needs[1] else None
        self.launch("loss", "bce_with_logits_backward", per_element(x.size), x, t, w, pw, gloss,
                    x if gx is None else gx, x if gt is None else gt,   # x: unwritten stand-in
                    *_i32(x.size, mode), has_w, has_pw, *_i32(needs[0], needs[1]))
        return gx, gt
