import pytest

from regkit.bench import optim as bench


def test_every_candidate_runs_and_is_reported(capsys):
    results = bench.main(["--reps", "2", "--warmup", "0", "--devices", "cpu", "--model", "small_cnn"])
    assert [(r["row"], r["label"]) for r in results] == [(c.row, c.label) for c in bench.CANDIDATES]
    assert all(r["median"] > 0 and r["error"] is None for r in results)
    table = capsys.readouterr().out
    for row in {c.row for c in bench.CANDIDATES}:
        assert f"\n{row} " in table
    assert table.count(" 1.00") >= len({c.row for c in bench.CANDIDATES})  # each row's reference


def test_unknown_row_is_rejected(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--rows", "Adam,NoSuchOptimizer"])
    assert "NoSuchOptimizer" in capsys.readouterr().err


def test_one_timed_step_has_no_iqr_and_the_table_says_so():
    results = [{"row": "Adam", "label": "torch foreach", "median": 2e-3, "iqr": None, "error": None},
               {"row": "Adam", "label": "regkit foreach", "median": 3e-3, "iqr": None, "error": None}]  # fmt: skip
    lines = bench.format_table(results).splitlines()
    assert lines[1].split() == ["Adam", "torch", "foreach", "2.00", "n/a", "1.00"]
    assert lines[2].split() == ["regkit", "foreach", "3.00", "n/a", "1.50"]


def test_the_torch_fused_column_divides_by_the_rows_torch_fused_candidate():
    results = [{"row": "AdamW", "label": "torch foreach", "median": 4e-3, "iqr": None, "error": None},
               {"row": "AdamW", "label": "torch fused", "median": 2e-3, "iqr": None, "error": None},
               {"row": "AdamW", "label": "regkit fused", "median": 2.2e-3, "iqr": None, "error": None},
               {"row": "AdamP", "label": "regkit foreach", "median": 3e-3, "iqr": None, "error": None}]  # fmt: skip
    lines = bench.format_table(results).splitlines()
    assert lines[0].split()[-3:] == ["x", "torch", "fused"]
    assert lines[3].split() == ["regkit", "fused", "2.20", "n/a", "0.55", "1.10"]
    assert lines[4].split() == ["AdamP", "regkit", "foreach", "3.00", "n/a", "1.00"]  # no torch fused: blank
