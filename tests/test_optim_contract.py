"""The optimizer contract: generic checks run on every case of tests/cases.py.

Trajectories are compared bit for bit unless a case declares a tolerance. Every step goes
through ``opt.step(closure)`` (two-pass optimizers need it; for one-pass ones it equals a
backward followed by ``step()``), except where a check needs ``.grad`` set beforehand.
"""

import io
import warnings

import pytest
import torch
from torch import nn

from tests.cases import CASES, CHECKS, Case
from tests.problems import MixedDtypeNet, Quadratic, Rosenbrock, TinyNet

CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


def require(case: Case, check: str):
    if check in case.skip:
        pytest.skip(f"{case.id}: {case.skip[check]}")


def path(case: Case, foreach: bool) -> dict:
    """The kwargs that select a path; a case that skips "foreach" has no switch and runs its default path only."""
    if "foreach" not in case.skip:
        return {"foreach": foreach}
    if foreach:
        pytest.skip(f"{case.id}: {case.skip['foreach']}")
    return {}


def build(case: Case, model: nn.Module, **overrides):
    kwargs = {**case.kwargs, **overrides}
    return case.make(model if case.takes_model else model.parameters(), **kwargs)


def objective(case: Case, model: nn.Module, step: int):
    """The model's loss, negated for maximizing cases, so every case makes the loss go down."""
    loss = model.loss(step)
    return -loss if case.maximize else loss


def take_step(case: Case, opt, model: nn.Module, step: int):
    def closure():
        opt.zero_grad()
        loss = objective(case, model, step)
        loss.backward()
        return loss

    return opt.step(closure)


def run(case: Case, opt, model: nn.Module, steps: int, start: int = 0):
    for step in range(start, start + steps):
        take_step(case, opt, model, step)


def assert_same(case: Case, check: str, models, opts):
    """Parameters and optimizer state of two runs agree (bit for bit unless the case says otherwise)."""
    (model_a, model_b), (opt_a, opt_b) = models, opts
    tol = case.tol(check)
    for (name, p), q in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(
            p, q, **tol, msg=lambda m, name=name: f"{case.id} {check}: param {name}: {m}"
        )
        state_a, state_b = opt_a.state.get(p, {}), opt_b.state.get(q, {})
        assert state_a.keys() == state_b.keys(), (name, state_a.keys(), state_b.keys())
        for key, value in state_a.items():
            if torch.is_tensor(value):
                torch.testing.assert_close(
                    value,
                    state_b[key],
                    **tol,
                    msg=lambda m, k=key, n=name: f"{case.id} {check}: state[{n}][{k}]: {m}",
                )
            else:
                assert value == state_b[key], (name, key)


def grads_of(case: Case, model: nn.Module, step: int = 0):
    model.zero_grad()
    objective(case, model, step).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_case_table_is_well_formed():
    assert len({case.id for case in CASES}) == len(CASES)
    for case in CASES:
        assert set(case.skip) <= set(CHECKS) and set(case.tolerance) <= set(CHECKS), case.id
        assert case.invalid or "invalid" in case.skip, (
            f"{case.id}: list invalid kwargs or skip 'invalid' with a reason"
        )
        for problem in ("quadratic", "rosenbrock"):
            assert problem in case.converge or problem in case.skip, (
                f"{case.id}: converge settings for {problem}"
            )


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_first_step_goes_downhill(case):
    require(case, "direction")
    model = TinyNet()
    loss_before = model.loss(0)
    loss_before.backward()  # downhill on the loss (maximizing cases ascend its negation)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = build(case, model)
    take_step(case, opt, model, 0)
    moved = sum(
        ((p.detach() - before[name]) * -grads[name]).sum()
        for name, p in model.named_parameters()
        if name in grads
    )
    assert moved > 0, f"{case.id}: the first update does not point downhill (<dw, -g> = {moved})"
    assert model.loss(0).item() < loss_before.item()


@pytest.mark.parametrize("problem", [Quadratic, Rosenbrock], ids=["quadratic", "rosenbrock"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_converges(case, problem):
    check = problem.__name__.lower()
    require(case, check)
    settings = dict(case.converge[check])
    steps, below = settings.pop("steps"), settings.pop("below", 1e-3)
    model = problem()
    start = model.loss().item()
    opt = build(case, model, **settings)
    run(case, opt, model, steps)
    final = model.loss().item()
    assert final < below * start, f"{case.id} on {check}: loss {start:.3g} -> {final:.3g} after {steps} steps"


@pytest.mark.parametrize("net", [TinyNet, MixedDtypeNet], ids=["float64", "mixed_dtypes"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_foreach_matches_for_loop(case, net):
    require(case, "foreach")
    models = net(), net()
    opts = build(case, models[0], foreach=True), build(case, models[1], foreach=False)
    for model, opt in zip(models, opts, strict=True):
        run(case, opt, model, 5)
    assert_same(case, "foreach", models, opts)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_state_dict_resume_gives_identical_trajectory(case):
    require(case, "state_dict")
    model = TinyNet()
    opt = build(case, model)
    run(case, opt, model, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    run(case, opt, model, 4, start=3)

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = TinyNet()
    resumed.load_state_dict(saved["model"])
    resumed_opt = build(case, resumed)
    resumed_opt.load_state_dict(saved["opt"])
    run(case, resumed_opt, resumed, 4, start=3)
    assert_same(case, "state_dict", (model, resumed), (opt, resumed_opt))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_param_groups_equal_separate_optimizers(case):
    require(case, "param_groups")
    if case.takes_model or case.needs_closure:
        pytest.skip(f"{case.id}: builds its own groups from the model, or needs a closure per optimizer")
    override = case.group_override
    if override is None:
        override = {"lr": 0.5 * build(case, TinyNet()).defaults["lr"]}
    grouped, split = TinyNet(), TinyNet()
    first = lambda m: list(m.hidden.parameters())
    rest = lambda m: [p for name, p in m.named_parameters() if not name.startswith("hidden.")]
    opt = case.make([{"params": first(grouped)}, {"params": rest(grouped), **override}], **case.kwargs)
    opt_first = case.make(first(split), **case.kwargs)
    opt_rest = case.make(rest(split), **{**case.kwargs, **override})
    for step in range(4):
        take_step(case, opt, grouped, step)
        split.zero_grad()
        objective(case, split, step).backward()
        opt_first.step()
        opt_rest.step()
    for (name, p), q in zip(grouped.named_parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(
            p, q, **case.tol("param_groups"), msg=lambda m, name=name: f"{case.id}: {name}: {m}"
        )


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_step_returns_closure_loss(case):
    require(case, "closure")
    model = TinyNet()
    expected = objective(case, model, 0).item()
    opt = build(case, model)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = objective(case, model, 0)
        loss.backward()
        return loss

    with torch.no_grad():  # step must enable grad for the closure itself
        loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.item() == expected
    assert calls and all(calls)
    assert len(calls) == 1 or case.needs_closure


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_params_without_grad_get_no_state(case):
    require(case, "no_grad_state")
    model = TinyNet()
    opt = build(case, model)
    run(case, opt, model, 3)
    assert model.unused.grad is None
    assert len(opt.state[model.unused]) == 0
    assert torch.equal(model.unused, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_invalid_hyperparameters_raise(case):
    require(case, "invalid")
    for argument, value in case.invalid.items():
        with pytest.raises(ValueError) as error:
            build(case, TinyNet(), **{argument: value})
        message = str(error.value)
        shown = value if isinstance(value, tuple) else (value,)
        assert argument in message and any(str(v) in message for v in shown), (case.id, argument, message)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_invalid_group_hyperparameters_raise(case):
    """A param group added later is validated too (for the invalid kwargs that are group keys) and not kept."""
    require(case, "invalid_group")
    if case.takes_model:
        pytest.skip(f"{case.id}: the constructor takes the model and builds its own groups")
    defaults = case.make(TinyNet().parameters(), **case.kwargs).defaults
    group_keys = {argument: value for argument, value in case.invalid.items() if argument in defaults}
    assert group_keys, f"{case.id}: no invalid kwarg is a param-group key; skip 'invalid_group' with a reason"
    for argument, value in group_keys.items():
        model = TinyNet()
        opt = case.make(model.hidden.parameters(), **case.kwargs)
        with pytest.raises(ValueError, match=argument):
            opt.add_param_group({"params": model.out.parameters(), argument: value})
        assert len(opt.param_groups) == 1, f"{case.id}: the rejected group was added anyway"


@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_bf16_params_step(case, foreach):
    require(case, "bf16")
    model, reference = TinyNet(torch.bfloat16), TinyNet(torch.float32)
    opt = build(case, model, **path(case, foreach))
    ref_opt = build(case, reference, **path(case, foreach))
    run(case, opt, model, 3)
    run(case, ref_opt, reference, 3)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert p.dtype == torch.bfloat16 and torch.isfinite(p).all()
        torch.testing.assert_close(p.float(), q, rtol=2e-2, atol=2e-2)
    assert not torch.equal(model.out.weight.float(), TinyNet(torch.bfloat16).out.weight.float())


@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_grad_is_never_modified(case, foreach):
    require(case, "grad_untouched")
    if case.needs_closure:
        pytest.skip(f"{case.id}: a two-pass step recomputes the gradients")
    model = TinyNet()
    opt = build(case, model, **path(case, foreach))
    for step in range(3):
        grads = grads_of(case, model, step)
        opt.step()
        for name, p in model.named_parameters():
            if name in grads:
                assert torch.equal(p.grad, grads[name]), f"{case.id}: step {step} wrote into {name}.grad"


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_lr_scheduler_drives_the_step(case):
    require(case, "lr_scheduler")
    scheduled, manual = TinyNet(), TinyNet()
    opt, manual_opt = build(case, scheduled), build(case, manual)
    base = [group["lr"] for group in opt.param_groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for step in range(4):
            for group, lr in zip(manual_opt.param_groups, base, strict=True):
                group["lr"] = lr * 0.5**step
            take_step(case, opt, scheduled, step)
            take_step(case, manual_opt, manual, step)
            scheduler.step()
    assert opt.param_groups[0]["lr"] == base[0] * 0.5**4
    assert_same(case, "lr_scheduler", (scheduled, manual), (opt, manual_opt))


def compile_strict(fn):
    """DESIGN.md's check: a data-dependent Python branch (a host sync on GPU) cannot be traced into one graph."""
    torch._dynamo.reset()  # a fresh cache: no silent eager fallback after too many recompiles
    return torch.compile(fn, fullgraph=True, backend="eager")


def test_compile_check_rejects_a_data_dependent_branch():
    def branchy_decay_(params, lr, weight_decay):
        for p in params:
            if p.norm() > 1:  # reads a tensor value on the host
                p.mul_(1 - lr * weight_decay)

    def masked_decay_(params, lr, weight_decay):
        for p in params:
            p.mul_(torch.where(p.norm() > 1, 1 - lr * weight_decay, 1.0))

    params = [torch.full((3,), 2.0), torch.full((2,), 0.1)]
    with pytest.raises(torch._dynamo.exc.Unsupported, match="[Dd]ata-dependent"):
        compile_strict(branchy_decay_)([p.clone() for p in params], 0.1, 0.5)
    masked = [p.clone() for p in params]
    compile_strict(masked_decay_)(masked, 0.1, 0.5)
    assert torch.equal(masked[0], params[0] * 0.95) and torch.equal(masked[1], params[1])


@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_functional_update_compiles_without_graph_breaks(case, foreach):
    require(case, "compile")
    models = MixedDtypeNet(), MixedDtypeNet()  # two dtypes: the foreach path compiles its bucketing too
    opts = [build(case, model, **path(case, foreach)) for model in models]
    for model, opt in zip(models, opts, strict=True):
        run(case, opt, model, 2)  # state exists and is not trivial
        grads_of(case, model, 2)
    calls = []
    for opt in opts:
        group = opt.param_groups[0]
        calls.append(opt.prepare_update(group, [p for p in group["params"] if p.grad is not None]))
    (args, kwargs), (ref_args, ref_kwargs) = calls
    assert kwargs["foreach"] is foreach or "foreach" in case.skip
    with torch.no_grad():  # as in step
        compile_strict(opts[0].functional_update)(*args, **kwargs)
        opts[1].functional_update(*ref_args, **ref_kwargs)
    # Dynamo traces the host-side float arithmetic (bias corrections) into the graph, which
    # may round differently from CPython by an ulp: compare to float64 rounding level.
    tol = case.tolerance.get("compile", {"rtol": 1e-14, "atol": 1e-15})
    for p, q in zip(*(model.parameters() for model in models), strict=True):
        torch.testing.assert_close(p, q, **tol)


@pytest.mark.cuda
@pytest.mark.parametrize("foreach", [False, True], ids=["for_loop", "foreach"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_cuda_step_makes_no_host_sync(case, foreach):
    if case.needs_closure:
        pytest.skip(f"{case.id}: a two-pass step runs backward passes inside step")
    model = TinyNet(torch.float32).cuda()
    opt = build(case, model, **path(case, foreach))
    for step in range(3):
        grads_of(case, model, step)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(model.out.weight).all()
