"""minicnn.optim against torch.optim: the same tensors, the same gradients, several steps.

The update arithmetic runs in each device's backend (sgd_step / adam_step), so the
SGD and Adam comparisons, the schedules driving them, and saving and resuming their
state run on every backend the machine has (`backend` fixture), against torch and
against the same steps on the cpu.
"""
import numpy as np
import pytest
import torch

import minicnn
from minicnn import nn, optim

from torch_compare import assert_close, numba_cpu, on_numba_cpu, train_step_both


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SHAPES = [(4, 3, 3, 3), (4,), (5, 7)]
STEPS = 6


def make_pair(device, seed=0):
    """The same starting values as minicnn Parameters and torch Parameters."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    ours = [nn.Parameter(v, device=device) for v in values]
    ref = [torch.nn.Parameter(torch.tensor(v)) for v in values]
    return ours, ref


def run_both(opt, topt, ours, ref, steps, seed=1, skip=None):
    """Feed both optimisers the same gradients for `steps` steps; parameter `skip` gets none."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for i, (p, tp) in enumerate(zip(ours, ref)):
            if i == skip:
                p.grad, tp.grad = None, None
                continue
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = minicnn.tensor(g, device=p.device)
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()


def check_same(ours, ref, what):
    for i, (p, tp) in enumerate(zip(ours, ref)):
        assert_close(p.numpy(), tp.detach().numpy(), 1e-6, 1e-5, f"{what}: parameter {i}")


def check_against_cpu(make, tmake, kwargs, ours, steps, skip, what):
    """The same steps on the cpu give the same parameters as `ours` on its device."""
    device = ours[0].device
    for p in ours:
        assert p.device == device and p.dtype == np.float32, what
    if device == "cpu" and on_numba_cpu():
        return
    with numba_cpu():
        cpu, ref = make_pair("cpu")
        run_both(make(cpu, **kwargs), tmake(ref, **kwargs), cpu, ref, steps, skip=skip)
    for i, (p, q) in enumerate(zip(ours, cpu)):
        assert_close(p.numpy(), q.numpy(), 1e-6, 1e-5, f"{what}: parameter {i} against cpu")


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, weight_decay=5e-3, nesterov=True),
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_sgd_matches_torch(backend, kwargs):
    ours, ref = make_pair(backend)
    opt, topt = optim.SGD(ours, **kwargs), torch.optim.SGD(ref, **kwargs)
    run_both(opt, topt, ours, ref, STEPS, skip=1)
    check_same(ours, ref, f"SGD {kwargs} on {backend}")
    check_against_cpu(optim.SGD, torch.optim.SGD, kwargs, ours, STEPS, 1, f"SGD {kwargs} on {backend}")
    assert 1 not in opt.state  # a parameter with no gradient gets no state, as in torch
    if kwargs.get("momentum", 0):
        tbuf = topt.state[ref[0]]["momentum_buffer"].numpy()
        assert_close(opt.state_dict()["state.0.momentum_buffer"], tbuf, 1e-6, 1e-5,
                     "SGD momentum buffer")


ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
]


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_adam_matches_torch(backend, kwargs):
    ours, ref = make_pair(backend)
    opt, topt = optim.Adam(ours, **kwargs), torch.optim.Adam(ref, **kwargs)
    run_both(opt, topt, ours, ref, STEPS, skip=2)
    check_same(ours, ref, f"Adam {kwargs} on {backend}")
    check_against_cpu(optim.Adam, torch.optim.Adam, kwargs, ours, STEPS, 2, f"Adam {kwargs} on {backend}")
    assert opt.state[0]["step"] == STEPS and 2 not in opt.state
    tstate = topt.state[ref[0]]
    state = opt.state_dict()
    assert_close(state["state.0.exp_avg"], tstate["exp_avg"].numpy(), 1e-6, 1e-5, "Adam exp_avg")
    assert_close(state["state.0.exp_avg_sq"], tstate["exp_avg_sq"].numpy(), 1e-7, 1e-5,
                 "Adam exp_avg_sq")


def test_param_groups_and_zero_grad(backend):
    ours, ref = make_pair(backend)
    groups = [{"params": ours[:2], "lr": 0.01}, {"params": ours[2:], "momentum": 0.5}]
    tgroups = [{"params": ref[:2], "lr": 0.01}, {"params": ref[2:], "momentum": 0.5}]
    opt, topt = optim.SGD(groups, lr=0.1), torch.optim.SGD(tgroups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    run_both(opt, topt, ours, ref, 3)
    check_same(ours, ref, "SGD with two parameter groups")
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_trains_a_model_parameters_from_module(backend):
    # the usual loop: a loss that SGD drives down on a tiny problem
    minicnn.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).to(backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    opt = optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = minicnn.functional.cross_entropy(net(minicnn.tensor(x, device=backend)),
                                                minicnn.tensor(y, device=backend))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("make,kwargs", [(optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                                         (optim.Adam, dict(lr=1e-2, betas=(0.8, 0.95)))],
                         ids=["sgd", "adam"])
def test_state_dict_round_trip_through_npz(tmp_path, backend, make, kwargs):
    ours, _ = make_pair(backend)
    opt = make(ours, **kwargs)
    rng = np.random.default_rng(2)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(6)]

    def step(o, params, g):
        for p, gi in zip(params, g):
            p.grad = minicnn.tensor(gi, device=backend)
        o.step()

    for g in grads[:3]:
        step(opt, ours, g)
    state = opt.state_dict()
    for key, value in state.items():  # numpy arrays and plain numbers only
        assert isinstance(value, (np.ndarray, int, float, bool)), (key, type(value))
    np.savez(tmp_path / "opt.npz", **state)
    resumed_params = [nn.Parameter(p.numpy().copy(), device=backend) for p in ours]
    resumed = make(resumed_params, lr=123.0)  # settings come back from the file
    with np.load(tmp_path / "opt.npz") as saved:
        resumed.load_state_dict(dict(saved))
    assert resumed.param_groups[0]["lr"] == kwargs["lr"]
    for g in grads[3:]:
        step(opt, ours, g)
        step(resumed, resumed_params, g)
    for i, (p, q) in enumerate(zip(ours, resumed_params)):
        assert_close(q.numpy(), p.numpy(), 0, 0, f"resumed parameter {i}")


def test_load_state_dict_errors():
    ours, _ = make_pair("cpu")
    sgd = optim.SGD(ours, lr=0.1, momentum=0.9)
    adam = optim.Adam(ours)
    for p in ours:
        p.grad = minicnn.ones(*p.shape)
    sgd.step()
    adam.step()
    with pytest.raises(optim.OptimizerStateError, match="another optimiser"):
        optim.SGD(ours, lr=0.1, momentum=0.9).load_state_dict(adam.state_dict())
    with pytest.raises(optim.OptimizerStateError, match="saved with 3 parameters.*has 2"):
        optim.SGD(ours[:2], lr=0.1).load_state_dict(sgd.state_dict())
    bad = sgd.state_dict()
    bad["state.0.momentum_buffer"] = np.zeros((2, 2), np.float32)
    with pytest.raises(optim.OptimizerStateError, match=r"\(2, 2\).*\(4, 3, 3, 3\)"):
        optim.SGD(ours, lr=0.1, momentum=0.9).load_state_dict(bad)


def test_argument_checks():
    ours, _ = make_pair("cpu")
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(ours, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(ours, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(ours, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="iterable"):
        optim.Adam(ours[0])
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)


# --- learning-rate schedules ------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda o, m: m.StepLR(o, step_size=3, gamma=0.5),
    lambda o, m: m.CosineAnnealingLR(o, T_max=10),
    lambda o, m: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
], ids=["step", "cosine", "cosine-eta-min"])
def test_schedulers_match_torch(backend, make):
    ours, ref = make_pair(backend)
    opt = optim.SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.3}], lr=0.1)
    topt = torch.optim.SGD([{"params": ref[:1]}, {"params": ref[1:], "lr": 0.3}], lr=0.1)
    sched, tsched = make(opt, optim), make(topt, torch.optim.lr_scheduler)
    for epoch in range(25):  # past T_max, where the cosine climbs back
        assert_close(sched.get_last_lr(), tsched.get_last_lr(), 1e-12, 1e-9, f"lr at epoch {epoch}")
        assert_close([g["lr"] for g in opt.param_groups], tsched.get_last_lr(), 1e-12, 1e-9,
                     f"group lr at epoch {epoch}")
        run_both(opt, topt, ours, ref, 1, seed=epoch)  # a step at this lr, on the device
        sched.step(), tsched.step()
    check_same(ours, ref, f"SGD under a schedule on {backend}")


def test_scheduler_state_dict_resumes(tmp_path, backend):
    ours, _ = make_pair(backend)
    opt = optim.SGD(ours, lr=0.1)
    sched = optim.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        sched.step()
    np.savez(tmp_path / "s.npz", **sched.state_dict())
    np.savez(tmp_path / "o.npz", **opt.state_dict())  # holds the lr the schedule has set
    opt2 = optim.SGD(ours, lr=0.1)
    sched2 = optim.CosineAnnealingLR(opt2, T_max=10)
    with np.load(tmp_path / "o.npz") as saved:
        opt2.load_state_dict(dict(saved))
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] < 0.1
    with np.load(tmp_path / "s.npz") as saved:
        sched2.load_state_dict(dict(saved))
    for _ in range(3):
        sched.step(), sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, step_size=0)


@pytest.mark.parametrize("optimiser,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)),
                                              ("Adam", dict(lr=1e-2))])
def test_module_to_device_then_train_matches_torch(backend, optimiser, kwargs):
    # model.to(device) moves parameters in place, so an optimiser made before the move
    # updates them on the device: a tiny conv net trained there agrees with torch
    T = torch.nn
    ref = T.Sequential(T.Conv2d(1, 2, 3), T.ReLU(), T.MaxPool2d(2), T.Flatten(), T.Linear(16, 2))
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(16, 2))
    net.load_state_dict(ref.state_dict())
    opt = getattr(optim, optimiser)(net.parameters(), **kwargs)
    topt = getattr(torch.optim, optimiser)(ref.parameters(), **kwargs)
    assert net.to(backend) is net and net.device == backend
    rng = np.random.default_rng(3)
    for step in range(3):
        x = rng.standard_normal((2, 1, 6, 10)).astype(np.float32)
        y = np.array([0, 1])
        loss, tloss = train_step_both(net, ref, opt, topt, x, y, backend)
        assert_close(loss, tloss, 0, 1e-5, f"loss at step {step} on {backend}")
    net.to("cpu")
    for name, value in ref.state_dict().items():
        assert_close(net.state_dict()[name], value.numpy(), 1e-6, 1e-5, f"{name} on {backend}")
