"""regkit.course.experiments: the seeded method runner is regkit.train.train per (method, seed); the comparison
table's numbers are the runs' numbers; records go under reference keys only for reproductions."""

import math

import numpy as np
import pytest
import torch

from regkit.course import recording
from regkit.course.experiments import (
    Method,
    comparison_table,
    probe_batch,
    record_comparison,
    run_methods,
    runs_frame,
    select,
)
from regkit.course.references import REFERENCES
from regkit.data import DeviceLoader, synthetic_images
from regkit.models import build_model
from regkit.optim import SGD, AdamW
from regkit.train import seed_everything, train

DATA = synthetic_images(n_train=64, n_test=32, size=8, num_classes=4, seed=1)
STEPS = 4


def tiny_model():
    return build_model("small_cnn", DATA.num_classes, DATA.in_channels, DATA.image_size, width=2)


METHODS = [
    Method("SGD", "sgd", lambda m: SGD(m.parameters(), lr=0.1, momentum=0.9)),
    Method("AdamW", "adamw", lambda m: AdamW(m.parameters(), lr=1e-2, weight_decay=0.1), batch_size=8),
]


def initial_state(model, optimizer):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def runs():
    return run_methods(METHODS, DATA, tiny_model, steps=STEPS, seeds=[0, 1], batch_size=16, device="cpu",
                       eval_every=2, attach=initial_state, progress=False)


def test_select_keeps_the_order_of_the_choices_and_names_them_in_errors():
    choices = ("cpr", "implicit", "adamp", "gnp")
    assert select("all", choices) == list(choices)
    assert select(" gnp,cpr ", choices) == ["cpr", "gnp"]
    with pytest.raises(ValueError, match=r"unknown \['sam'\].*cpr, implicit, adamp, gnp, or 'all'"):
        select("cpr,sam", choices)
    with pytest.raises(ValueError, match="empty selection"):
        select(" , ", choices)
    with pytest.raises(ValueError, match="comma-separated string"):
        select(["cpr"], choices)


def test_runs_are_seed_major_and_share_the_initial_weights_within_a_seed(runs):
    assert [(r.method.key, r.seed) for r in runs] == [("sgd", 0), ("adamw", 0), ("sgd", 1), ("adamw", 1)]
    assert [r.batch_size for r in runs] == [16, 8, 16, 8]
    for a, b in ((runs[0], runs[1]), (runs[2], runs[3])):
        assert all(torch.equal(a.attached[k], b.attached[k]) for k in a.attached)
    assert not torch.equal(runs[0].attached["head.weight"], runs[2].attached["head.weight"])


def test_a_run_is_exactly_regkit_train_with_the_seeded_model_and_loader(runs):
    seed_everything(1)
    model = tiny_model()
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    loader = DeviceLoader(DATA.x_train, DATA.y_train, 8, augment=True, seed=1, device="cpu", mean=DATA.mean,
                          std=DATA.std)
    test = DeviceLoader(DATA.x_test, DATA.y_test, 1000, shuffle=False, device="cpu", mean=DATA.mean, std=DATA.std)
    expected = train(model, optimizer, loader, steps=STEPS, eval_loaders={"test": test}, eval_every=2,
                     device="cpu", progress=False)
    got = runs[3].history.df
    np.testing.assert_array_equal(got["train_loss"].to_numpy(), expected.df["train_loss"].to_numpy())
    np.testing.assert_array_equal(got["test_acc"].dropna().to_numpy(), expected.df["test_acc"].dropna().to_numpy())
    assert runs[3].history.meta["method"] == "adamw" and runs[3].history.meta["batch_size"] == 8


def test_normalization_replaces_the_statistics_of_both_loaders():
    stats = ((0.25, 0.5, 0.75), (0.2, 0.3, 0.4))
    got = run_methods(METHODS[1:], DATA, tiny_model, steps=STEPS, seeds=[1], batch_size=16, device="cpu",
                      eval_every=2, progress=False, normalization=stats)[0].history.df
    seed_everything(1)
    model = tiny_model()
    common = dict(device="cpu", mean=stats[0], std=stats[1])
    expected = train(model, AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
                     DeviceLoader(DATA.x_train, DATA.y_train, 8, augment=True, seed=1, **common), steps=STEPS,
                     eval_loaders={"test": DeviceLoader(DATA.x_test, DATA.y_test, 1000, shuffle=False, **common)},
                     eval_every=2, device="cpu", progress=False).df
    np.testing.assert_array_equal(got["train_loss"].to_numpy(), expected["train_loss"].to_numpy())
    np.testing.assert_array_equal(got["test_loss"].dropna().to_numpy(), expected["test_loss"].dropna().to_numpy())


def test_comparison_table_is_the_mean_and_std_over_seeds_with_the_published_number(runs):
    ref = "adamp.imagenet.resnet18.sgd.acc"
    table = comparison_table(runs, metric="best", references={"sgd": ref})
    assert list(table.index) == ["SGD", "AdamW"]
    best = {name: [100 * r.history.df["test_acc"].max() for r in runs if r.method.name == name] for name in table.index}
    for name, values in best.items():
        assert table.loc[name, "ours: best acc (%)"] == pytest.approx(np.mean(values))
        assert table.loc[name, "std"] == pytest.approx(np.std(values, ddof=1))
        assert table.loc[name, "seeds"] == 2
    assert table.loc["SGD", "published (%)"] == REFERENCES[ref].value
    assert table.loc["SGD", "ours - published"] == pytest.approx(np.mean(best["SGD"]) - REFERENCES[ref].value)
    assert math.isnan(table.loc["AdamW", "published (%)"]) and table.loc["AdamW", "reference"] == ""
    assert table.loc["AdamW", "steps x batch"] == f"{STEPS} x 8" and table.loc["AdamW", "device"] == "cpu"
    frame = runs_frame(runs)
    assert (frame["examples"] == frame["steps"] * frame["batch"]).all()
    final = comparison_table(runs[:2], metric="final")
    assert math.isnan(final.loc["SGD", "std"]) and final.loc["SGD", "seeds"] == 1
    assert final.loc["SGD", "ours: final acc (%)"] == pytest.approx(100 * runs[0].history.df["test_acc"].dropna().iloc[-1])


def test_comparison_table_rejects_bad_input(runs):
    with pytest.raises(ValueError, match="unknown reference keys"):
        comparison_table(runs, references={"sgd": "no.such.key"})
    with pytest.raises(ValueError, match="metric='median'"):
        comparison_table(runs, metric="median")


def test_records_use_reference_keys_only_for_reproductions(runs, monkeypatch):
    monkeypatch.delenv(recording.RESULTS_FILE_ENV, raising=False)
    monkeypatch.setattr(recording, "_interactive", {})
    table = comparison_table(runs, references={"sgd": "adamp.imagenet.resnet18.sgd.acc"})
    sanity = record_comparison(table, prefix="test.synthetic", reproduction=False, profile="quick")
    assert sanity == {"SGD": "test.synthetic.sgd.acc", "AdamW": "test.synthetic.adamw.acc"}
    reproduced = record_comparison(table, prefix="test.synthetic", reproduction=True, profile="full")
    assert reproduced == {"SGD": "adamp.imagenet.resnet18.sgd.acc", "AdamW": "test.synthetic.adamw.acc"}
    stored = recording._interactive["adamp.imagenet.resnet18.sgd.acc"]
    assert stored["value"] == pytest.approx(table.loc["SGD", "ours: final acc (%)"], abs=1e-3)
    assert stored["meta"]["seeds"] == 2 and stored["meta"]["profile"] == "full"


def test_run_methods_validates_its_arguments():
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence"):
        run_methods(METHODS, DATA, tiny_model, steps=1, seeds=0, batch_size=8)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        run_methods(METHODS, DATA, tiny_model, steps=0, seeds=[0], batch_size=8)
    with pytest.raises(ValueError, match="keys must be unique"):
        run_methods([METHODS[0], Method("other", "sgd", METHODS[0].optimizer)], DATA, tiny_model, steps=1,
                    seeds=[0], batch_size=8)


def test_compiled_model_trains_like_the_eager_one():
    """torch.compile (here its eager backend: the graph capture without code generation) compiles the
    forward in place; parameter names and the trajectory stay those of the plain model."""
    kw = dict(steps=2, seeds=[0], batch_size=16, device="cpu", progress=False, attach=lambda m, o: m)
    plain = run_methods(METHODS[:1], DATA, tiny_model, **kw)[0]
    compiled = run_methods(METHODS[:1], DATA, tiny_model, compile_model={"backend": "eager"}, **kw)[0]
    assert list(compiled.attached.state_dict()) == list(plain.attached.state_dict())
    for p, q in zip(plain.attached.parameters(), compiled.attached.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_probe_batch_is_the_first_training_images_normalized_as_in_training():
    x, y = probe_batch(DATA, 5, "cpu")
    mean, std = torch.tensor(DATA.mean).view(1, -1, 1, 1), torch.tensor(DATA.std).view(1, -1, 1, 1)
    torch.testing.assert_close(x, (DATA.x_train[:5].float() / 255 - mean) / std)
    assert torch.equal(y, DATA.y_train[:5])
    with pytest.raises(ValueError, match=r"size must be an int in \[1, 64\]"):
        probe_batch(DATA, 65)
