"""AdamW and the schedules added under PyTorch's names, step by step against torch.optim."""
import numpy as np
import pytest

import minicnn
import minicnn.optim as optim

torch = pytest.importorskip("torch", reason="compared with torch.optim")


def _twins(shape=(3, 4), seed=0, device="cpu"):
    value = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ours = minicnn.nn.Parameter(value, device=device)
    theirs = torch.nn.Parameter(torch.from_numpy(value.copy()))
    return ours, theirs


@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.3])
def test_adamw_matches_torch_over_steps(backend, weight_decay):
    p, q = _twins(device=backend)
    ours = optim.AdamW([p], lr=0.05, weight_decay=weight_decay)
    theirs = torch.optim.AdamW([q], lr=0.05, weight_decay=weight_decay)
    rng = np.random.default_rng(1)
    for _ in range(6):
        g = rng.standard_normal(p.shape).astype(np.float32)
        p.grad = minicnn.tensor(g, device=backend)
        q.grad = torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert ours.param_groups[0]["weight_decay"] == weight_decay


def test_adamw_default_decay_is_torchs():
    p, q = _twins()
    assert optim.AdamW([p]).param_groups[0]["weight_decay"] == \
        torch.optim.AdamW([q]).param_groups[0]["weight_decay"]


def _lrs_and_momenta(opt, key):
    group = opt.param_groups[0]
    m = group["betas"][0] if key == "betas" else group.get("momentum")
    return group["lr"], m


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("settings", [
    dict(max_lr=0.1, total_steps=17),
    dict(max_lr=0.3, epochs=3, steps_per_epoch=5, pct_start=0.4, anneal_strategy="linear"),
    dict(max_lr=0.2, total_steps=20, three_phase=True, div_factor=10, final_div_factor=100),
    dict(max_lr=0.1, total_steps=9, cycle_momentum=False),
])
def test_one_cycle_lr_matches_torch_at_every_step(kind, settings):
    p, q = _twins()
    if kind == "sgd":
        ours, theirs = optim.SGD([p], lr=0.01, momentum=0.9), torch.optim.SGD([q], lr=0.01, momentum=0.9)
    else:
        ours, theirs = optim.Adam([p], lr=0.01), torch.optim.Adam([q], lr=0.01)
    a = optim.lr_scheduler.OneCycleLR(ours, **settings)
    b = torch.optim.lr_scheduler.OneCycleLR(theirs, **settings)
    key = "betas" if kind == "adam" else "momentum"
    total = settings.get("total_steps") or settings["epochs"] * settings["steps_per_epoch"]
    for step in range(total):
        lr, m = _lrs_and_momenta(ours, key)
        tlr, tm = _lrs_and_momenta(theirs, key)
        assert lr == pytest.approx(tlr, rel=1e-12, abs=1e-15), step
        assert m == pytest.approx(tm, rel=1e-12), step
        theirs.step()
        b.step()
        a.step()
    with pytest.raises(ValueError, match="total_steps"):
        a.step()


@pytest.mark.parametrize("settings", [
    dict(),
    dict(mode="max", factor=0.5, patience=1),
    dict(patience=0, threshold=0.1, threshold_mode="abs", cooldown=2, min_lr=0.004),
])
def test_reduce_lr_on_plateau_matches_torch(settings):
    p, q = _twins()
    ours, theirs = optim.SGD([p], lr=0.1), torch.optim.SGD([q], lr=0.1)
    a = optim.lr_scheduler.ReduceLROnPlateau(ours, **settings)
    b = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **settings)
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.89, 0.99, 1.2, 1.2, 1.2, 0.3] * 3
    for v in values:
        a.step(v)
        b.step(v)
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12)
    restored = optim.lr_scheduler.ReduceLROnPlateau(optim.SGD([p], lr=0.1), **settings)
    restored.load_state_dict(a.state_dict())
    assert restored.best == a.best and restored.num_bad_epochs == a.num_bad_epochs


def test_schedulers_live_under_torchs_module_path():
    from minicnn.optim.lr_scheduler import CosineAnnealingLR, StepLR
    assert optim.StepLR is StepLR and optim.lr_scheduler.CosineAnnealingLR is CosineAnnealingLR
