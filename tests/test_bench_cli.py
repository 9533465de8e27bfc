import subprocess
import sys


def run_bench(*args):
    return subprocess.run([sys.executable, "-m", "regkit.bench", *args], capture_output=True, text=True)


def test_unknown_benchmark_lists_choices():
    out = run_bench("no_such_bench")
    assert out.returncode == 2
    assert "unknown benchmark 'no_such_bench'" in out.stderr and "all" in out.stderr


def test_help_exits_zero():
    out = run_bench("--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m regkit.bench")
