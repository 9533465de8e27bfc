"""Notebook 10's evidence experiment (regkit.course.compose_evidence) and its packaged result (evidence/10.json)."""

import pytest

from regkit.course import evidence
from regkit.course.compose_evidence import composition_evidence
from regkit.course.evidence import NOT_SHOWN, OPPOSITE, SHOWN, decide, stale_keys
from regkit.course.recipes import CPU_COMPOSE


def tiny(design: dict, **changes) -> dict:
    """``design`` on the embedded subset, 256 images, 6 steps, seeds 0 and 1."""
    return {**design, "dataset": "fashion_mnist_subset", "train_size": 256, "steps": 6, "warmup": 2,
            "seeds": [0, 1], **changes}


def test_both_designs_run_every_seed_and_give_the_claims_values(monkeypatch):
    monkeypatch.setenv("REGKIT_DATA_ISOLATED", "1")
    design = {"sgd": tiny(CPU_COMPOSE["sgd"], weight_decays=(0.0, 1e-2), best_wd=1e-2),
              "sam": tiny(CPU_COMPOSE["sam"], hidden=(16,), batch_size=32)}
    values, frame = composition_evidence(design)
    claimed = {name for c in evidence.CLAIMS if c.notebook == "10" for name in (c.treatment, c.baseline)}
    assert set(values) == claimed and all(set(v) == {0, 1} for v in values.values())
    assert sorted(frame["key"].unique()) == ["adamcpr", "sam_adamcpr", "sgd_cpr", "sgd_wd_0", "sgd_wd_0.01"]
    assert len(frame) == 2 * 5 and frame["test acc (%)"].between(0, 100).all()
    best = frame[frame["key"] == "sgd_wd_0.01"].set_index("seed")["test acc (%)"]
    assert values["sgd_best_acc"] == {seed: best[seed] for seed in (0, 1)}  # the validated wd, not the test-best one


def test_the_claimed_decay_must_be_one_of_the_sweep():
    design = {"sgd": {**CPU_COMPOSE["sgd"], "best_wd": 0.05}, "sam": CPU_COMPOSE["sam"]}
    with pytest.raises(ValueError, match=r"best_wd=0.05 must be one of weight_decays=\(0.0, 0.001"):
        composition_evidence(design)


def test_packaged_result_is_the_cpu_row_with_five_seeds_per_claim():
    data = evidence.load("10")
    assert data is not None, "evidence/10.json is missing: python -m regkit.course run --profile cpu --only 10"
    assert stale_keys(data["settings"], evidence.catalog_settings("10")) == []
    for claim in (c for c in evidence.CLAIMS if c.notebook == "10"):
        assert all(len(data["values"][name]) == 5 for name in (claim.treatment, claim.baseline))
        assert decide(claim, data).verdict in (SHOWN, NOT_SHOWN, OPPOSITE)
