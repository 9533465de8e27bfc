"""regkit.course.recipes: the papers' method lists build the optimizers and gradient functions they describe."""

import math

import pytest
import torch
import torch.nn.functional as F

from regkit.course.recipes import (
    CPR_REFERENCES,
    NOVACK_RESNET18,
    cpr_methods,
    grafting_methods,
    implicit_sgd_methods,
    microbatch_sgd_method,
    microbatch_sweep_methods,
    novack_reference,
)
from regkit.course.references import REFERENCES
from regkit.models import build_model
from regkit.optim import NGD, SGD, AdamAdaDecay, AdamAWD, AdamCPR, AdamW, Graft, GraftingSchedule
from regkit.penalties import accumulate_microbatches


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", 4, 3, 8, width=2)


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_cpr_methods_build_the_papers_seven_optimizers():
    methods = cpr_methods(lr=1e-3, warmup=50, reg_step_size=10)
    built = {m.key: m.optimizer(small_cnn()) for m in methods}
    assert [type(built[k]) for k in ("adamw", "cpr_ip", "awd", "adadecay", "adamw_rescaling")] == [
        AdamW, AdamCPR, AdamAWD, AdamAdaDecay, AdamW]
    inits = {k: built[k].param_groups[0]["kappa_init_method"] for k in ("cpr_ip", "cpr_warm_start", "cpr_dependent")}
    assert inits == {"cpr_ip": "inflection_point", "cpr_warm_start": "warm_start", "cpr_dependent": "dependent"}
    assert built["cpr_warm_start"].param_groups[0]["kappa_init_param"] == 100  # 2 x the warmup
    decays = {g["weight_decay"] for g in built["adamw"].param_groups}
    assert decays == {0.1, 0.0}  # matrices decay, biases and BatchNorm gains do not
    assert all(g["betas"] == (0.9, 0.98) for g in built["adamw"].param_groups)
    assert set(CPR_REFERENCES.values()) <= set(REFERENCES)


def test_cpr_methods_take_the_measure_and_a_replacement_for_the_warm_start_row():
    methods = cpr_methods(lr=1e-3, warmup=50, reg_function="std", warm_start_init=("uniform", 2.5))
    built = {m.key: m.optimizer(small_cnn()) for m in methods}
    assert {built[k].param_groups[0]["reg_function"] for k in ("cpr_ip", "cpr_warm_start", "cpr_dependent")} == {"std"}
    group = built["cpr_warm_start"].param_groups[0]
    assert (group["kappa_init_method"], group["kappa_init_param"]) == ("uniform", 2.5)
    assert built["cpr_ip"].param_groups[0]["kappa_init_method"] == "inflection_point"


def test_the_rescaling_baseline_holds_the_scaled_joint_norm():
    model = small_cnn()
    before = math.sqrt(sum(p.square().sum().item() for p in model.parameters() if p.ndim >= 2))
    optimizer = next(m for m in cpr_methods(lr=1e-2, warmup=5) if m.key == "adamw_rescaling").optimizer(model)
    x, y = batch()
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    after = math.sqrt(sum(p.square().sum().item() for p in model.parameters() if p.ndim >= 2))
    assert after == pytest.approx(0.8 * before, rel=1e-5)
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)


def test_implicit_methods_compute_the_micro_batch_gradients_of_the_paper():
    hp = NOVACK_RESNET18["cifar10"]
    methods = implicit_sgd_methods(lr=hp["lr"], lam=hp["lam"], batch_size=8, micro_batch_size=2,
                                   penalties=("gn", "fisher", "avg_jacobian", "unit_jacobian"))
    assert [m.key for m in methods] == ["sb_sgd", "lb_sgd", "lb_gn", "lb_ft", "lb_aj", "lb_uj"]
    assert [m.batch_size for m in methods] == [2, 8, 8, 8, 8, 8]
    gn = methods[2]
    x, y = batch()
    model, reference = small_cnn(), small_cnn()
    optimizer = gn.optimizer(model)
    assert isinstance(optimizer, SGD) and optimizer.param_groups[0]["lr"] == hp["lr"]["reg"]
    assert optimizer.param_groups[0]["momentum"] == 0 and optimizer.param_groups[0]["weight_decay"] == 0
    loss = gn.grad_fn(model, optimizer)(model, x, y)
    stats = accumulate_microbatches(reference, F.cross_entropy, x, y, 2, "gn", hp["lam"]["gn"], vectorized=False)
    torch.testing.assert_close(loss, stats.loss.mean())
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"unknown penalties \['l2'\]"):
        implicit_sgd_methods(lr=hp["lr"], lam=hp["lam"], batch_size=8, micro_batch_size=2, penalties=("l2",))


def test_microbatch_method_hands_stats_model_and_optimizer_to_on_stats():
    seen = []
    method = microbatch_sgd_method("LB", "lb", lr=0.1, batch_size=8, micro_batch_size=4,
                                   on_stats=lambda stats, model, opt: seen.append((stats.grad_norm.shape, model, opt)))
    model = small_cnn()
    optimizer = method.optimizer(model)
    method.grad_fn(model, optimizer)(model, *batch())
    assert seen == [(torch.Size([2]), model, optimizer)]


def test_novack_reference_names_published_results_only():
    assert novack_reference("cifar100", "lb_ft") == "novack.cifar100.resnet18.lb_ft.acc"
    assert novack_reference("cifar10", "sb_sgd") in REFERENCES
    assert novack_reference("cifar100", "lb_gn_micro2560") is None  # published for CIFAR-10 only


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_novack_references_carry_the_setting_each_row_was_run_with(dataset):
    settings = NOVACK_RESNET18[dataset]
    rows = {"sb_sgd": settings["lr"]["sb"], "lb_sgd": settings["lr"]["lb"], "ngd": settings["lr"]["ngd"],
            "graft_iterative": settings["lr"]["graft"], "lb_gn": settings["lr"]["reg"]}  # fmt: skip
    for key, lr in rows.items():
        assert f"; lr {lr}" in REFERENCES[novack_reference(dataset, key)].setting, key
    (micro, penalty, lr, lam), = settings["sweep"]
    key = f"lb_{'gn' if penalty == 'gn' else 'ft'}_micro{micro}"
    assert f"; lr {lr}, lambda {lam};" in REFERENCES[novack_reference(dataset, key)].setting


def test_published_numbers_say_their_setting_or_that_it_was_not_published():
    novack = [ref for key, ref in REFERENCES.items() if key.startswith("novack.")]
    assert all("training length not published" in ref.setting for ref in novack)
    assert REFERENCES["novack.cifar10.resnet18.lb_gn_micro2560.acc"].setting.count("lr 0.1") == 0
    gr = [ref for key, ref in REFERENCES.items() if key.startswith("gr.")]
    assert len(gr) == 9 and all("setting not published" in ref.setting for ref in gr)
    assert not any("wd 0.3" in ref.setting.split("(")[0] for ref in gr)


def test_the_small_batch_run_records_the_schedule_that_external_grafting_replays():
    x, y = batch()
    schedule = GraftingSchedule()
    sb = implicit_sgd_methods(lr=NOVACK_RESNET18["cifar10"]["lr"], lam={}, batch_size=8, micro_batch_size=2,
                              penalties=(), sb_schedule=schedule)[0]
    model = small_cnn()
    optimizer = sb.optimizer(model)
    sb.grad_fn(model, optimizer)(model, x[:2], y[:2])
    expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert len(schedule) == 1 and schedule.magnitudes[0].item() == pytest.approx(expected.item(), rel=1e-6)
    methods = grafting_methods(lr=0.1, ngd_lr=0.3, batch_size=8, micro_batch_size=2, schedule=schedule)
    assert [(m.name, m.key, m.batch_size) for m in methods] == [
        ("iterative grafting", "graft_iterative", 8), ("external grafting", "graft_external", 8), ("NGD", "ngd", 8)]
    built = [m.optimizer(small_cnn()) for m in methods]
    assert [type(o) for o in built] == [Graft, Graft, NGD]
    assert [o.param_groups[0]["lr"] for o in built] == [0.1, 0.1, 0.3]
    assert step_length(methods[1], x, y) == pytest.approx(0.1 * expected.item(), rel=1e-5)  # the recorded norm


def step_length(method, x, y):
    """The length of one step of ``method`` from ``small_cnn()`` on ``(x, y)``."""
    model = small_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = method.optimizer(model)
    optimizer.step(lambda: method.grad_fn(model, optimizer)(model, x, y))
    return torch.linalg.vector_norm(torch.cat([(p - b).flatten() for p, b in zip(model.parameters(), before,
                                                                                  strict=True)])).item()


def test_iterative_grafting_steps_with_the_length_of_one_micro_batch_gradient():
    x, y = batch()
    method = grafting_methods(lr=0.1, ngd_lr=0.3, batch_size=8, micro_batch_size=2, schedule=GraftingSchedule())[0]
    first = accumulate_microbatches(small_cnn(), F.cross_entropy, x[:2], y[:2], 2, vectorized=False).grad_norm[0]
    assert step_length(method, x, y) == pytest.approx(0.1 * first.item(), rel=1e-5)


def test_sweep_methods_name_and_key_each_micro_batch_size():
    methods = microbatch_sweep_methods([(2560, "gn", 0.5, 0.0025), (128, "fisher", 0.1, 0.01)], batch_size=5120)
    assert [(m.name, m.key, m.batch_size) for m in methods] == [("LB+GN b=2560", "lb_gn_micro2560", 5120),
                                                               ("LB+FT b=128", "lb_ft_micro128", 5120)]
    assert [m.optimizer(small_cnn()).param_groups[0]["lr"] for m in methods] == [0.5, 0.1]
    with pytest.raises(ValueError, match=r"unknown penalties \['l1'\]"):
        microbatch_sweep_methods([(32, "l1", 0.1, 0.01)], batch_size=64)
