"""regkit.course.evidence: t-intervals, verdicts, packaged results, staleness and the claim table."""

import itertools
import json
import math

import pytest

from regkit.course import evidence
from regkit.course.__main__ import main as course_main
from regkit.course.evidence import (
    NOT_SHOWN,
    OPPOSITE,
    SHOWN,
    Claim,
    decide,
    format_table,
    package,
    stale_keys,
)
from regkit.course.stats import t_interval, t_quantile


def test_t_quantile_matches_closed_forms_and_tables():
    assert t_quantile(1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-10)  # Cauchy
    assert t_quantile(2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95**2)), rel=1e-10)  # F = 1/2 + t/(2 sqrt(2+t^2))
    for df, table in ((4, 2.776445), (9, 2.262157), (29, 2.045230)):
        assert t_quantile(df) == pytest.approx(table, abs=2e-6)
    assert t_quantile(1, 0.5) == pytest.approx(1.0, rel=1e-10)  # Cauchy quartile
    assert t_quantile(1000) == pytest.approx(1.962339, abs=2e-6)  # near the normal 1.959964


def test_t_interval_of_three_values():
    interval = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1
    assert interval.mean == 2.0
    assert interval.half_width == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95**2)) / math.sqrt(3), rel=1e-10)
    assert str(interval) == "2 ± 2.48 (n=3)"
    assert math.isnan(t_interval([5.0]).half_width)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_t_quantile_rejects_bad_df(bad):
    with pytest.raises(ValueError, match=f"df must be a positive int .*got {bad!r}"):
        t_quantile(bad)


def result(**values):
    return {"notebook": "04", "values": {k: {str(i): v for i, v in enumerate(vs)} for k, vs in values.items()}}


PAIRED = Claim("04", "x", "A beats B", "paper", "acc (%)", "a", "b")


@pytest.mark.parametrize("a, b, verdict", [
    ([81.0, 82.0, 81.5], [64.0, 65.0, 64.5], SHOWN),     # every seed +17
    ([64.0, 65.0, 64.5], [81.0, 82.0, 81.5], OPPOSITE),
    ([80.0, 82.0, 81.0], [81.0, 80.5, 81.4], NOT_SHOWN),  # differences -1, +1.5, -0.4 straddle 0
])
def test_paired_verdict(a, b, verdict):
    outcome = decide(PAIRED, result(a=a, b=b))
    assert outcome.verdict == verdict
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    assert outcome.difference.mean == pytest.approx(sum(diffs) / 3)
    assert outcome.treatment.mean == pytest.approx(sum(a) / 3)


def test_direction_and_margin():
    lower_is_better = Claim("04", "e", "A errs less", "paper", "err (%)", "a", "b", direction=-1)
    assert decide(lower_is_better, result(a=[10.0, 11.0, 10.5], b=[12.0, 13.0, 12.4])).verdict == SHOWN
    # A is 0.2 +- small below B: not better, but within a 0.5 non-inferiority margin ("matches or beats")
    matches = Claim("03", "m", "A matches B", "paper", "acc", "a", "b", margin=0.5)
    assert decide(matches, result(a=[80.0, 81.0, 82.0], b=[80.2, 81.2, 82.2])).verdict == SHOWN
    assert decide(matches, result(a=[79.0, 80.0, 81.0], b=[80.2, 81.2, 82.2])).verdict == OPPOSITE


def test_one_seed_never_shows_anything():
    assert decide(PAIRED, result(a=[90.0], b=[10.0])).verdict == NOT_SHOWN


def test_bound_claim():
    bound = Claim("03", "k", "R <= kappa", "paper", "max R/kappa - 1", "v", bound=1e-3, direction=-1)
    assert decide(bound, result(v=[0.0, 5e-4, 1e-3])).verdict == SHOWN
    assert decide(bound, result(v=[0.0, 0.2, 1e-3])).verdict == NOT_SHOWN
    assert decide(bound, result(v=[0.1, 0.2, 0.3])).verdict == OPPOSITE


def test_paired_claim_needs_the_same_seeds():
    data = result(a=[1.0, 2.0], b=[1.0])
    with pytest.raises(ValueError, match=r"a and b were measured on different seeds \(\['0', '1'\] vs \['0'\]\)"):
        decide(PAIRED, data)
    assert decide(PAIRED, result(a=[1.0])).verdict == evidence.NO_RESULT  # b was not packaged


def test_claim_needs_baseline_or_bound():
    with pytest.raises(ValueError, match="exactly one of baseline"):
        Claim("04", "x", "t", "p", "m", "a")


def test_package_writes_every_seed_settings_and_provenance(tmp_path):
    path = package("04", {"sam_acc": [81.5, 81.9], "sgd_acc": {3: 64.0, 7: 65.0}},
                   {"lr": 0.05, "hidden": (256, 256)}, wall_time_s=123.45, directory=tmp_path, threads=1)
    assert path == tmp_path / "04.json"
    data = json.loads(path.read_text())
    assert data["values"] == {"sam_acc": {"0": 81.5, "1": 81.9}, "sgd_acc": {"3": 64.0, "7": 65.0}}
    assert data["settings"] == {"lr": 0.05, "hidden": [256, 256]}
    assert data["threads"] == 1 and data["wall_time_s"] == 123.5 and data["profile"] == "cpu"
    for key in ("git_commit", "torch", "device", "date", "processor"):
        assert key in data
    assert evidence.load("04", tmp_path) == data
    assert evidence.load("05", tmp_path) is None


def test_package_is_atomic(tmp_path, monkeypatch):
    package("04", {"a": [1.0]}, {"lr": 0.05}, wall_time_s=1.0, directory=tmp_path)
    before = (tmp_path / "04.json").read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        package("04", {"a": [2.0]}, {"lr": 0.1}, wall_time_s=1.0, directory=tmp_path)
    assert (tmp_path / "04.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["04.json"]  # no temporary file left


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")]])
def test_package_rejects_missing_or_nonfinite_values(tmp_path, bad):
    with pytest.raises(ValueError, match="value 'a' must hold one finite number per seed"):
        package("04", {"a": bad}, {}, wall_time_s=1.0, directory=tmp_path)


def test_package_rejects_bad_notebook_id(tmp_path):
    with pytest.raises(ValueError, match="two-digit number like '04', got '4'"):
        package("4", {"a": [1.0]}, {}, wall_time_s=1.0, directory=tmp_path)


def test_stale_keys():
    assert stale_keys({"hidden": (256, 256), "lr": 0.05}, {"hidden": [256, 256], "lr": 0.05}) == []
    assert stale_keys({"lr": 0.05, "old": 1}, {"lr": 0.1, "new": 2}) == ["lr", "new", "old"]


def packaged_04(tmp_path, sam=(81.0, 82.0, 81.5), sgd=(64.0, 65.0, 64.5)):
    package("04", {"sam_acc": list(sam), "sgd_acc": list(sgd), "gnp_acc": [81.0, 81.0, 81.2]},
            evidence.catalog_settings("04"), wall_time_s=300.0, directory=tmp_path)


def test_evidence_exits_1_on_stale_settings_and_names_the_keys(tmp_path, capsys):
    package("04", {"sam_acc": [81.0, 82.0], "sgd_acc": [64.0, 65.0]}, {"lr": 0.05, "epochs": 40}, wall_time_s=1.0,
            directory=tmp_path)
    current = {"04": {"lr": 0.05, "epochs": 40}}
    assert evidence.main(directory=tmp_path, current_settings=current.__getitem__) == 0
    current["04"] = {"lr": 0.1, "epochs": 40}
    assert evidence.main(directory=tmp_path, current_settings=current.__getitem__) == 1
    err = capsys.readouterr().err
    assert "evidence/04.json was made with other settings than the current cpu profile (differing: lr)" in err
    assert "--profile cpu --only 04" in err


def test_cli_prints_the_table(tmp_path, capsys):
    packaged_04(tmp_path)
    assert course_main(["evidence", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() [:3] == ["notebook", "claim", "source"]
    sam = next(line for line in out if "SAM generalizes" in line)
    assert "81.5 ± 1.24 (n=3) vs 64.5 ± 1.24 (n=3)" in sam and "+17 ± 0" in sam and sam.endswith("shown")
    gr = next(line for line in out if "Adam+GR" in line)
    assert gr.endswith("no result") and "13.61 vs 13.92" in gr  # the published numbers, without ours
    assert out[0].index("claim") == sam.index("SAM generalizes") == gr.index("Adam+GR")  # aligned columns


def test_markdown_table(tmp_path):
    packaged_04(tmp_path, sam=(60.0, 61.0, 62.0))
    rows = evidence.evaluate_claims(directory=tmp_path)
    text = format_table(rows, markdown=True).splitlines()
    assert text[0] == "| notebook | claim | source | metric | ours | difference | published | verdict |"
    assert text[1] == "| --- | --- | --- | --- | --- | --- | --- | --- |"
    assert len(text) == 2 + len(evidence.CLAIMS)
    sam = next(line for line in text if "SAM generalizes" in line)
    assert sam.endswith("| opposite |")


def test_plot_claims_one_figure_per_packaged_claim(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    packaged_04(tmp_path)
    figures = evidence.plot_claims("04", tmp_path)
    assert len(figures) == 2  # SAM and GNP vs SGD; Adam+GR has no packaged values
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sam_acc", "sgd_acc"]
    assert "(shown)" in ax.get_title()
    _, caps, _ = ax.containers[0]  # the treatment's error bar: mean -+ the t half-width
    half = t_interval([81.0, 82.0, 81.5]).half_width
    assert sorted(float(c.get_ydata()[0]) for c in caps) == pytest.approx([81.5 - half, 81.5 + half])


def test_evidence_exits_1_by_default_when_a_catalog_cpu_row_changed(tmp_path, monkeypatch, capsys):
    import regkit.course.catalog.nb01 as nb01

    package("01", {"adamw_abs_slope": [0.0, 0.5, 0.0]}, evidence.catalog_settings("01"), wall_time_s=1.0,
            directory=tmp_path)
    assert evidence.main(directory=tmp_path) == 0
    changed = dict(nb01.PROFILES["cpu"], evidence=dict(nb01.PROFILES["cpu"]["evidence"], steps=500))
    monkeypatch.setitem(nb01.PROFILES, "cpu", changed)
    assert evidence.main(directory=tmp_path) == 1
    err = capsys.readouterr().err
    assert "error: evidence/01.json was made with other settings than the current cpu profile (differing: evidence)" \
        in err and "--profile cpu --only 01" in err


@pytest.mark.parametrize("notebook", ["01", "02", "03"])
def test_packaged_results_match_the_cpu_row_and_have_3_seeds_per_claim(notebook):
    data = evidence.load(notebook)
    assert data is not None, f"evidence/{notebook}.json is missing: run the notebook with --profile cpu"
    assert stale_keys(data["settings"], evidence.catalog_settings(notebook)) == []
    claims = [c for c in evidence.CLAIMS if c.notebook == notebook]
    for claim in claims:
        for name in filter(None, (claim.treatment, claim.baseline)):
            assert len(data["values"][name]) >= 3, (notebook, name)
        assert decide(claim, data).verdict in (SHOWN, NOT_SHOWN, OPPOSITE)


@pytest.mark.parametrize("notebook", sorted({claim.notebook for claim in evidence.CLAIMS}))
def test_claim_figures_keep_every_text_inside_the_figure_and_apart(notebook):
    """The packaged results' figures as the notebooks show them: title, axis label and tick labels lie inside
    the figure, and no two tick labels overlap."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    figures = evidence.plot_claims(notebook)
    assert figures, f"notebook {notebook} has claims but no packaged figure"
    for fig in figures:
        fig.canvas.draw()
        renderer, box = fig.canvas.get_renderer(), fig.bbox
        ax = fig.axes[0]
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        texts = [ax.title.get_window_extent(renderer), ax.yaxis.label.get_window_extent(renderer), *ticks]
        for extent in texts:
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1 and box.y0 - 1 <= extent.y0 and \
                extent.y1 <= box.y1 + 1, (ax.get_title(), extent, box)
        for left, right in itertools.pairwise(ticks):
            assert left.x1 < right.x0, [t.get_text() for t in ax.get_xticklabels()]
        plt.close(fig)


def test_wrap_name_breaks_at_underscores_within_the_width():
    from regkit.plots import wrap_name

    assert wrap_name("sam_adamcpr_acc", 14) == "sam_adamcpr_\nacc"
    assert wrap_name("sgd_acc", 14) == "sgd_acc"
    assert all(len(line) <= 14 for line in wrap_name("tau_abs_slope_err_long_name", 14).split("\n"))
