"""Data-parallel training: 2 CPU processes (gloo) end with the parameters of 1 process with the same global batch.

One ``torch.multiprocessing.spawn`` of 2 ranks trains every optimizer of ``OPTIMIZERS`` in turn
(float64, a tiny MLP with a LayerNorm on 8x8 images with random crops and flips, ``STEPS`` steps, global batch
``GLOBAL_BATCH`` split over the ranks by ``DeviceLoader(rank=, world_size=)``); the reference is the
same call of ``regkit.train.train`` in this process without a process group. A new optimizer joins
with one entry in ``OPTIMIZERS`` (a factory taking the model).
"""

import contextlib
import io
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import regkit.optim as ro
import regkit.train.checkpoint as checkpoint_module
from regkit.data import DeviceLoader
from regkit.penalties import GNP, SAM, microbatch_grad_fn
from regkit.train import load_checkpoint, train

WORLD, STEPS, GLOBAL_BATCH = 2, 4, 16
OPTIMIZERS = {
    "sgd": lambda model: ro.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adamw": lambda model: ro.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
    "adamp": lambda model: ro.AdamP(model.parameters(), lr=1e-2, weight_decay=0.1),
    "sgdp": lambda model: ro.SGDP(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2),
    # dependent 0.8: the bounds are below the initial norms, so the multipliers act from the first steps
    "adamcpr": lambda model: ro.AdamCPR(model, lr=1e-2, kappa_init_method="dependent", kappa_init_param=0.8, verbose=False),
    # two passes per step, each all-reduced by DDP: the perturbation comes from the global batch's gradient
    "sam_adamw": lambda model: SAM(model.parameters(), ro.AdamW, rho=0.05, lr=1e-2, weight_decay=0.1, model=model),
    "gnp_sgd_cpr": lambda model: GNP(model.parameters(), ro.with_cpr(ro.SGD), alpha=0.8, r=0.05, lr=0.1, momentum=0.9,
                                     kappa_init_method="dependent", kappa_init_param=0.8, verbose=False, model=model),
}
GRAD_FNS = {"sgd+microbatches": microbatch_grad_fn(F.cross_entropy, micro_batch_size=4)}  # averaged explicitly
CASES = [*OPTIMIZERS, *GRAD_FNS]
# float64: each rank's backward sums 8 per-sample gradients, the all-reduce adds the two means and
# halves them; one process sums all 16. Same numbers, other rounding order: a few ulps per step.
TOLERANCE = {"rtol": 1e-12, "atol": 1e-14}


class ToDouble(nn.Module):
    def forward(self, x):
        return x.double()


def make_model():
    """The first layer's weight is scale-invariant (a LayerNorm without affine follows): AdamP/SGDP project it."""
    return nn.Sequential(ToDouble(), nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16, elementwise_affine=False),
                         nn.Tanh(), nn.Linear(16, 4)).double()


def images():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 1, 8, 8), generator=g, dtype=torch.uint8)
    return x, torch.randint(0, 4, (48,), generator=g)


def run_case(name, rank, world, checkpoint=None):
    """Train one case as rank ``rank`` of ``world``; return the final parameters and the History."""
    torch.manual_seed(0)
    model = make_model()
    x, y = images()
    loader = DeviceLoader(x, y, GLOBAL_BATCH, augment=True, seed=3, device="cpu", mean=(120.0,), std=(70.0,),
                          rank=rank, world_size=world)
    test = DeviceLoader(x[:20], y[:20], 6, shuffle=False, device="cpu", rank=rank, world_size=world)
    optimizer = OPTIMIZERS.get(name, OPTIMIZERS["sgd"])(model)
    history = train(model, optimizer, loader, steps=STEPS, eval_loaders={"val": test}, eval_every=2,
                    log_every=1, device="cpu", grad_fn=GRAD_FNS.get(name), checkpoint=checkpoint, progress=True)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, history


def worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    saves = []
    save = checkpoint_module.save_atomically
    checkpoint_module.save_atomically = lambda state, path: (saves.append(path), save(state, path))
    try:
        for name in CASES:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                checkpoint = os.path.join(out_dir, f"{name}.ckpt") if name == "sgd" else None
                params, history = run_case(name, rank, world, checkpoint)
            torch.save({"params": params, "history": history.to_dict(), "printed": printed.getvalue(),
                        "saves": len(saves)}, os.path.join(out_dir, f"{name}.rank{rank}.pt"))
            saves.clear()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(WORLD, str(out / "store"), str(out)), nprocs=WORLD, join=True)
    return {(name, rank): torch.load(out / f"{name}.rank{rank}.pt", weights_only=False)
            for name in CASES for rank in range(WORLD)} | {"out": out}


@pytest.mark.parametrize("name", CASES)
def test_two_ranks_give_the_single_process_parameters(ddp_runs, name):
    reference, history = run_case(name, rank=0, world=1)
    ranks = [ddp_runs[name, rank] for rank in range(WORLD)]
    for key, value in reference.items():
        torch.testing.assert_close(ranks[0]["params"][key], value, **TOLERANCE)
        assert torch.equal(ranks[0]["params"][key], ranks[1]["params"][key])  # replicas stay identical
        assert not torch.equal(value, _initial(name)[key])  # the parameters did move
    # logged training loss and evaluation are reduced over the ranks: the single-process numbers
    for rank in ranks:
        rows = rank["history"]["rows"]
        assert [r["step"] for r in rows] == [r["step"] for r in history.rows]
        for row, ref in zip(rows, history.rows, strict=True):
            assert row.keys() == ref.keys()
            for k in ref:
                assert row[k] == pytest.approx(ref[k], rel=1e-6), (k, row["step"])
        assert rank["history"]["meta"]["world_size"] == WORLD


def _initial(name):
    torch.manual_seed(0)
    model = make_model()
    return model.state_dict()


def test_only_rank_0_prints_and_writes_the_checkpoint(ddp_runs):
    rank0, rank1 = ddp_runs["sgd", 0], ddp_runs["sgd", 1]
    assert "train: step 4/4 on cpu" in rank0["printed"] and rank1["printed"] == ""
    assert rank0["saves"] == 2 and rank1["saves"] == 0  # eval_every=2: steps 2 and 4
    state = load_checkpoint(ddp_runs["out"] / "sgd.ckpt")
    assert state["step"] == STEPS and set(state["model"]) == set(rank0["params"])  # no DDP "module." prefix
    for key, value in rank0["params"].items():
        assert torch.equal(state["model"][key], value)


# --- the sharded loader -------------------------------------------------------------------------

@pytest.mark.parametrize("world", [2, 3])
def test_rank_slices_partition_each_global_batch_with_the_same_augmentation(world):
    x, y = images()
    kw = dict(augment=True, seed=5, device="cpu", mean=(120.0,), std=(70.0,))
    single = DeviceLoader(x, y, 12, **kw)
    ranks = [DeviceLoader(x, y, 12, rank=r, world_size=world, **kw) for r in range(world)]
    assert all(len(loader) == len(single) for loader in ranks)
    for _ in range(2):  # two epochs: new permutation and new crops, still identical
        for batch, *slices in zip(single, *ranks, strict=True):
            assert [len(s[1]) for s in slices] == [12 // world] * world
            torch.testing.assert_close(torch.cat([s[0] for s in slices]), batch[0], rtol=0, atol=0)
            assert torch.equal(torch.cat([s[1] for s in slices]), batch[1])


def test_evaluation_slices_cover_a_short_last_batch():
    x, y = images()
    single = list(DeviceLoader(x[:10], y[:10], 4, shuffle=False, device="cpu"))
    ranks = [list(DeviceLoader(x[:10], y[:10], 4, shuffle=False, device="cpu", rank=r, world_size=3))
             for r in range(3)]
    assert [[len(b[1]) for b in batches] for batches in ranks] == [[1, 1, 0], [1, 1, 1], [2, 2, 1]]
    for i, batch in enumerate(single):
        assert torch.equal(torch.cat([batches[i][0] for batches in ranks]), batch[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world_size": 0}, "world_size must be a positive int (processes sharing the batch), got 0"),
        ({"rank": 2, "world_size": 2}, "rank must be an int in [0, 1] (this process's index, world_size=2), got 2"),
        ({"rank": -1, "world_size": 2}, "rank must be an int in [0, 1] (this process's index, world_size=2), got -1"),
        ({"world_size": 5}, "batch_size=12 is the global batch and must be a multiple of world_size=5"),
    ],
)
def test_bad_sharding_raises_a_clear_error(kwargs, message):
    x, y = images()
    with pytest.raises(ValueError) as err:
        DeviceLoader(x, y, 12, device="cpu", **kwargs)
    assert message in str(err.value)
