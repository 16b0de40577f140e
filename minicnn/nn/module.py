"""Module and Parameter: the containers a network is built from.

A Module holds three kinds of things, found by attribute assignment as in PyTorch:
  parameters  Parameter tensors the optimiser trains (weights, biases)
  buffers     plain arrays that are state but not trained (BatchNorm's running mean)
  children    other Modules (the layers of a network)
`state_dict()` names every parameter and buffer by its path ("features.0.weight"),
which is how a trained network is saved and loaded.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backends
from ..errors import UserError
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad=True, float32 unless given otherwise."""

    def __init__(self, data, requires_grad=True, device="cpu", dtype=None):
        super().__init__(data, requires_grad=requires_grad, device=device, dtype=dtype)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class StateDictError(UserError, RuntimeError):
    """A saved state does not fit the module it is loaded into (names or shapes)."""


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _move_array(array, device):
    """`array` (numpy or cupy) as an array of `device`; the same object if already there."""
    on_gpu = not isinstance(array, np.ndarray)
    if device == "cuda":
        return array if on_gpu else backends.array_module("cuda").asarray(array)
    return array.get() if on_gpu else array


def _to_host(array):
    return array if isinstance(array, np.ndarray) else array.get()


class _HookHandle:
    """What register_forward_hook returns: remove() unregisters the hook."""

    _next_id = 0

    def __init__(self, table, hook):
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        self.table, self.id = table, _HookHandle._next_id
        _HookHandle._next_id += 1
        table[self.id] = hook

    def remove(self):
        self.table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Module:
    """Base class of layers and networks. Subclasses define `forward(*inputs)`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # --- registration by attribute assignment ------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() in __init__ "
                                 f"before assigning attributes such as {name!r}")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value  # assigning to a buffer replaces the buffer's array
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the three tables
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep `array` (numpy/cupy, or None) as state that is saved but not trained."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name, param):
        """Add a Parameter (or None, for an absent bias) under `name`."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, "
                            f"got {type(param).__name__}")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # --- calling -----------------------------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs, **kwargs):
        """forward(*inputs), with the forward hooks around it (as PyTorch's Module.__call__)."""
        for hook in list(self._forward_pre_hooks.values()):
            changed = hook(self, inputs)
            if changed is not None:
                inputs = changed if isinstance(changed, tuple) else (changed,)
        output = self.forward(*inputs, **kwargs)
        for hook in list(self._forward_hooks.values()):
            changed = hook(self, inputs, output)
            if changed is not None:
                output = changed
        return output

    def register_forward_hook(self, hook):
        """Call hook(module, inputs, output) after every forward; a value it returns
        replaces the output. Returns a handle whose .remove() takes the hook off."""
        return _HookHandle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        """Call hook(module, inputs) before every forward; a value it returns replaces the
        inputs. Returns a handle whose .remove() takes the hook off."""
        return _HookHandle(self._forward_pre_hooks, hook)

    @property
    def has_hooks(self):
        return bool(self._forward_pre_hooks or self._forward_hooks)

    # --- walking the tree ----------------------------------------------------------
    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix=""):
        """(path, module) for this module and every module inside it, depth first."""
        yield prefix, self
        for name, module in self.named_children():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix=""):
        """(path, Parameter) for every parameter, each once, in definition order."""
        seen = set()
        for path, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{path}.{name}" if path else name), param

    def parameters(self):
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix=""):
        for path, module in self.named_modules(prefix):
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{path}.{name}" if path else name), buf

    def buffers(self):
        for _, buf in self.named_buffers():
            yield buf

    def num_parameters(self, trainable_only=False):
        """How many numbers the parameters hold in all."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def apply(self, fn):
        """Call fn(module) on every child, then on this module; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # --- modes and devices ------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout drops, BatchNorm uses batch statistics); returns self."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode: dropout off, BatchNorm uses its running statistics; returns self."""
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (set it to None)."""
        for param in self.parameters():
            param.grad = None

    def to(self, device):
        """Move every parameter, gradient and buffer to `device`, in place; returns self.

        The Parameter objects stay the same, so an optimiser made before the move
        keeps working.
        """
        device = backends.check_device(device)
        for param in self.parameters():
            if param.device != device:
                param.array = _move_array(param.array, device)
                param.device = device
                if param.grad is not None:
                    param.grad = Tensor._wrap(_move_array(param.grad.array, device), device=device)
        for module in self.modules():
            for name, buf in module._buffers.items():
                if buf is not None:
                    module._buffers[name] = _move_array(buf, device)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def _cast(self, dtype):
        for param in self.parameters():
            param.array = param.array.astype(dtype)
            if param.grad is not None:
                param.grad = Tensor._wrap(param.grad.array.astype(dtype), device=param.device)
        for module in self.modules():
            for name, buf in module._buffers.items():
                if buf is not None and np.issubdtype(buf.dtype, np.floating):
                    module._buffers[name] = buf.astype(dtype)
        return self

    def double(self):
        """Parameters and floating buffers to float64, in place (for gradient checks); returns self."""
        return self._cast(np.float64)

    def float(self):
        """Parameters and floating buffers to float32, in place; returns self."""
        return self._cast(np.float32)

    @property
    def device(self):
        """The device of the first parameter ("cpu" for a module with none)."""
        for param in self.parameters():
            return param.device
        return "cpu"

    # --- saving and loading ---------------------------------------------------------
    def state_dict(self):
        """{path: numpy array} of every parameter and buffer, copied to the host.

        Order as PyTorch: a module's own parameters, its buffers, then its children's.
        """
        state = OrderedDict()
        for path, module in self.named_modules():
            for kind in (module._parameters, module._buffers):
                for name, value in kind.items():
                    if value is None:
                        continue
                    array = value.array if isinstance(value, Tensor) else value
                    state[f"{path}.{name}" if path else name] = np.array(_to_host(array))
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from {path: array} into the parameters and buffers, in place.

        Arrays may be numpy arrays, Tensors, or anything numpy can read. Shapes must
        match exactly. With strict=True every name must match too; otherwise the
        names that matched are loaded and the rest reported.
        Returns IncompatibleKeys(missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a dict of name -> array, "
                            f"got {type(state_dict).__name__}")
        targets = OrderedDict()  # path -> (module, table, name)
        for path, module in self.named_modules():
            for table in (module._parameters, module._buffers):
                for name, value in table.items():
                    if value is not None:
                        targets[f"{path}.{name}" if path else name] = (module, table, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            lines = [f"load_state_dict: the saved state does not match {type(self).__name__}"]
            if missing:
                lines.append(f"  missing from the saved state: {', '.join(missing)}")
            if unexpected:
                lines.append(f"  in the saved state but not in the model: {', '.join(unexpected)}")
            lines.append("  (was it saved from a different architecture or configuration?)")
            raise StateDictError("\n".join(lines))

        # check every shape before changing anything, so a failed load leaves no half-state
        staged = []
        for key, (module, table, name) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if isinstance(value, Tensor):
                value = value.numpy()
            elif hasattr(value, "detach") and hasattr(value, "numpy"):  # e.g. a torch tensor
                value = value.detach().cpu().numpy()
            elif not isinstance(value, np.ndarray) and hasattr(value, "get"):  # a cupy array
                value = value.get()
            value = np.asarray(value)
            current = table[name]
            current_array = current.array if isinstance(current, Tensor) else current
            if tuple(value.shape) != tuple(current_array.shape):
                raise StateDictError(
                    f"load_state_dict: {key} has shape {tuple(value.shape)} in the saved state "
                    f"but {tuple(current_array.shape)} in the model")
            staged.append((current, current_array, value))
        for current, current_array, value in staged:
            value = value.astype(current_array.dtype, copy=False)
            if isinstance(current_array, np.ndarray):
                current_array[...] = value
            else:
                current_array[...] = backends.array_module("cuda").asarray(value)
        return IncompatibleKeys(missing, unexpected)

    # --- printing ------------------------------------------------------------------------
    def extra_repr(self):
        """The layer's settings, shown inside its parentheses in repr()."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        lines = []
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")
        return head + "\n" + "\n".join(lines) + "\n)"
