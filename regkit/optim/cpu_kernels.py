"""regkit's own CPU kernels for ``fused=True``: one pass over the weights where torch's ops need several.

torch's fused Adam kernel cannot absorb what AdamCPR, AdamAWD, AdamAdaDecay, AdamP and SGDP add to the step, and on a
CPU each extra foreach op is a full pass through memory (a norm of ResNet-18's weights costs a third of
the whole fused Adam step). `cpu_kernels.cpp` has these kernels, for float32 and float64 CPU tensors:

- ``adam_step``: torch's fused Adam arithmetic with a decay factor per tensor (AdamW's ``1 - lr wd``, AWD's
  ``1 - lr lambda_bar``) or per coordinate (AdaDecay's ``1 - 2 lr wd sigmoid(alpha z)``), which also sums
  the new weights (``w``, ``w^2``, ``|w|``, ``huber(w)``): every CPR measure, without reading ``w`` again;
- ``sums``: the same sums of each tensor in one read (AdaDecay's gradient statistics), and ``squares`` of two
  lists read side by side (AWD's ``||w||`` and ``||g||``);
- ``descend``: CPR's constraint step, one pass per tensor;
- ``projection_step``: AdamP's and SGDP's two passes: the state update with the row statistics of the
  scale-invariance test, then the step with one decay-and-projection factor per row.

They are compiled on first use with ``torch.utils.cpp_extension`` (a C++ compiler and ``ninja``; about
30 s once, then cached under ``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). Where that
fails, a warning says so once; then, and with ``REGKIT_CPU_KERNELS=0``, ``fused=True`` takes torch's fused
kernel with the additions on the foreach path instead (AdamP, SGDP: the foreach path; same results, slower). Results match the
foreach path within `regkit.optim.fused.FUSED_TOLERANCE`; sums are taken in blocks in the tensor's
dtype and added in float64.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from regkit.device import processor_name
from regkit.optim._functional import adam_bias_corrections

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
KERNEL_DTYPES = (torch.float32, torch.float64)
# -march=native: the fastest code for this CPU (it also picks 256-bit vectors where 512-bit ones run slower, as
# AdaDecay's exp does on AVX-512 machines: 3x); the build's name carries a digest of the CPU, so a build cached
# in a shared home folder is never loaded on another CPU
ARCH_FLAGS = {"x86_64": ["-march=native"], "AMD64": ["-march=native"]}
CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
COLUMNS = {"sum": 0, "squares": 1, "absolute": 2, "huber": 3, "shifted_sum": 4, "shifted_squares": 5}
"""The columns of a row of sums: ``sum w``, ``sum w^2``, ``sum |w|``, ``sum huber(w)`` (delta 1), ``sum (y - c)``,
``sum (y - c)^2`` with ``y = w`` (``|w|`` for ``magnitudes``) and ``c`` the first ``y`` of the tensor (before the
step): ``sum (w - mean)^2 = sum (y - c)^2 - (sum (y - c))^2 / n`` stays accurate for near-constant tensors."""
build_seconds: float | None = None  # how long this process took to build (or load) the kernels


def disabled() -> bool:
    """True when ``REGKIT_CPU_KERNELS=0`` asks for torch's kernels and the foreach path instead."""
    return os.environ.get("REGKIT_CPU_KERNELS", "1") == "0"


def _cpu_digest() -> str:
    """A short digest of this CPU (model name, feature flags) and of torch's version: the build's name."""
    flags = ""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        pass
    identity = f"{processor_name()}|{platform.machine()}|{flags}|{torch.__version__}"
    return hashlib.sha1(identity.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _pypi_ninja_first() -> Iterator[None]:
    """PATH with the PyPI ``ninja`` (requirements.txt) first while torch builds: torch runs ``ninja`` from PATH, and
    two ninja versions (the system's, the virtual environment's) would take turns rebuilding the cached build,
    ~30 s at each switch, as each rewrites the other's log. PATH is restored afterwards."""
    path = os.environ.get("PATH", "")
    try:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path
    except ImportError:
        pass
    try:
        yield
    finally:
        os.environ["PATH"] = path


@functools.cache
def load():
    """The compiled kernels (built on the first call of the process, ~30 s once per machine), or None with a warning."""
    global build_seconds
    from torch.utils import cpp_extension

    start = time.perf_counter()
    print("regkit: loading the CPU kernels of fused=True (the first time on a machine builds them: ~30 s)",
          file=sys.stderr)
    try:
        with _pypi_ninja_first():
            module = cpp_extension.load(
                name=f"regkit_cpu_kernels_{_cpu_digest()}", sources=[str(SOURCE)],
                extra_cflags=CFLAGS + ARCH_FLAGS.get(platform.machine(), []), verbose=False,
            )  # fmt: skip
    except Exception as error:  # noqa: BLE001 -- no compiler, no ninja, a failed build: each its own exception type
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"regkit could not build its CPU kernels ({reason}); fused=True now takes torch's fused kernel and "
            "the method's additions on the foreach path (same results, slower). Install a C++ compiler (e.g. "
            "apt-get install g++) and ninja (pip install ninja), or set REGKIT_CPU_KERNELS=0 to silence this",
            RuntimeWarning, stacklevel=2,
        )  # fmt: skip
        return None
    build_seconds = time.perf_counter() - start
    return module


def usable(*lists: list[Tensor]) -> bool:
    """True when the kernels can step these tensors: all on the CPU, contiguous, one dtype (float32 or float64),
    and the kernels are enabled and built (this may build them)."""
    tensors = [t for ts in lists for t in ts]
    if not tensors or disabled():
        return False
    dtype = tensors[0].dtype
    if dtype not in KERNEL_DTYPES or not all(t.is_cpu and t.dtype is dtype and t.is_contiguous() for t in tensors):
        return False
    return load() is not None


def adam_step_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    maximize: bool,
    keeps: list[float] | None = None,
    rates: list[float] | None = None,
    slopes: list[float] | None = None,
    offsets: list[float] | None = None,
    stats: bool = False,
) -> list[list[float]] | None:
    """Adam in place (torch's arithmetic, no amsgrad): ``w <- k w - lr / bc1 * m / (sqrt(v) / bc2 + eps)``.

    ``k = keeps[i]`` (default 1), or per coordinate ``keeps[i] - rates[i] * sigmoid(slopes[i] |g| + offsets[i])``
    where ``rates[i] != 0``. ``steps``: host step counts, this step included. ``stats``: return one row of
    sums (`COLUMNS`) of each tensor's new weights.
    """
    n = len(params)
    bias_correction1, bias_correction2_sqrt = adam_bias_corrections(steps, beta1, beta2)
    zeros = [0.0] * n
    rows = load().adam_step(
        params, grads, exp_avgs, exp_avg_sqs, [lr / bc for bc in bias_correction1], bias_correction2_sqrt,
        beta1, beta2, eps, keeps or [1.0] * n, rates or zeros, slopes or zeros, offsets or zeros, maximize, stats,
    )  # fmt: skip
    torch.autograd.graph.increment_version([*params, *exp_avgs, *exp_avg_sqs])  # as an in-place torch op would
    return rows.tolist() if stats else None


def sums(tensors: list[Tensor], *, magnitudes: bool = False) -> list[list[float]]:
    """One row of sums (`COLUMNS`) per tensor, in one read of each; ``magnitudes``: only ``sum |w|`` and the
    shifted sums of ``|w|`` (the other columns 0)."""
    return load().sums(tensors, magnitudes).tolist()


def squares(xs: list[Tensor], ys: list[Tensor]) -> list[list[float]]:
    """``[sum x^2, sum y^2]`` of each pair of tensors of one size, read side by side."""
    return load().squares(xs, ys).tolist()


def spread(row: list[float], n: int) -> tuple[float, float]:
    """``(mean of y, sum (y - mean)^2)`` of a tensor of ``n`` values from its row of sums (y as in `COLUMNS`;
    the mean of ``|w|`` is ``row[COLUMNS["absolute"]] / n`` when the row was summed with ``magnitudes``)."""
    shifted = row[COLUMNS["shifted_sum"]]
    return row[COLUMNS["sum"]] / n, max(row[COLUMNS["shifted_squares"]] - shifted * shifted / n, 0.0)


def descend_(params: list[Tensor], mode: int, a: list[float], b: list[float]) -> None:
    """CPR's constraint step in place, per tensor: mode 0 ``w *= a``, 1 ``w -= clamp(w, -a, a)``, 2 ``w = a w + b``,
    3 ``w -= a clamp(w, -1, 1)`` (see `regkit.optim.measures.descend_by_kernel_`)."""
    load().descend(params, mode, a, b)
    torch.autograd.graph.increment_version(params)


def projection_statistics_(
    params: list[Tensor], grads: list[Tensor], states: list[Tensor], exp_avg_sqs: list[Tensor], steps: list[float],
    *, beta1: float = 0.0, beta2: float = 0.0, eps: float = 0.0, momentum: float = 0.0, dampening: float = 0.0,
    nesterov: bool,
) -> list[Tensor]:
    """AdamP/SGDP's first pass: the state update (Adam's ``m``, ``v`` when ``exp_avg_sqs`` is given, else SGDP's
    momentum buffer in ``states``), and per tensor a ``(4, rows)`` float64 table of ``<g_i, w_i>``,
    ``||g_i||^2``, ``||w_i||^2``, ``<w_i, u_i>`` over the rows along dim 0 (one row for a 0-d/1-d tensor)."""
    bc2_sqrt = adam_bias_corrections(steps, beta1, beta2)[1] if exp_avg_sqs else [1.0] * len(params)
    tables = load().projection_step(params, grads, states, exp_avg_sqs, [0.0] * len(params), bc2_sqrt, beta1, beta2,
                                    eps, momentum, dampening, nesterov, [])  # fmt: skip
    torch.autograd.graph.increment_version([*states, *exp_avg_sqs])
    return tables


def projected_step_(
    params: list[Tensor], grads: list[Tensor], states: list[Tensor], exp_avg_sqs: list[Tensor], steps: list[float],
    factors: list[Tensor], *, lr: float, beta1: float = 0.0, beta2: float = 0.0, eps: float = 0.0,
    momentum: float = 0.0, nesterov: bool,
) -> None:
    """AdamP/SGDP's second pass: ``w <- factor_i w - s u`` per row, ``u`` from the state of the first pass (Adam:
    ``s = lr / (1 - beta1^t)``; SGDP: ``s = lr``); ``factors``: one float64 tensor of row factors per tensor."""
    if exp_avg_sqs:
        bias_correction1, bc2_sqrt = adam_bias_corrections(steps, beta1, beta2)
        step_sizes = [lr / bc for bc in bias_correction1]
    else:
        step_sizes, bc2_sqrt = [lr] * len(params), [1.0] * len(params)
    load().projection_step(params, grads, states, exp_avg_sqs, step_sizes, bc2_sqrt, beta1, beta2, eps, momentum,
                           0.0, nesterov, factors)  # fmt: skip
    torch.autograd.graph.increment_version(params)
