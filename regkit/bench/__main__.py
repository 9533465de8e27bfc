"""``python -m regkit.bench {all,NAME} [options]``: run one benchmark module or all of them.

``gpu`` is no benchmark but the GPU check that runs the others (`regkit.bench.gpu`): ``all`` leaves
it out, and its exit status is the command's.
"""

import importlib
import pkgutil
import sys

import regkit.bench

CHECKS = ("gpu",)


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(regkit.bench.__path__) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m regkit.bench {{all,{','.join(names)}}} [options]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name != "all" and name not in names:
        print(f"unknown benchmark {name!r}; choose one of: all, {', '.join(names)}", file=sys.stderr)
        return 2
    if name in CHECKS:
        return importlib.import_module(f"regkit.bench.{name}").main(rest)
    for n in [n for n in names if n not in CHECKS] if name == "all" else [name]:
        print(f"\n=== regkit.bench {n} ===", flush=True)
        importlib.import_module(f"regkit.bench.{n}").main(rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
