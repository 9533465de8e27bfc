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
