import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regkit.diagnostics.metrics import grad_norm
from regkit.history import History
from regkit.train import (
    StopTraining,
    default_device,
    effective_step_hook,
    evaluate,
    grad_norm_hook,
    load_checkpoint,
    resolve_device,
    seed_everything,
    train,
    warmup_cosine,
    weight_norm_hook,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: intra-op threads only add contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SeededLoader:
    """The loader protocol of regkit.data.DeviceLoader in miniature: shuffled (x, y) batches whose
    order depends only on (seed, epoch); ``state_dict()`` names the next batch."""

    def __init__(self, x, y, batch_size, seed=0):
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.epoch = self.batch = 0

    def __len__(self):
        return len(self.x) // self.batch_size

    def __iter__(self):
        if self.batch >= len(self):
            self.epoch, self.batch = self.epoch + 1, 0
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 * self.seed + self.epoch))
        while self.batch < len(self):
            index = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
            self.batch += 1
            yield self.x[index], self.y[index]
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self):
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state):
        self.epoch, self.batch = state["epoch"], state["batch"]


def teacher_data(n, seed, dtype=torch.float32):
    """Gaussian inputs labelled by a fixed random linear teacher (3 classes)."""
    teacher = torch.randn(8, 3, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.to(dtype), (x @ teacher).argmax(1)


def make_run(init_seed=0, dropout=0.1, dtype=torch.float32, lr=0.05, steps=40):
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3)).to(dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    scheduler = warmup_cosine(optimizer, warmup_steps=5, total_steps=steps)
    train_loader = SeededLoader(*teacher_data(256, seed=1, dtype=dtype), batch_size=32, seed=7)
    val_loader = SeededLoader(*teacher_data(128, seed=2, dtype=dtype), batch_size=64)
    return model, optimizer, scheduler, train_loader, val_loader


def run(model, optimizer, loader, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return train(model, optimizer, loader, **kw)


def test_loss_falls_and_accuracy_rises_on_teacher_data():
    model, optimizer, scheduler, loader, val = make_run(steps=150)
    before = evaluate(model, val)
    history = run(model, optimizer, loader, steps=150, scheduler=scheduler, eval_loaders={"val": val},
                  log_every=10, eval_every=50)
    df = history.df
    assert df["train_loss"].dropna().iloc[-1] < 0.5 * df["train_loss"].dropna().iloc[0]
    assert history.last("val_loss") < 0.5 * before["loss"]
    assert history.last("val_acc") > 0.85 > before["acc"]


def test_checkpoint_resume_reproduces_the_uninterrupted_run_bitwise(tmp_path):
    kw = dict(steps=40, log_every=4, eval_every=10, seed=5)
    reference_model, optimizer, scheduler, loader, val = make_run()
    reference = run(reference_model, optimizer, loader, scheduler=scheduler, eval_loaders={"val": val},
                    hooks=[weight_norm_hook(reference_model)], **kw)
    draws_after_reference = (random.random(), np.random.rand(), torch.rand(3).tolist())

    class Preempted(Exception):
        pass

    training_calls = 0

    def preempted_at_step_24(out, y):
        nonlocal training_calls
        training_calls += torch.is_grad_enabled()  # evaluation runs under no_grad
        if training_calls == 24:
            raise Preempted
        return F.cross_entropy(out, y)

    path = tmp_path / "ckpt" / "run.pt"
    model, optimizer, scheduler, loader, val = make_run()
    with pytest.raises(Preempted):
        run(model, optimizer, loader, scheduler=scheduler, eval_loaders={"val": val}, loss_fn=preempted_at_step_24,
            hooks=[weight_norm_hook(model)], checkpoint=path, checkpoint_every=7, **kw)
    assert torch.load(path, weights_only=True)["step"] == 21  # neither a log (4k) nor an eval (10k) step

    seed_everything(999)  # scramble every RNG: the resumed run must restore them
    model, optimizer, scheduler, loader, val = make_run(init_seed=1)  # different init: the weights come from the file
    resumed = run(model, optimizer, loader, scheduler=scheduler, eval_loaders={"val": val},
                  hooks=[weight_norm_hook(model)], checkpoint=path, resume=True, **kw)

    assert resumed.rows == reference.rows
    assert resumed.meta["resumed_at"] == [21]
    for p, q in zip(model.parameters(), reference_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert (random.random(), np.random.rand(), torch.rand(3).tolist()) == draws_after_reference


def test_checkpoint_is_plain_containers_loadable_with_weights_only(tmp_path):
    model, optimizer, scheduler, loader, val = make_run(steps=12)
    path = tmp_path / "run.pt"
    history = run(model, optimizer, loader, steps=12, scheduler=scheduler, eval_loaders={"val": val},
                  eval_every=5, checkpoint=path)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 12
    assert state["history"]["rows"] == history.rows
    assert state["train_loader"] == loader.state_dict()
    assert state["scheduler"]["last_epoch"] == 12
    for name, p in model.named_parameters():
        assert torch.equal(state["model"][name], p)
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed away


class TwoPassSGD(torch.optim.Optimizer):
    """Stand-in for SAM: gradient at w + rho * g / ||g||, then an SGD step from w with it."""

    def __init__(self, params, lr, rho):
        super().__init__(params, dict(lr=lr, rho=rho))

    @torch.no_grad()
    def step(self, closure):
        params = [p for group in self.param_groups for p in group["params"]]
        with torch.enable_grad():
            loss = closure()
        scale = self.param_groups[0]["rho"] / grad_norm(params)
        shifts = [p.grad * scale for p in params]
        torch._foreach_add_(params, shifts)
        with torch.enable_grad():
            closure()
        torch._foreach_sub_(params, shifts)
        for p in params:
            p.add_(p.grad, alpha=-self.param_groups[0]["lr"])
        return loss


def recording_loss(losses):
    """cross-entropy that appends every training-time value to ``losses``."""

    def loss_fn(out, y):
        loss = F.cross_entropy(out, y)
        if torch.is_grad_enabled():
            losses.append(loss.item())
        return loss

    return loss_fn


def test_two_pass_optimizer_gets_a_closure_and_the_first_pass_is_logged():
    model, _, _, loader, _ = make_run(dropout=0.0)
    losses = []
    history = run(model, TwoPassSGD(model.parameters(), lr=0.1, rho=0.5), loader, steps=6, log_every=1,
                  loss_fn=recording_loss(losses))
    assert len(losses) == 12  # two closure calls per step
    first, second = losses[0::2], losses[1::2]
    assert all(b != a for a, b in zip(first, second, strict=True))  # the second pass is at perturbed weights
    assert history.df["train_loss"].tolist() == pytest.approx(first, rel=1e-6)


def test_train_loss_is_the_mean_over_the_steps_since_the_last_log():
    model, optimizer, _, loader, _ = make_run(dropout=0.0)
    losses = []
    history = run(model, optimizer, loader, steps=10, log_every=4, loss_fn=recording_loss(losses))
    assert history.df["step"].tolist() == [4, 8, 10]
    expected = [np.mean(losses[0:4]), np.mean(losses[4:8]), np.mean(losses[8:10])]
    assert history.df["train_loss"].tolist() == pytest.approx(expected, rel=1e-6)
    assert history.df["epoch"].tolist() == [4 / 8, 1.0, 10 / 8]  # the loader has 8 batches


def test_grad_fn_with_micro_batches_follows_the_default_trajectory():
    def micro_batch_grad(model, x, y):
        total = 0.0
        for xs, ys in zip(x.chunk(4), y.chunk(4), strict=True):
            out = model(xs)
            loss = F.cross_entropy(out, ys) * len(ys) / len(y)
            loss.backward()
            total += loss.detach()
        micro_batch_grad.calls += 1
        return total

    micro_batch_grad.calls = 0
    default_model, optimizer, scheduler, loader, _ = make_run(dropout=0.0, dtype=torch.float64)
    default = run(default_model, optimizer, loader, steps=20, scheduler=scheduler, log_every=5)
    model, optimizer, scheduler, loader, _ = make_run(dropout=0.0, dtype=torch.float64)
    micro = run(model, optimizer, loader, steps=20, scheduler=scheduler, log_every=5, grad_fn=micro_batch_grad)

    assert micro_batch_grad.calls == 20
    for p, q in zip(model.parameters(), default_model.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-9, atol=1e-12)
    assert micro.df["train_loss"].tolist() == pytest.approx(default.df["train_loss"].tolist(), rel=1e-6)
    assert "train_acc" not in micro.df  # grad_fn returned only the loss


def test_grad_fn_returning_logits_gives_a_training_accuracy():
    def grad_fn(model, x, y):
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        return loss, out

    model, optimizer, _, loader, _ = make_run()
    history = run(model, optimizer, loader, steps=4, log_every=2, grad_fn=grad_fn)
    assert history.df["train_acc"].between(0, 1).all()


def test_evaluations_and_hooks_are_logged_every_eval_every_steps_and_at_the_end():
    model, optimizer, scheduler, loader, val = make_run(steps=25)
    hooks = [lambda step, model, optimizer: {"hook_step": 2 * step},
             weight_norm_hook(model), grad_norm_hook(model, per_tensor=True), effective_step_hook(model)]
    history = run(model, optimizer, loader, steps=25, eval_every=10, log_every=5, scheduler=scheduler,
                  eval_loaders={"val": val, "train_eval": loader}, hooks=hooks)
    df = history.df.set_index("step")
    assert df.index.tolist() == [5, 10, 15, 20, 25]
    assert df["val_acc"].dropna().index.tolist() == [10, 20, 25]
    assert df["hook_step"].dropna().to_dict() == {10: 20.0, 20: 40.0, 25: 50.0}
    assert df["train_eval_loss"].dropna().index.tolist() == [10, 20, 25]

    final = evaluate(model, val)
    assert history.last("val_loss") == pytest.approx(final["loss"], rel=1e-6)
    assert history.last("val_acc") == final["acc"]
    w = model[0].weight.detach().double()
    assert history.last("wnorm/0.weight") == pytest.approx(w.norm().item(), rel=1e-6)
    all_weights = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    assert history.last("wnorm") == pytest.approx(all_weights.norm().item(), rel=1e-6)
    assert history.last("gnorm/3.bias") == pytest.approx(model[3].bias.grad.norm().item(), rel=1e-6)
    assert history.last("gnorm") == pytest.approx(grad_norm(model).item(), rel=1e-6)
    lr_now = optimizer.param_groups[0]["lr"]  # what the hook saw at the end
    assert history.last("eff_step/0.weight") == pytest.approx(lr_now / w.norm().item() ** 2, rel=1e-6)
    assert "eff_step/0.bias" not in df  # the default picks matrices only


def test_eval_every_takes_a_collection_of_steps():
    model, optimizer, _, loader, val = make_run(steps=30)
    history = run(model, optimizer, loader, steps=30, eval_every=[1, 2, 5, 17], log_every=30, eval_loaders={"val": val})
    assert history.df.dropna(subset=["val_acc"])["step"].tolist() == [1, 2, 5, 17, 30]  # and the last step
    for bad in ([0, 5], [5, 31], [2.0], 3.5):
        with pytest.raises(ValueError, match="eval_every"):
            run(model, optimizer, loader, steps=30, eval_every=bad)


def test_a_hook_raising_stop_training_ends_the_run_after_that_evaluation(tmp_path):
    def stop_at_12(step, model, optimizer):
        if step >= 12:
            raise StopTraining
        return {}

    model, optimizer, _, loader, val = make_run(steps=40)
    path = tmp_path / "ckpt.pt"
    history = run(model, optimizer, loader, steps=40, eval_every=4, log_every=2, eval_loaders={"val": val},
                  hooks=[stop_at_12, lambda step, model, optimizer: {"after": step}], checkpoint=path)
    assert history.meta["stopped_at"] == 12 and history.rows[-1]["step"] == 12
    assert history.last("after") == 12 and history.df.dropna(subset=["val_acc"])["step"].tolist() == [4, 8, 12]
    assert load_checkpoint(path)["step"] == 12  # the state it stopped in is saved


def test_logged_lr_is_the_one_used_by_that_step():
    model, optimizer, scheduler, loader, _ = make_run(steps=12, lr=0.2)
    history = run(model, optimizer, loader, steps=12, log_every=1, scheduler=scheduler)
    multiplier = scheduler.lr_lambdas[0]
    assert history.df["lr"].tolist() == pytest.approx([0.2 * multiplier(s - 1) for s in range(1, 13)], rel=1e-12)


def test_warmup_cosine_values_in_closed_form():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = warmup_cosine(opt, warmup_steps=4, total_steps=20, final_fraction=0.1)
    lrs = []
    for _ in range(26):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])
    cosine = [2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 16))) for s in range(4, 21)]
    assert lrs[4:21] == pytest.approx(cosine)
    assert lrs[12] == pytest.approx(2.0 * 0.55)  # half way down
    assert lrs[20:] == pytest.approx([0.2] * 6)  # the floor, also past the end
    no_warmup = warmup_cosine(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 0, 10)
    assert no_warmup.get_last_lr() == [1.0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(warmup_steps=11, total_steps=10), r"warmup_steps must be an int in \[0, 10\] \(at most total_steps=10\), got 11"),
    (dict(warmup_steps=0, total_steps=0), "total_steps must be a positive int, got 0"),
    (dict(warmup_steps=2.5, total_steps=10), r"warmup_steps must be an int in \[0, 10\] .*got 2.5"),
    (dict(warmup_steps=1, total_steps=10, final_fraction=1.5), r"final_fraction must be in \[0, 1\], got 1.5"),
])
def test_warmup_cosine_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        warmup_cosine(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), **kwargs)


def test_no_host_synchronisation_between_log_and_eval_points(monkeypatch):
    """Syncs scale with the number of log/eval points, not with the number of steps."""
    counts = {"syncs": 0}
    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, **kwargs):
            counts["syncs"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)

    def syncs(steps):
        model, _, _, loader, val = make_run()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        counts["syncs"] = 0
        run(model, optimizer, loader, steps=steps, log_every=steps // 2, eval_every=steps, eval_loaders={"val": val})
        return counts["syncs"]

    assert 0 < syncs(20) == syncs(40)


def test_epochs_mean_full_passes_over_the_loader():
    model, optimizer, _, loader, _ = make_run()
    history = run(model, optimizer, loader, epochs=2, log_every=8)
    assert history.meta["steps"] == 16 and history.df["epoch"].tolist() == [1.0, 2.0]
    assert loader.state_dict() == {"epoch": 1, "batch": 8}  # exactly two passes consumed


def test_non_finite_loss_stops_the_run_with_a_warning():
    def explodes_at_step_6(out, y, calls=[0]):  # noqa: B006 - a call counter
        calls[0] += 1
        return F.cross_entropy(out, y) * (math.inf if calls[0] >= 6 else 1.0)

    model, optimizer, _, loader, _ = make_run()
    with pytest.warns(UserWarning, match="training loss is inf at step 6: stopping"):
        history = run(model, optimizer, loader, steps=20, log_every=2, loss_fn=explodes_at_step_6)
    assert history.meta["stopped_at"] == 6 and history.rows[-1]["step"] == 6


def test_bf16_autocast_and_channels_last_run_on_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x, y = torch.randn(64, 1, 6, 6), torch.randint(3, (64,))
    loader = SeededLoader(x, y, batch_size=16)
    history = run(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, steps=6, log_every=3,
                  eval_loaders={"val": loader}, autocast_dtype=torch.bfloat16, channels_last=True)
    assert np.isfinite(history.df["train_loss"].dropna()).all() and np.isfinite(history.df["val_loss"]).all()
    assert history.meta["autocast"] == "torch.bfloat16"
    assert model[0].weight.dtype == torch.float32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_progress_prints_a_final_summary_line(capsys):
    model, optimizer, _, loader, val = make_run()
    run(model, optimizer, loader, steps=4, eval_loaders={"val": val}, progress=True, desc="demo")
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("demo: step 4/4 on cpu (") and "val_acc=" in out and "train_loss=" in out


def test_resume_without_a_checkpoint_file_starts_afresh(tmp_path):
    model, optimizer, _, loader, _ = make_run()
    history = run(model, optimizer, loader, steps=3, checkpoint=tmp_path / "new.pt", resume=True)
    assert history.rows[-1]["step"] == 3 and "resumed_at" not in history.meta
    assert (tmp_path / "new.pt").exists()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(), ValueError, "exactly one of steps and epochs, got steps=None, epochs=None"),
    (dict(steps=5, epochs=1), ValueError, "exactly one of steps and epochs, got steps=5, epochs=1"),
    (dict(steps=0), ValueError, "steps must be a positive int, got 0"),
    (dict(epochs=1.5), ValueError, "epochs must be a positive int, got 1.5"),
    (dict(steps=5, eval_every=-1), ValueError, "eval_every must be a positive int, got -1"),
    (dict(steps=5, log_every=0), ValueError, "log_every must be a positive int, got 0"),
    (dict(steps=5, device="tpu"), ValueError, "device='tpu' is not a device; use one of"),
    (dict(steps=5, eval_loaders={"train": []}), ValueError, "'train' is taken"),
    (dict(steps=5, resume=True), ValueError, "resume=True needs checkpoint=PATH"),
    (dict(steps=5, checkpoint_every=2), ValueError, "checkpoint_every needs checkpoint=PATH"),
    (dict(steps=5, autocast_dtype=torch.float16), ValueError, "autocast_dtype must be None or torch.bfloat16"),
    (dict(steps=5, hooks=[3]), TypeError, "must be callables, got 3"),
    (dict(steps=5, meta={"x": object()}), ValueError, "meta must be JSON-serialisable"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    model, optimizer, _, loader, _ = make_run()
    kwargs.setdefault("device", "cpu")
    with pytest.raises(error, match=match):
        train(model, optimizer, loader, progress=False, **kwargs)


def test_epochs_need_a_sized_loader_and_loaders_must_yield_pairs():
    model, optimizer, _, loader, _ = make_run()
    with pytest.raises(ValueError, match="epochs needs a train_loader with len"):
        run(model, optimizer, iter(loader), epochs=1)
    with pytest.raises(ValueError, match="train_loader must yield \\(x, y\\) pairs, got Tensor"):
        run(model, optimizer, [torch.ones(2, 8)], steps=1)
    with pytest.raises(ValueError, match="train_loader yielded no batches"):
        run(model, optimizer, [], steps=1)


def test_grad_fn_must_return_the_loss_tensor():
    model, optimizer, _, loader, _ = make_run()
    with pytest.raises(TypeError, match="grad_fn must return the loss tensor or \\(loss, logits\\), got float"):
        run(model, optimizer, loader, steps=1, grad_fn=lambda model, x, y: 1.0)


def test_devices_and_seeding():
    assert resolve_device(None) == resolve_device("auto") == default_device()
    if not torch.cuda.is_available():
        assert default_device().type in ("cpu", "mps")
        with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device='meta' is not supported"):
        resolve_device("meta")

    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(3)
    first = draws()
    seed_everything(3)
    assert draws() == first
    for bad in (-1, 2**32, 1.5):
        with pytest.raises(ValueError, match="seed must be an integer in \\[0, 2\\*\\*32\\)"):
            seed_everything(bad)


def test_history_round_trips_and_merges_rows_of_one_step(tmp_path):
    history = History(meta={"dataset": "synthetic"})
    history.log(1, train_loss=2.0)
    history.log(2, train_loss=1.5)
    history.log(2, val_acc=0.5)
    history.log(3, train_loss=float("nan"))
    assert history.rows[1] == {"step": 2, "train_loss": 1.5, "val_acc": 0.5}
    assert history.columns == ["step", "train_loss", "val_acc"]
    assert history.df.shape == (3, 3) and math.isnan(history.df["val_acc"][0])
    assert history.last("val_acc") == 0.5 and math.isnan(history.last("train_loss"))
    with pytest.raises(KeyError, match="'val_loss' was never logged; logged: step, train_loss, val_acc"):
        history.last("val_loss")
    with pytest.raises(ValueError, match="step 1 is before the last logged step 3"):
        history.log(1, x=1.0)

    again = History.from_dict(history.to_dict())
    assert again.rows[:2] == history.rows[:2] and again.meta == history.meta
    loaded = History.load(history.save(tmp_path / "sub" / "h.json"))
    assert loaded.rows[:2] == history.rows[:2] and math.isnan(loaded.rows[2]["train_loss"])
    assert loaded.meta == {"dataset": "synthetic"} and len(loaded) == 3
    assert "3 rows" in repr(loaded)


def test_resuming_with_a_loader_without_state_warns(tmp_path):
    model, optimizer, _, loader, _ = make_run()
    batches = list(loader)
    run(model, optimizer, batches, steps=3, checkpoint=tmp_path / "run.pt")
    with pytest.warns(UserWarning, match="train_loader has no state_dict"):
        history = run(model, optimizer, batches, steps=5, checkpoint=tmp_path / "run.pt", resume=True)
    assert history.meta["resumed_at"] == [3] and history.rows[-1]["step"] == 5
