"""Train a course model from the shell, on one device or data-parallel under torchrun.

    python -m regkit.train_cli --data fashion_mnist --model small_cnn --optimizer AdamW --lr 1e-3 \\
        --weight-decay 0.05 --batch-size 256 --steps 300 --augment --out runs/train/adamw.json
    torchrun --standalone --nproc-per-node 4 -m regkit.train_cli ...   # the same arguments

Under torchrun every process joins the process group (NCCL on GPUs, one per process; gloo on
CPUs), loads the same data and model (seeded), and trains on its slice of every global batch of
``--batch-size`` samples (:class:`regkit.data.DeviceLoader` with ``rank``/``world_size``), so the
run follows the single-process run with the same global batch. Rank 0 prints and writes ``--out``
(the History as JSON) and ``--checkpoint``. Weight decay goes through ``regkit.param_groups``
(matrices decay; biases and normalization weights do not).

A bad option (a value the library refuses, an unknown ``--model-arg``/``--opt-arg``, an
``--out`` or ``--checkpoint`` that cannot be written, a checkpoint that cannot be resumed) prints
one line, ``python -m regkit.train_cli: error: ...``, and exits with status 2, like argparse; the
paths are checked before any data is loaded.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys

import torch

import regkit.optim
from regkit._files import check_writable_file
from regkit.data import IMAGE_DATASETS, DeviceLoader, load_images
from regkit.distributed import init_from_env, is_main_process, rank, rank_device, world_size
from regkit.models import MODELS, build_model
from regkit.param_groups import param_groups
from regkit.train import seed_everything, train, warmup_cosine

OPTIMIZERS = sorted(name for name in regkit.optim.__all__
                    if inspect.isclass(getattr(regkit.optim, name))
                    and issubclass(getattr(regkit.optim, name), torch.optim.Optimizer)
                    and name not in ("Graft", "Grafted"))  # a magnitude from a second run / two optimizers: Python only
IMAGE_MODELS = sorted(name for name in MODELS if name not in ("onehot_mlp", "grok_transformer"))  # token models
EVAL_BATCH = 1000


def key_value(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` with VALUE a Python literal (``momentum=0.9``, ``hidden=(64,)``; other text stays a str)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m regkit.train_cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="auto", choices=IMAGE_DATASETS, help="dataset (default auto)")
    p.add_argument("--train-size", type=int, help="keep the first N training images")
    p.add_argument("--model", default="small_cnn", choices=IMAGE_MODELS, help="model (default small_cnn)")
    p.add_argument("--model-arg", type=key_value, action="append", default=[], metavar="NAME=VALUE",
                   help="keyword argument of the model, e.g. width=16")
    p.add_argument("--optimizer", default="AdamW", choices=OPTIMIZERS, help="regkit.optim class (default AdamW)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0, help="for matrices (regkit.param_groups)")
    p.add_argument("--opt-arg", type=key_value, action="append", default=[], metavar="NAME=VALUE",
                   help="keyword argument of the optimizer, e.g. momentum=0.9")
    p.add_argument("--batch-size", type=int, default=256, help="the global batch (over all processes)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, metavar="STEPS", help="linear warmup then cosine decay (warmup_cosine)")
    p.add_argument("--augment", action="store_true", help="random crops and flips")
    p.add_argument("--eval-every", type=int, help="default steps // 20")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: cuda:LOCAL_RANK, mps or cpu)")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (written by rank 0)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--out", metavar="PATH", help="write the History as JSON (rank 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar and summary line")
    return p


def build_optimizer(args: argparse.Namespace, model: torch.nn.Module, verbose: bool) -> torch.optim.Optimizer:
    """The ``--optimizer``: decay through `param_groups`; AdamCPR groups the model itself (bounds, no decay)."""
    cls = getattr(regkit.optim, args.optimizer)
    if cls is regkit.optim.AdamCPR:
        if args.weight_decay:
            raise ValueError("AdamCPR has no weight decay: set its bounds with --opt-arg kappa_init_method=... "
                             "--opt-arg kappa_init_param=...")
        params = model
    else:
        params = param_groups(model, args.weight_decay, verbose=verbose)
    try:
        return cls(params, lr=args.lr, **dict(args.opt_arg))
    except TypeError as err:  # an unknown --opt-arg
        raise ValueError(f"--opt-arg: {err}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the command; a bad option prints one line and exits with status 2 (module docstring)."""
    cli = parser()
    args = cli.parse_args(argv)
    try:
        return run(args)
    except ValueError as err:  # regkit refuses bad input with a ValueError that names it
        cli.exit(2, f"{cli.prog}: error: {err}\n")


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say (parsed by :func:`parser`) and write ``--out``/``--checkpoint`` on rank 0."""
    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint PATH (the file to continue from)")
    init_from_env()
    main_process = is_main_process()
    if main_process:
        for option, path in (("--out", args.out), ("--checkpoint", args.checkpoint)):
            if path is not None:
                check_writable_file(option, path)
    device = rank_device(args.device)
    data = load_images(args.data, train_size=args.train_size, verbose=main_process)
    seed_everything(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    try:
        model = build_model(args.model, data.num_classes, data.in_channels, data.image_size, **dict(args.model_arg))
    except TypeError as err:  # an unknown --model-arg
        raise ValueError(f"--model-arg: {err}") from None
    optimizer = build_optimizer(args, model, verbose=main_process)
    shard = {"rank": rank(), "world_size": world_size(), "device": device, "mean": data.mean, "std": data.std}
    train_loader = DeviceLoader(data.x_train, data.y_train, args.batch_size, augment=args.augment, seed=args.seed,
                                **shard)
    test_loader = DeviceLoader(data.x_test, data.y_test, EVAL_BATCH, shuffle=False, **shard)
    if main_process and world_size() > 1:
        backend = torch.distributed.get_backend()
        print(f"data-parallel: {world_size()} processes ({backend}) x {args.batch_size // world_size()} samples "
              f"= global batch {args.batch_size}", flush=True)
    history = train(
        model, optimizer, train_loader, steps=args.steps, eval_loaders={"test": test_loader},
        eval_every=args.eval_every, scheduler=warmup_cosine(optimizer, args.warmup, args.steps) if args.warmup else None,
        device=device, checkpoint=args.checkpoint, resume=args.resume, progress=not args.no_progress,
        desc=f"{args.model}/{args.optimizer}", meta={"dataset": data.name, "global_batch": args.batch_size},
    )
    if main_process and args.out:
        print(f"history: {history.save(args.out)}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
