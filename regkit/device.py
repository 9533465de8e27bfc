"""Device choice shared by the loader and the training loop."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def default_device() -> torch.device:
    """The fastest device present: ``cuda``, then ``mps``, then ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` -> :func:`default_device`; otherwise a device that exists here (else ValueError)."""
    if device is None or device == "auto":
        return default_device()
    choices = "None/'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device; use one of {choices}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not supported; use one of {choices}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use None/'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available here; use None/'auto' or 'cpu'")
    return dev


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA, MPS); a no-op on the CPU. For timing, never inside a step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def processor_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name: Linux's ``/proc/cpuinfo`` "model name" (``platform.processor()`` is empty on
    Linux), else ``platform.processor()``, else the architecture (``platform.machine()``)."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
