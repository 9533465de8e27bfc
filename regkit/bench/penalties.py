"""``python -m regkit.bench penalties``: the cost of the loss-side methods, as ratios in one run.

Two parts: the two-pass gradient-norm penalty (plain vs GNP vs SAM vs exact double backprop)
and the micro-batch penalties (vectorized vs serial accumulation).
"""

import argparse
import importlib


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m regkit.bench penalties", description=__doc__)
    parser.add_argument("--part", choices=("all", "grad_norm", "microbatch"), default="all")
    parser.add_argument("--quick", action="store_true", help="a short run with small shapes (seconds)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    for part in ("grad_norm", "microbatch") if args.part == "all" else (args.part,):
        importlib.import_module(f"regkit.bench._{part}").run(quick=args.quick, device=args.device)
