"""Learning-rate schedules, as PyTorch's torch.optim.lr_scheduler (lesson 06).

    scheduler = CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        train_one_epoch()          # optimizer.step() for each batch
        scheduler.step()           # then the lr for the next epoch

Creating a scheduler sets step 0 (the initial lr), as PyTorch's do. StepLR and
CosineAnnealingLR are stepped once per epoch, OneCycleLR once per batch, and
ReduceLROnPlateau once per epoch with the value it watches (scheduler.step(val_loss)).
"""
import math

import numpy as np

from .optimizer import Optimizer, OptimizerStateError

class LRScheduler:
    """Sets each group's lr from the epoch count; call step() once per epoch, after
    optimizer.step(). Creating the scheduler sets epoch 0 (lr = the initial lr)."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an optimiser, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, base_lr, epoch):
        raise NotImplementedError

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base, self.last_epoch)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """{"last_epoch": int, "base_lrs": array}: numbers and arrays only."""
        return {"last_epoch": self.last_epoch, "base_lrs": np.asarray(self.base_lrs, np.float64)}

    def load_state_dict(self, state):
        base = np.asarray(state["base_lrs"], np.float64).reshape(-1)
        if base.size != len(self.optimizer.param_groups):
            raise OptimizerStateError(f"{type(self).__name__}.load_state_dict: saved for "
                                      f"{base.size} parameter groups, the optimiser has "
                                      f"{len(self.optimizer.param_groups)}")
        self.base_lrs = [float(b) for b in base]
        self.last_epoch = int(np.asarray(state["last_epoch"]))
        self._apply()


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (epoch // step_size): drop by gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    falls along half a cosine from the initial lr to eta_min over T_max epochs
    (and, like PyTorch's, climbs back along the cosine if stepped past T_max).
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive integer, got {T_max!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2




class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018), stepped once per batch, as PyTorch's.

    lr rises from max_lr / div_factor to max_lr over the first pct_start of total_steps,
    then falls to max_lr / div_factor / final_div_factor, along half cosines
    (anneal_strategy="cos") or straight lines ("linear"). With cycle_momentum the
    momentum (SGD) or beta1 (Adam) moves the other way, max_momentum -> base_momentum
    -> max_momentum. total_steps, or epochs * steps_per_epoch.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"OneCycleLR: expected an optimiser, got {type(optimizer).__name__}")
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
            total_steps = int(epochs) * int(steps_per_epoch)
        if int(total_steps) < 1:
            raise ValueError(f"OneCycleLR: total_steps must be a positive integer, got {total_steps!r}")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', "
                             f"got {anneal_strategy!r}")
        self.total_steps = int(total_steps)
        self.anneal_strategy, self.cycle_momentum = anneal_strategy, bool(cycle_momentum)
        groups = optimizer.param_groups
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(groups)
        for group, top in zip(groups, max_lrs):
            group["initial_lr"] = top / div_factor
            group["max_lr"] = top
            group["min_lr"] = group["initial_lr"] / final_div_factor
        # (last step of the phase, lr from, lr to, momentum from, momentum to)
        up = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (2 * up, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                            (self.total_steps - 1, "initial_lr", "min_lr",
                             "max_momentum", "max_momentum")]
        else:
            self._phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (self.total_steps - 1, "max_lr", "min_lr",
                             "base_momentum", "max_momentum")]
        self._beta1 = "betas" in optimizer.defaults
        if self.cycle_momentum:
            if not self._beta1 and "momentum" not in optimizer.defaults:
                raise ValueError("OneCycleLR: cycle_momentum needs an optimiser with momentum "
                                 "or betas; pass cycle_momentum=False")
            for group in groups:
                group["base_momentum"], group["max_momentum"] = base_momentum, max_momentum
        super().__init__(optimizer)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, group, step):
        """(lr, momentum) of a group at batch `step` (0 = before the first batch)."""
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, more than total_steps "
                             f"({self.total_steps})")
        start = 0.0
        for i, (end, lr_from, lr_to, m_from, m_to) in enumerate(self._phases):
            if step <= end or i == len(self._phases) - 1:
                pct = (step - start) / (end - start)
                lr = self._anneal(group[lr_from], group[lr_to], pct)
                momentum = (self._anneal(group[m_from], group[m_to], pct)
                            if self.cycle_momentum else None)
                return lr, momentum
            start = end

    def _apply(self):
        for group in self.optimizer.param_groups:
            lr, momentum = self._at(group, self.last_epoch)
            group["lr"] = lr
            if momentum is not None:
                if self._beta1:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum


class ReduceLROnPlateau:
    """Cut the lr by `factor` when a watched value stops improving, as PyTorch's.

    step(value) once per epoch: after more than `patience` epochs without an
    improvement (mode "min": lower is better, "max": higher; threshold_mode "rel":
    better by a factor threshold, "abs": by threshold), every group's lr becomes
    max(lr * factor, min_lr), then `cooldown` epochs pass before counting again.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"ReduceLROnPlateau: expected an optimiser, "
                            f"got {type(optimizer).__name__}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be below 1, got {factor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', "
                             f"got {threshold_mode!r}")
        groups = optimizer.param_groups
        self.min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * len(groups)
        self.optimizer, self.mode, self.factor = optimizer, mode, float(factor)
        self.patience, self.threshold, self.threshold_mode = int(patience), threshold, threshold_mode
        self.cooldown, self.eps = int(cooldown), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = self.last_epoch = 0

    def _better(self, value):
        if self.mode == "min":
            bar = self.best * (1 - self.threshold) if self.threshold_mode == "rel" \
                else self.best - self.threshold
            return value < bar
        bar = self.best * (1 + self.threshold) if self.threshold_mode == "rel" \
            else self.best + self.threshold
        return value > bar

    def step(self, metrics):
        value = float(metrics)
        if value != value:
            raise ValueError("ReduceLROnPlateau.step: the watched value is NaN")
        self.last_epoch += 1
        if self._better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(group["lr"] * self.factor, floor)
                if group["lr"] - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Numbers only, for an .npz next to the weights."""
        return {"best": float(self.best), "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        try:
            self.best = float(np.asarray(state["best"]))
            self.num_bad_epochs = int(np.asarray(state["num_bad_epochs"]))
            self.cooldown_counter = int(np.asarray(state["cooldown_counter"]))
            self.last_epoch = int(np.asarray(state["last_epoch"]))
        except (KeyError, TypeError, ValueError) as err:
            raise OptimizerStateError(f"ReduceLROnPlateau.load_state_dict: {err}") from None
