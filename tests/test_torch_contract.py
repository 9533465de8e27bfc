"""torch.optim's public contract, checked on EVERY regkit optimizer class (issue 27).

Modelled on what PyTorch's own TestOptimRenewed asserts for torch.optim (test_state_dict_deterministic,
test_load_nontensor_step, test_errors, test_can_load_older_state_dict, test_deepcopy_copies_all_public_attrs,
step hooks), written against torch's public behaviour: a checkpoint round trip changes nothing (param-group
keys and values, state, the next steps), a Python-number ``step`` loads, bad hyperparameters raise
ValueError before ``params`` is looked at, and unsupported inputs (tensor lr, complex params, sparse
gradients) fail with a clear ValueError.
"""

import copy
import inspect
from functools import partial

import pytest
import torch
from torch import nn

import regkit.optim as ro
from regkit.penalties import GNP, SAM


def graft(params, **kwargs):
    schedule = ro.GraftingSchedule("global", [torch.tensor(0.5, dtype=torch.float64)] * 100)
    return ro.Graft(params, schedule=schedule, **kwargs)


def grafted(params, lr, norm="layer"):
    """Adam's step length per tensor on momentum SGD's direction (Agarwal et al.'s Adam#SGD)."""
    return ro.Grafted(params, partial(ro.Adam, lr=lr), partial(ro.SGD, lr=lr, momentum=0.9), norm=norm)


# name -> (constructor, kwargs, one bad hyperparameter (name, value)); every Optimizer class of
# regkit.optim and regkit.penalties must be here (test_every_optimizer_class_is_covered).
FACTORIES = {
    "SGD": (ro.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01), ("momentum", -0.5)),
    "SGDW": (ro.SGDW, dict(lr=0.1, momentum=0.9, weight_decay=0.01), ("weight_decay", -1.0)),
    "Adam": (ro.Adam, dict(lr=0.01, amsgrad=True), ("betas", (1.0, 0.0))),
    "AdamW": (ro.AdamW, dict(lr=0.01), ("eps", -1e-8)),
    "AdamP": (ro.AdamP, dict(lr=0.01, weight_decay=0.01), ("wd_ratio", 1.5)),
    "SGDP": (ro.SGDP, dict(lr=0.1, momentum=0.9), ("delta", -1.0)),
    "AdamCPR": (ro.AdamCPR, dict(lr=0.01, kappa_init_method="uniform", kappa_init_param=0.5, verbose=False),
                ("kappa_update", -1.0)),
    "AdamAWD": (ro.AdamAWD, dict(lr=0.01, weight_decay=0.1), ("lr", float("nan"))),
    "AdamAdaDecay": (ro.AdamAdaDecay, dict(lr=0.01), ("alpha", -1.0)),
    "NGD": (ro.NGD, dict(lr=0.01), ("lr", float("nan"))),
    "Graft": (graft, dict(lr=0.01, norm="global"), ("eps", 0.0)),
    "Grafted": (grafted, dict(lr=0.01), ("norm", "rows")),
    "SAM": (lambda ps, **kw: SAM(ps, ro.SGD, **kw), dict(rho=0.05, lr=0.1, momentum=0.9), ("rho", -0.1)),
    "GNP": (lambda ps, **kw: GNP(ps, ro.SGD, **kw), dict(alpha=0.8, r=0.05, lr=0.1), ("r", -0.1)),
}
NAMES = list(FACTORIES)
STEP_KEY = {"SGD": False, "SGDW": False, "SGDP": False, "SAM": False, "GNP": False}  # others keep state["step"]


class Net(nn.Module):
    """A matrix and a bias in float64; the loss is a fixed least-squares problem (seeded by ``step``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(2, dtype=torch.float64))

    def loss(self, step: int):
        g = torch.Generator().manual_seed(step)
        x, y = (torch.randn(8, k, generator=g, dtype=torch.float64) for k in (3, 2))
        return (x @ self.w + self.b - y).square().mean()


def build(name, params, **overrides):
    make, kwargs, _ = FACTORIES[name]
    return make(params, **{**kwargs, **overrides})


def run(opt, net, steps, start=0):
    for step in range(start, start + steps):

        def closure(step=step):
            opt.zero_grad()
            loss = net.loss(step)
            loss.backward()
            return loss

        opt.step(closure)


def assert_same_state(opt_a, opt_b, params_a, params_b):
    for p, q in zip(params_a, params_b, strict=True):
        assert torch.equal(p, q)
        state_a, state_b = opt_a.state.get(p, {}), opt_b.state.get(q, {})
        assert state_a.keys() == state_b.keys()
        for key, value in state_a.items():
            assert torch.is_tensor(state_b[key]) == torch.is_tensor(value), key
            assert torch.equal(value, state_b[key]) if torch.is_tensor(value) else value == state_b[key], key


def groups_without_params(opt):
    return [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]


def test_every_optimizer_class_is_covered():
    import regkit.penalties as rp

    classes = {
        name
        for module in (ro, rp)
        for name in module.__all__
        if inspect.isclass(getattr(module, name)) and issubclass(getattr(module, name), torch.optim.Optimizer)
    }
    assert classes == set(FACTORIES)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_deterministic(name):
    """Issue 27.1: after load_state_dict the param groups have the same keys (no 'differentiable') and values,
    the state is equal, and both optimizers take identical steps afterwards."""
    net, twin = Net(), Net()
    opt = build(name, net.parameters())
    run(opt, net, 2)
    twin.load_state_dict(net.state_dict())
    loaded = build(name, twin.parameters())
    loaded.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert groups_without_params(loaded) == groups_without_params(opt)
    assert loaded.defaults.keys() == opt.defaults.keys()
    assert_same_state(opt, loaded, net.parameters(), twin.parameters())
    run(opt, net, 2, start=2)
    run(loaded, twin, 2, start=2)
    assert_same_state(opt, loaded, net.parameters(), twin.parameters())
    assert groups_without_params(loaded) == groups_without_params(opt)


@pytest.mark.parametrize("name", [n for n in NAMES if STEP_KEY.get(n, True)])
def test_load_nontensor_step(name):
    """Issue 27.2: a state dict whose step counts are Python numbers loads and steps like the tensor one."""
    net, twin = Net(), Net()
    opt = build(name, net.parameters())
    run(opt, net, 2)
    saved = copy.deepcopy(opt.state_dict())
    for buffers in saved["state"].values():
        buffers["step"] = buffers["step"].item()
    twin.load_state_dict(net.state_dict())
    loaded = build(name, twin.parameters())
    loaded.load_state_dict(saved)
    assert all(torch.is_tensor(s["step"]) for s in loaded.state.values())
    run(opt, net, 2, start=2)
    run(loaded, twin, 2, start=2)
    assert_same_state(opt, loaded, net.parameters(), twin.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_errors_name_the_bad_hyperparameter_before_params_are_inspected(name):
    """Issue 27.3: as torch.optim (whose error inputs pass params=None), hyperparameters are validated first."""
    argument, value = FACTORIES[name][2]
    with pytest.raises(ValueError) as error:
        build(name, None, **{argument: value})
    shown = value if isinstance(value, tuple) else (value,)
    assert argument in str(error.value) and any(str(v) in str(error.value) for v in shown), str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_can_load_older_state_dict(name):
    """A checkpoint saved before an option existed (its groups lack the key) loads with the option's default."""
    net = Net()
    opt = build(name, net.parameters())
    run(opt, net, 1)
    saved = copy.deepcopy(opt.state_dict())
    for group in saved["param_groups"]:
        for key in ("foreach", "maximize", "decoupled_weight_decay", "amsgrad"):
            group.pop(key, None)
    loaded = build(name, net.parameters())
    loaded.load_state_dict(saved)
    assert groups_without_params(loaded) == groups_without_params(opt)
    run(loaded, net, 1, start=1)


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_keeps_public_attributes(name):
    net = Net()
    opt = build(name, net.parameters())
    run(opt, net, 1)
    clone = copy.deepcopy(opt)
    public = {k for k in vars(opt) if not k.startswith("_")}
    assert public <= set(vars(clone)), public - set(vars(clone))
    assert groups_without_params(clone) == groups_without_params(opt)


@pytest.mark.parametrize("name", NAMES)
def test_step_hooks_run_once_per_step(name):
    net = Net()
    opt = build(name, net.parameters())
    calls = []
    opt.register_step_pre_hook(lambda *args: calls.append("pre"))
    opt.register_step_post_hook(lambda *args: calls.append("post"))
    run(opt, net, 2)
    assert calls == ["pre", "post"] * 2


@pytest.mark.parametrize("name", NAMES)
def test_empty_parameter_list_is_refused(name):
    with pytest.raises(ValueError, match="empty parameter list"):
        build(name, [])


@pytest.mark.parametrize("name", NAMES)
def test_unsupported_inputs_raise_clear_errors(name):
    """Tensor lr, complex params and sparse gradients are not supported: each is a ValueError saying so."""
    if name in ("SAM", "GNP"):  # the base optimizer owns lr and dtypes (checked as SGD)
        with pytest.raises(ValueError, match="lr"):
            build(name, Net().parameters(), lr=torch.tensor(0.1))
    else:
        with pytest.raises(ValueError, match="lr"):
            build(name, Net().parameters(), lr=torch.tensor(0.01))
        with pytest.raises(ValueError, match="complex64"):
            build(name, [nn.Parameter(torch.ones(2, 2, dtype=torch.complex64))])
    w = nn.Parameter(torch.ones(4, 3, dtype=torch.float64))
    opt = build(name, [w])

    def closure():
        w.grad = torch.ones(4, 3, dtype=torch.float64).to_sparse()
        return torch.zeros(())

    with pytest.raises(ValueError, match="sparse"):
        opt.step(closure)


@pytest.mark.parametrize("make", [ro.SGD, ro.SGDW, ro.SGDP])
def test_sgd_family_defaults_lr_like_torch_sgd(make):
    """torch.optim.SGD(params) defaults lr to 1e-3; regkit's SGD, SGDW and SGDP required it."""
    params = list(Net().parameters())
    assert make(params).defaults["lr"] == torch.optim.SGD(params).defaults["lr"] == 1e-3
