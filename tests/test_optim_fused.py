"""``fused=True``: torch's fused Adam/SGD kernels for the base step, the methods' additions on the foreach path,
and regkit's CPU kernels (AdamCPR, AdamAWD, AdamAdaDecay, AdamP, SGDP on float32/float64 CPU tensors).

Each fusable class runs the same seeded steps (a new lr every step) fused and foreach, in float32, float64
and bfloat16, with regkit's CPU kernels and without them (``REGKIT_CPU_KERNELS=0``), and must agree within
``FUSED_TOLERANCE``; checkpoints load across the paths.
"""

import copy

import pytest
import torch

import regkit.optim as ro
from regkit.optim import cpu_kernels
from regkit.optim.fused import FUSED_TOLERANCE

SHAPES = [(6, 4), (4,), (3, 2, 2, 2)]


def adam_cpr(params, **kwargs):
    groups = [{"params": [params[0], params[2]], "regularize": True}, {"params": [params[1]], "regularize": False}]
    return ro.AdamCPR(groups, lr=0.01, reg_step_size=2, verbose=False, **kwargs)  # inflection point, set at step 4


MAKERS = {
    "SGD": lambda ps, **kw: ro.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True, **kw),
    "SGDW": lambda ps, **kw: ro.SGDW(ps, lr=0.05, momentum=0.9, weight_decay=1e-2, **kw),
    "Adam": lambda ps, **kw: ro.Adam(ps, lr=0.01, weight_decay=1e-3, amsgrad=True, **kw),
    "AdamW": lambda ps, **kw: ro.AdamW(ps, lr=0.01, weight_decay=1e-2, corrected=True, **kw),
    "SGD_plain_maximize": lambda ps, **kw: ro.SGD(ps, lr=0.05, weight_decay=1e-3, maximize=True, **kw),
    "SGD_dampening_corrected": lambda ps, **kw: ro.SGD(ps, lr=0.05, momentum=0.5, dampening=0.1, weight_decay=1e-2,
                                                       decoupled_weight_decay=True, corrected=True, **kw),
    "Adam_maximize": lambda ps, **kw: ro.Adam(ps, lr=0.01, decoupled_weight_decay=True, weight_decay=1e-2,
                                              maximize=True, **kw),
    "AdamW_cautious": lambda ps, **kw: ro.AdamW(ps, lr=0.01, weight_decay=1e-2, cautious=True, **kw),
    "AdamCPR_pre_step_std": lambda ps, **kw: adam_cpr(ps, reg_order="pre_step", reg_function="std", **kw),
    "SGD_CPR": lambda ps, **kw: ro.with_cpr(ro.SGD)(ps, lr=0.05, momentum=0.9, verbose=False, **kw),
    "AdamCPR": adam_cpr,
    "AdamAWD": lambda ps, **kw: ro.AdamAWD(ps, lr=0.01, weight_decay=1e-2, **kw),
    "AdamAWD_amsgrad": lambda ps, **kw: ro.AdamAWD(ps, lr=0.01, weight_decay=5e-2, amsgrad=True, **kw),
    "AdamAdaDecay": lambda ps, **kw: ro.AdamAdaDecay(ps, lr=0.01, weight_decay=1e-2, **kw),
    "AdamP": lambda ps, **kw: ro.AdamP(ps, lr=0.01, weight_decay=1e-2, **kw),
    "SGDP": lambda ps, **kw: ro.SGDP(ps, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True, **kw),
}
PROJECTIONS = ("AdamP", "SGDP")  # no torch kernel: regkit's CPU kernels, else the foreach path


def tensors(seed: int = 0, dtype=torch.float32) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=generator, dtype=torch.float64).to(dtype)) for s in SHAPES]


def run(opt, params, steps: range) -> None:
    """Step with seeded gradients and a decaying lr (a new lr every step, as a scheduler gives)."""
    for t in steps:
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(100 * t + i), dtype=torch.float64).to(p)
        for group in opt.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * 0.9**t
        opt.step()


def assert_close(ours, theirs, params_a, params_b) -> None:
    tol = FUSED_TOLERANCE[params_a[0].dtype]
    for p, q in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(p, q, **tol)
        for key, value in ours.state[p].items():
            torch.testing.assert_close(value, theirs.state[q][key], **tol, check_dtype=True, msg=key)


# the methods regkit's CPU kernels step (float32/float64 CPU tensors, no amsgrad)
ON_REGKIT_KERNELS = ("AdamCPR_pre_step_std", "AdamCPR", "AdamAWD", "AdamAdaDecay", *PROJECTIONS)


def count_calls(monkeypatch, module, names: tuple[str, ...]) -> list:
    calls = []
    for name in names:
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _k=original, **kw: calls.append(1) or _k(*a, **kw))
    return calls


@pytest.mark.parametrize("kernels", ["regkit", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["float32", "float64", "bf16"])
@pytest.mark.parametrize("name", list(MAKERS))
def test_fused_steps_equal_the_foreach_steps(name, dtype, kernels, monkeypatch):
    if kernels == "torch":
        monkeypatch.setenv("REGKIT_CPU_KERNELS", "0")
    torch_calls = count_calls(monkeypatch, torch, ("_fused_adam_", "_fused_adamw_", "_fused_sgd_"))
    regkit_calls = count_calls(monkeypatch, cpu_kernels, ("adam_step_", "projected_step_"))
    a, b = tensors(dtype=dtype), tensors(dtype=dtype)
    reference = MAKERS[name](a, foreach=True)
    run(reference, a, range(6))
    assert torch_calls == regkit_calls == []
    fused = MAKERS[name](b, fused=True)
    run(fused, b, range(6))
    assert_close(reference, fused, a, b)
    foreach_only = "cautious" in name or name in PROJECTIONS or (name.startswith("SGD") and dtype == torch.bfloat16)
    on_regkit = kernels == "regkit" and name in ON_REGKIT_KERNELS and dtype != torch.bfloat16
    assert len(regkit_calls) >= 6 if on_regkit else regkit_calls == []
    assert len(torch_calls) == 0 if foreach_only or on_regkit else len(torch_calls) >= 6  # these keep the foreach path


def test_fused_is_not_a_param_group_key_and_state_dicts_have_the_same_keys():
    a, b = tensors(), tensors()
    reference, fused = MAKERS["AdamCPR"](a, foreach=True), MAKERS["AdamCPR"](b, fused=True)
    run(reference, a, range(2))
    run(fused, b, range(2))
    ours, theirs = fused.state_dict(), reference.state_dict()
    assert [sorted(g) for g in ours["param_groups"]] == [sorted(g) for g in theirs["param_groups"]]
    assert "fused" not in ours["param_groups"][0]
    assert {i: sorted(s) for i, s in ours["state"].items()} == {i: sorted(s) for i, s in theirs["state"].items()}


@pytest.mark.parametrize("saved_fused", [True, False], ids=["fused_to_foreach", "foreach_to_fused"])
def test_checkpoints_load_across_paths_and_the_loader_keeps_its_path(saved_fused):
    make = MAKERS["AdamW"]
    a, b = tensors(), tensors()
    uninterrupted, saver = make(a, fused=saved_fused), make(b, fused=saved_fused)
    run(uninterrupted, a, range(4))
    run(saver, b, range(2))
    c = [torch.nn.Parameter(p.detach().clone()) for p in b]
    loader = make(c, fused=not saved_fused)
    loader.load_state_dict(copy.deepcopy(saver.state_dict()))
    assert loader.fused is (not saved_fused)
    run(loader, c, range(2, 4))
    assert_close(uninterrupted, loader, a, c)


def test_deepcopy_and_pickle_keep_fused():
    opt = ro.SGD(tensors(), lr=0.1, fused=True)
    assert copy.deepcopy(opt).fused is True
    assert ro.SGD(tensors(), lr=0.1).fused is False


def test_fused_with_foreach_true_and_a_non_flag_are_refused():
    with pytest.raises(ValueError, match="fused=True and foreach=True cannot both be set"):
        ro.Adam(tensors(), foreach=True, fused=True)
    opt = ro.Adam(tensors(), fused=True)
    with pytest.raises(ValueError, match="fused=True and foreach=True"):
        opt.add_param_group({"params": tensors(1), "foreach": True})
    with pytest.raises(ValueError, match="fused"):
        ro.AdamW(tensors(), fused="yes")


def test_optimizers_without_a_fused_step_refuse_fused():
    class Unfused(ro.SGD):  # every regkit optimizer has a fused step now; a subclass may still say it has none
        fusable = False

    with pytest.raises(ValueError, match="Unfused has no fused step .*use fused=False"):
        Unfused(tensors(), lr=0.1, fused=True)


def test_a_cautious_group_runs_the_foreach_path_bit_for_bit():
    a, b = tensors(), tensors()
    reference, fused = MAKERS["AdamW_cautious"](a, foreach=True), MAKERS["AdamW_cautious"](b, fused=True)
    run(reference, a, range(3))
    run(fused, b, range(3))
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)


def test_fused_adam_awd_decays_each_tensor_by_its_own_lambda_bar():
    """A tensor without a gradient for a step keeps an older lambda_bar: on the CPU the fused kernel runs once per
    distinct value, and the result equals the foreach path."""
    a, b = tensors(), tensors()
    reference, fused = MAKERS["AdamAWD"](a, foreach=True), MAKERS["AdamAWD"](b, fused=True)
    for opt, params in ((reference, a), (fused, b)):
        run(opt, params, range(3))
        params[1].grad = None  # skipped for two steps: its lambda_bar falls behind the others'
        for t in range(3, 5):
            for i in (0, 2):
                params[i].grad = torch.randn(params[i].shape, generator=torch.Generator().manual_seed(t + i))
            opt.step()
    lambdas = [float(fused.state[p]["awd_lambda"]) for p in b]
    assert lambdas[0] == lambdas[2] != lambdas[1]
    assert_close(reference, fused, a, b)


def test_regkit_fused_in_the_environment_makes_fused_the_default_where_nothing_is_chosen(monkeypatch):
    monkeypatch.setenv("REGKIT_FUSED", "1")
    assert ro.AdamW(tensors()).fused is True and ro.AdamCPR(tensors(), verbose=False).fused is True
    assert ro.AdamW(tensors(), fused=False).fused is False  # an explicit choice wins
    assert ro.Adam(tensors(), foreach=True).fused is False  # so does foreach=True
    monkeypatch.setenv("REGKIT_FUSED", "0")
    assert ro.AdamW(tensors()).fused is False
    monkeypatch.setenv("REGKIT_FUSED", "yes")
    with pytest.raises(ValueError, match="REGKIT_FUSED must be 1 .* or 0 .*got 'yes'"):
        ro.AdamW(tensors())
