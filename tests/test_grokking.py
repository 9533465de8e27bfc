"""regkit.course.grokking: evaluation grid, steps_to, what each method does to the weights, validation, seeds."""

import math

import pytest
import torch

from regkit.course.grokking import (
    METHODS,
    PROFILES,
    eval_steps,
    load_histories,
    make_optimizer,
    profile_run_kwargs,
    results_table,
    run,
    run_methods,
    save_histories,
    steps_to,
)  # fmt: skip
from regkit.history import History
from regkit.models import build_model

SMALL = dict(p=23, train_fraction=0.5, model_kw={"hidden": 32}, steps=40, eval_every=10, log_points=5, lr=5e-3)


def small_run(method, **kw):
    return run(method, **{**SMALL, **kw})


def test_steps_to_returns_the_first_step_at_the_threshold():
    h = History([{"step": 1, "val_acc": 0.1}, {"step": 5, "train_acc": 1.0}, {"step": 10, "val_acc": float("nan")},
                 {"step": 20, "val_acc": 0.99}, {"step": 40, "val_acc": 0.5}, {"step": 80, "val_acc": 1.0}])  # fmt: skip
    assert steps_to(h, "val_acc", 0.99) == 20
    assert steps_to(h, "val_acc", 0.995) == 80
    assert steps_to(h, "val_acc", 1.01) is None
    assert steps_to(h, "train_acc", 0.99) == 5
    with pytest.raises(KeyError, match="weight_norm"):
        steps_to(h, "weight_norm")


def test_eval_steps_join_a_regular_and_a_log_grid():
    grid = eval_steps(1000, 100, log_points=10)
    assert grid == sorted(set(grid)) and grid[0] == 1 and grid[-1] == 1000
    assert set(range(100, 1001, 100)) <= set(grid) and {2, 5, 10, 22, 46} <= set(grid)
    assert eval_steps(7, 5, 1) == [1, 5, 7]
    with pytest.raises(ValueError, match="every"):
        eval_steps(10, 0)


def test_history_logs_every_grid_step_with_sane_metrics():
    h = small_run("adam")
    df = h.df
    assert list(df["step"]) == eval_steps(SMALL["steps"], SMALL["eval_every"], SMALL["log_points"])
    assert df[["train_acc", "val_acc"]].stack().between(0, 1).all()
    assert (df["time"].diff().dropna() >= 0).all()
    assert df["train_loss"].iloc[-1] < df["train_loss"].iloc[0]  # it learns
    assert h.meta["method"] == "adam" and h.meta["batch_size"] is None


def test_decay_keeps_the_weight_norm_below_adam_without_decay():
    adam, decayed = small_run("adam", steps=60), small_run("adamw_wd1", steps=60)
    assert adam.rows[0]["weight_norm"] == pytest.approx(decayed.rows[0]["weight_norm"], rel=0.05)
    assert decayed.last("weight_norm") < 0.9 * adam.last("weight_norm")


def test_weight_decay_replaces_the_decay_of_the_adamw_methods_only():
    model = build_model("onehot_mlp", SMALL["p"], hidden=8)
    decays = lambda opt: {g["weight_decay"] for g in opt.param_groups}  # noqa: E731
    assert decays(make_optimizer("adamw_wd1", model, lr=1e-3, betas=(0.9, 0.99))) >= {1.0}
    assert decays(make_optimizer("adamw_wd1", model, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.3)) >= {0.3}
    assert 1.0 not in decays(make_optimizer("adamw_wd1", model, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.3))
    assert decays(make_optimizer("adam", model, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.3)) == {0}
    assert small_run("adamw_wd1", steps=2, weight_decay=0.3).meta["weight_decay"] == 0.3
    with pytest.raises(ValueError, match="weight_decay"):
        small_run("adamw_wd1", steps=2, weight_decay=-1.0)


def test_rescaling_holds_the_joint_norm_at_alpha_times_the_initial_norm():
    torch.manual_seed(0)
    init = build_model("onehot_mlp", SMALL["p"], hidden=32)
    initial = math.sqrt(sum(p.detach().square().sum().item() for p in init.parameters()))  # bias-free: all matrices
    h = small_run("rescale_0.8")
    for value in h.df["weight_norm"]:
        assert value == pytest.approx(0.8 * initial, rel=1e-5)


def test_cpr_bounds_are_dependent_and_include_the_embeddings():
    torch.manual_seed(0)
    init = build_model("onehot_mlp", SMALL["p"], hidden=32)
    h = small_run("cpr_l2")
    assert h.df.filter(like="kappa/").notna().all().all(), "the CPR state is read at every evaluation step"
    for name, p in init.named_parameters():
        assert h.last(f"kappa/{name}") == pytest.approx(0.8 * p.detach().square().sum().item(), rel=1e-5)
        assert h.last(f"lambda/{name}") >= 0
    tiny = dict(model="grok_transformer", model_kw={"width": 16, "heads": 2, "mlp": 32}, p=11, steps=4,
                eval_every=2, log_points=2, batch_size=16)  # fmt: skip
    t = run("cpr_std", **tiny)
    assert {"R/token_embedding.weight", "kappa/position_embedding.weight", "lambda/unembed.weight"} <= set(t.columns)
    assert t.meta["batch_size"] == 16


def test_same_seed_same_history_other_seed_other_history():
    def numbers(h):
        return [{k: v for k, v in row.items() if k != "time"} for row in h.rows]

    a, b, c = small_run("adamw_wd0.1", seed=3), small_run("adamw_wd0.1", seed=3), small_run("adamw_wd0.1", seed=4)
    assert numbers(a) == numbers(b)
    assert numbers(a) != numbers(c)
    batched = [small_run("adam", seed=1, batch_size=16, steps=10) for _ in range(2)]
    assert numbers(batched[0]) == numbers(batched[1])


def test_stop_at_ends_the_run_at_the_first_evaluation_that_reaches_it():
    h = small_run("adam", stop_at=0.0)
    assert len(h) == 1 and h.rows[0]["step"] == 1


@pytest.mark.parametrize(
    "kwargs, name",
    [({"method": "sgd"}, "method"), ({"model": "resnet18"}, "model"), ({"lr": -1.0}, "lr"),
     ({"batch_size": 0}, "batch_size"), ({"seed": -1}, "seed"), ({"stop_at": 1.5}, "stop_at"),
     ({"steps": 0}, "steps"), ({"betas": (0.9,)}, "betas"), ({"init_scale": -2.0}, "init_scale")],  # fmt: skip
)
def test_invalid_arguments_are_rejected_by_name(kwargs, name):
    kwargs = {"method": "adam", **kwargs}
    with pytest.raises(ValueError, match=name):
        run(kwargs.pop("method"), **{**SMALL, **kwargs})


def test_run_methods_validates_and_names_runs(tmp_path):
    with pytest.raises(ValueError, match="method"):
        run_methods(["adam", "lion"])
    with pytest.raises(ValueError, match="seeds"):
        run_methods(["adam"], seeds=0)
    histories = run_methods(["adam", "adamw_wd1"], seeds=2, **{**SMALL, "steps": 5})
    assert list(histories) == ["adam/seed0", "adam/seed1", "adamw_wd1/seed0", "adamw_wd1/seed1"]
    path = save_histories(histories, tmp_path / "h.json", profile="quick")
    loaded = load_histories(path)
    assert {k: h.to_dict() for k, h in loaded.items()} == {k: h.to_dict() for k, h in histories.items()}
    table = results_table(loaded, threshold=1.01)
    assert (table["steps to 101% val"] == "not reached").all() and table.loc["adam/seed0", "last step"] == 5
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not a grokking histories file"):
        load_histories(tmp_path / "other.json")


def test_profiles_give_valid_run_arguments():
    for cfg in PROFILES.values():
        kw = profile_run_kwargs(cfg)
        assert set(cfg["methods"]) <= set(METHODS)
        run("adam", **{**kw, "steps": 1, "eval_every": 1, "log_points": 1, "p": 7, "model_kw": {}})
