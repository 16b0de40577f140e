"""Optimisers (lesson 06), with PyTorch's update rules.

SGD (momentum, dampening, Nesterov, L2 weight decay), for each parameter p with gradient g:
    g' = g + weight_decay * p
    buf = g'                                   on the first step
    buf = momentum * buf + (1 - dampening) * g' afterwards
    d = g' + momentum * buf  (Nesterov)   or   d = buf   (or d = g' without momentum)
    p = p - lr * d

AdamW is Adam with the weight decay taken out of the gradient (decoupled, Loshchilov &
Hutter 2019): p = p * (1 - lr * weight_decay) first, then the Adam step with g' = g.

Adam, with step t counted from 1:
    g' = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g'           running mean of the gradient
    v = beta2 * v + (1 - beta2) * g'^2         running mean of its square
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Learning-rate schedules live in minicnn.optim.lr_scheduler, as in PyTorch.

The arithmetic runs in the parameter's backend (`sgd_step`, `adam_step` in
minicnn.backends), in place, so it happens on the GPU when the model is there.

state_dict() is a flat {name: numpy array or plain number} dict, so it can be
stored in an .npz next to the model's weights:
    "group0.lr", "group0.momentum", ...       hyper-parameters of each group
    "state.3.momentum_buffer", "state.3.step" per-parameter state, numbered across groups
"""
import math

import numpy as np

from .. import backends
from ..errors import UserError
from ..nn.module import _move_array, _to_host
from ..tensor import Tensor


class OptimizerStateError(UserError, ValueError):
    """A saved optimiser state does not fit this optimiser or its parameters."""


class Optimizer:
    """Base class: holds parameter groups and per-parameter state.

    params: an iterable of Parameters, or of dicts {"params": [...], "lr": ...} to give
    groups of parameters their own settings (as PyTorch's param groups).
    """

    # state entries and what they are: (name, "array" | "int")
    _state_fields = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of tensors, "
                            "e.g. model.parameters(), not a single tensor")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.param_groups = []
        seen = set()
        for group in params:
            group = dict(group)
            plist = group["params"]
            plist = [plist] if isinstance(plist, Tensor) else list(plist)
            for p in plist:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: can only optimise Tensors, "
                                    f"got {type(p).__name__}")
                if not p.is_leaf:
                    raise ValueError(f"{type(self).__name__}: can only optimise leaf tensors "
                                     "(parameters), not results of operations")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears twice")
                seen.add(id(p))
            group["params"] = plist
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            self._check_group(group)
            self.param_groups.append(group)
        self.state = {}  # index of the parameter (across groups) -> {name: array or int}

    def _check_group(self, group):
        if group["lr"] < 0:
            raise ValueError(f"{type(self).__name__}: lr must be non-negative, got {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be non-negative, "
                             f"got {group['weight_decay']}")

    def _indexed_params(self):
        """(index, group, param) for every parameter, numbered across groups."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, group, p
                i += 1

    def zero_grad(self):
        """Forget every parameter's gradient (set it to None)."""
        for _, _, p in self._indexed_params():
            p.grad = None

    def _param_state(self, index, p):
        """This parameter's state, moved to its device if the model moved since."""
        state = self.state.setdefault(index, {})
        for key, value in state.items():
            if not isinstance(value, (int, float)):
                state[key] = _move_array(value, p.device)
        return state

    @staticmethod
    def _grad_of(p):
        g = p.grad.array
        if tuple(g.shape) != tuple(p.shape):
            raise RuntimeError(f"optimiser: gradient shape {tuple(g.shape)} does not match "
                               f"parameter shape {tuple(p.shape)}")
        return g

    # --- saving and loading -------------------------------------------------------------------
    def state_dict(self):
        """A flat {name: numpy array or plain number} dict (see the module docstring)."""
        out = {}
        for gi, group in enumerate(self.param_groups):
            out[f"group{gi}.num_params"] = len(group["params"])
            for key, value in group.items():
                if key == "params":
                    continue
                if isinstance(value, tuple):
                    out[f"group{gi}.{key}"] = np.asarray(value, dtype=np.float64)
                else:
                    out[f"group{gi}.{key}"] = value
        for index, state in self.state.items():
            for key, value in state.items():
                out[f"state.{index}.{key}"] = value if isinstance(value, (int, float)) \
                    else np.array(_to_host(value))
        return out

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and per-parameter state saved by state_dict().

        Accepts the values back as 0-d arrays too (as np.load gives them).
        """
        name = type(self).__name__
        groups, states = {}, {}
        for key, value in state_dict.items():
            head, _, field = key.partition(".")
            if head.startswith("group") and head[5:].isdigit() and field:
                groups.setdefault(int(head[5:]), {})[field] = value
            elif head == "state" and field.count(".") == 1:
                index, field = field.split(".")
                states.setdefault(int(index), {})[field] = value
            else:
                raise OptimizerStateError(f"{name}.load_state_dict: unexpected entry {key!r}")
        if sorted(groups) != list(range(len(self.param_groups))):
            raise OptimizerStateError(f"{name}.load_state_dict: the saved state has "
                                      f"{len(groups)} parameter groups, this optimiser "
                                      f"{len(self.param_groups)}")
        params = [p for _, _, p in self._indexed_params()]
        new_groups = []
        for gi, group in enumerate(self.param_groups):
            saved = groups[gi]
            count = int(np.asarray(saved.pop("num_params", -1)))
            if count != len(group["params"]):
                raise OptimizerStateError(f"{name}.load_state_dict: group {gi} was saved with "
                                          f"{count} parameters, this optimiser has "
                                          f"{len(group['params'])}")
            extra = set(saved) - (set(group) - {"params"}) - {"initial_lr"}
            if extra:
                raise OptimizerStateError(f"{name}.load_state_dict: settings {sorted(extra)} "
                                          f"are not {name} settings (saved from another optimiser?)")
            new = dict(group)
            for key, value in saved.items():
                new[key] = _plain(value, like=group.get(key, 0.0))
            new_groups.append(new)
        new_state = {}
        for index, fields in states.items():
            if not 0 <= index < len(params):
                raise OptimizerStateError(f"{name}.load_state_dict: state for parameter {index}, "
                                          f"but there are only {len(params)} parameters")
            known = dict(self._state_fields)
            p = params[index]
            entry = {}
            for field, value in fields.items():
                if field not in known:
                    raise OptimizerStateError(f"{name}.load_state_dict: unknown state "
                                              f"'{field}' (saved from another optimiser?)")
                if known[field] == "int":
                    entry[field] = int(np.asarray(value))
                    continue
                value = np.asarray(value)
                if tuple(value.shape) != tuple(p.shape):
                    raise OptimizerStateError(
                        f"{name}.load_state_dict: state.{index}.{field} has shape "
                        f"{tuple(value.shape)} but parameter {index} has shape {tuple(p.shape)}")
                entry[field] = _move_array(value.astype(p.dtype, copy=True), p.device)
            new_state[index] = entry
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for gi, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {gi}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


def _plain(value, like):
    """A saved value (maybe a 0-d array from np.load) as the same kind as `like`."""
    if isinstance(like, tuple):
        return tuple(float(v) for v in np.asarray(value).reshape(-1))
    value = np.asarray(value).item() if not isinstance(value, (int, float, bool)) else value
    if isinstance(like, bool):
        return bool(value)
    if isinstance(like, int) and not isinstance(like, bool) and float(value).is_integer():
        return int(value)
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 decay."""

    _state_fields = (("momentum_buffer", "array"),)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be non-negative, got {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for index, group, p in self._indexed_params():
            if p.grad is None:
                continue
            g = self._grad_of(p)
            momentum = group["momentum"]
            buf, first = None, False
            if momentum != 0:
                state = self._param_state(index, p)
                first = "momentum_buffer" not in state
                if first:
                    state["momentum_buffer"] = p.xp.zeros_like(p.array)
                buf = state["momentum_buffer"]
            backends.get(p.device).sgd_step(
                p.array, g, buf, float(group["lr"]), float(momentum), float(group["dampening"]),
                float(group["weight_decay"]), bool(group["nesterov"]), first)


class Adam(Optimizer):
    """Adam: per-parameter step sizes from running moments of the gradient."""

    _state_fields = (("step", "int"), ("exp_avg", "array"), ("exp_avg_sq", "array"))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas}")
        if eps < 0:
            raise ValueError(f"Adam: eps must be non-negative, got {eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for index, group, p in self._indexed_params():
            if p.grad is None:
                continue
            g = self._grad_of(p)
            state = self._param_state(index, p)
            if not state:
                state["step"] = 0
                state["exp_avg"] = p.xp.zeros_like(p.array)
                state["exp_avg_sq"] = p.xp.zeros_like(p.array)
            state["step"] += 1
            beta1, beta2 = group["betas"]
            backends.get(p.device).adam_step(
                p.array, g, state["exp_avg"], state["exp_avg_sq"], float(group["lr"]),
                beta1, beta2, float(group["eps"]), float(group["weight_decay"]), state["step"])


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's AdamW; default weight_decay 0.01)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def step(self):
        """Shrink each parameter by (1 - lr * weight_decay), then take Adam's step without it."""
        decays = []
        for group in self.param_groups:
            decays.append(group["weight_decay"])
            for p in group["params"]:
                if p.grad is not None and group["weight_decay"] != 0:
                    p.array *= p.dtype.type(1.0 - group["lr"] * group["weight_decay"])
            group["weight_decay"] = 0.0
        try:
            super().step()
        finally:
            for group, decay in zip(self.param_groups, decays):
                group["weight_decay"] = decay


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OptimizerStateError"]
