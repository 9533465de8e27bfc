"""Checkpoint reliability: unique temporary files, paths checked before training, the optimizer class
recorded and checked on resume, clear errors for files that are not checkpoints, empty evaluation loaders."""

import os
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from regkit.history import History
from regkit.train import CheckpointError, load_checkpoint
from regkit.train.checkpoint import save_atomically as _save_atomically
from tests.test_train import make_run, run


def counting_loss(calls):
    """cross-entropy that counts the training-time calls in ``calls[0]``."""

    def loss_fn(out, y):
        calls[0] += torch.is_grad_enabled()
        return F.cross_entropy(out, y)

    return loss_fn


def test_two_saves_to_one_path_at_once_each_use_their_own_temporary_file(tmp_path, monkeypatch):
    path, real_replace, renamed = tmp_path / "run.pt", os.replace, []

    def another_process_saves_first(src, dst):
        renamed.append(Path(src).name)
        if len(renamed) == 1:  # the first save, between writing and renaming: another one saves to the path
            _save_atomically({"writer": torch.tensor(2)}, path)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", another_process_saves_first)
    _save_atomically({"writer": torch.tensor(1)}, path)
    assert torch.load(path, weights_only=True)["writer"] == 1  # whole; the last rename wins
    assert len(set(renamed)) == 2 and all(name.startswith(".run.pt.") for name in renamed)
    assert os.listdir(tmp_path) == ["run.pt"]


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    _save_atomically({"writer": torch.tensor(1)}, path)

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _save_atomically({"writer": torch.tensor(2)}, path)
    assert os.listdir(tmp_path) == ["run.pt"] and torch.load(path, weights_only=True)["writer"] == 1


@pytest.mark.parametrize("where, message", [
    ("a directory", r"checkpoint '.*ckpt' is a directory; give the path of a file"),
    ("under a file", r"checkpoint '.*notes.txt/run.pt' cannot be written: '.*notes.txt' is a file, not a folder"),
])
def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_training(tmp_path, where, message):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    path = tmp_path / ("ckpt" if where == "a directory" else "notes.txt/run.pt")
    model, optimizer, _, loader, _ = make_run()
    calls = [0]
    with pytest.raises(ValueError, match=message):
        run(model, optimizer, loader, steps=3, checkpoint=path, loss_fn=counting_loss(calls))
    assert calls == [0]


def test_resuming_with_another_optimizer_class_is_refused_naming_both(tmp_path):
    path = tmp_path / "run.pt"
    model, optimizer, _, loader, _ = make_run()
    run(model, optimizer, loader, steps=3, checkpoint=path)
    assert load_checkpoint(path)["optimizer_class"] == "AdamW"
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match=f"{path} was saved by optimizer AdamW, but this run uses SGD: "
                                              "resume with AdamW, or pass another checkpoint path"):
        run(model, sgd, loader, steps=6, checkpoint=path, resume=True)
    assert sgd.param_groups[0]["lr"] == 0.1 and not sgd.state  # nothing of AdamW's was loaded


def test_a_checkpoint_from_before_the_optimizer_class_was_recorded_resumes_with_a_warning(tmp_path):
    path = tmp_path / "run.pt"
    model, optimizer, _, loader, _ = make_run()
    run(model, optimizer, loader, steps=3, checkpoint=path)
    state = load_checkpoint(path)
    del state["optimizer_class"]
    torch.save(state, path)
    with pytest.warns(UserWarning, match="does not record its optimizer class .* make sure it was saved by AdamW"):
        history = run(model, optimizer, loader, steps=5, checkpoint=path, resume=True)
    assert history.meta["resumed_at"] == [3] and load_checkpoint(path)["optimizer_class"] == "AdamW"


def write_bad(path: Path, kind: str, good: bytes) -> None:
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
    elif kind == "a list":
        torch.save([1, 2], path)
    elif kind == "another version":
        torch.save({"version": 99}, path)
    else:  # an incomplete dict
        torch.save({"version": 1, "step": 3}, path)


BAD = [("truncated", "not a readable torch file"), ("empty", "the file is empty"),
       ("random bytes", "not a readable torch file"), ("a list", "it holds a list, not a dict"),
       ("another version", "version 99, expected 1"), ("incomplete", "it lacks model, optimizer")]


@pytest.mark.parametrize("kind, reason", BAD)
def test_a_file_that_is_not_a_checkpoint_gives_one_clear_error(tmp_path, kind, reason):
    good = tmp_path / "good.pt"
    model, optimizer, _, loader, _ = make_run()
    run(model, optimizer, loader, steps=2, checkpoint=good)
    path = tmp_path / "bad.pt"
    write_bad(path, kind, good.read_bytes())
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path} is not a valid regkit checkpoint ({reason}")
    assert message.endswith("); delete it to start afresh, or pass another checkpoint path")
    assert isinstance(error.value, ValueError)
    shown = "".join(traceback.format_exception(error.value))  # what a user sees, chained exceptions included
    assert "weights_only" not in shown and "above exception" not in shown  # no torch error chained on
    calls = [0]
    with pytest.raises(CheckpointError, match="is not a valid regkit checkpoint"):
        run(model, optimizer, loader, steps=4, checkpoint=path, resume=True, loss_fn=counting_loss(calls))
    assert calls == [0]


def test_a_missing_checkpoint_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_an_empty_evaluation_loader_is_refused_before_training_naming_it():
    model, optimizer, _, loader, val = make_run()
    calls = [0]
    with pytest.raises(ValueError, match=r"eval_loaders\['test'\] is empty \(length 0\): give it data or leave it out"):
        run(model, optimizer, loader, steps=3, eval_loaders={"val": val, "test": []}, loss_fn=counting_loss(calls))
    assert calls == [0]


def test_history_save_is_atomic_too(tmp_path, monkeypatch):
    path = History(meta={"run": 1}).save(tmp_path / "run.json")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        History(meta={"run": 2}).save(path)
    assert os.listdir(tmp_path) == ["run.json"] and History.load(path).meta == {"run": 1}
