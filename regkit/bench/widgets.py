"""``python -m regkit.bench widgets``: how fast each classroom demo redraws, against a one-second budget.

For each demo of `regkit.widgets.gallery.DEMOS` (built without a frontend) and each of its controls:
the redraw after one nudge to a new value (computed and drawn; wall clock and process CPU time) and
the redraw back to the value before (cached computation), each as a fraction of one second. On a
shared machine the CPU time is the steadier number (it does not count waiting for a core).
"""

import argparse

import torch

from regkit.widgets.gallery import DEMOS, update_times


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m regkit.bench widgets", description=__doc__)
    parser.add_argument("--demo", choices=("all", *DEMOS), default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, like the notebooks)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'demo':<17} {'control':<14} {'new (s)':>8} {'cpu (s)':>8} {'back (s)':>9}  changed")
    for name in DEMOS if args.demo == "all" else (args.demo,):
        for u in update_times(name):
            print(f"{u.demo:<17} {u.control:<14} {u.seconds:8.3f} {u.cpu_seconds:8.3f} {u.back_seconds:9.3f}  {u.changed}")
