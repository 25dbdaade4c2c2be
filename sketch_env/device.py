"""The one device resolver of the package.

Every ``device`` argument (embedding training, feature caching, the policy of an RL method, the fast
trainer, the batched env's ``compute="torch"``) goes through :func:`resolve_device`, so ``"auto"`` means
one thing everywhere: **a CUDA GPU when torch sees one, else the CPU**. Where the CPU is the better default
whatever the machine (SB3's policy of one linear layer: kernel launches and transfers cost more than the
product), the option's default is ``"cpu"``, not ``"auto"``.
"""

from __future__ import annotations

import platform
from typing import Any

from sketch_env.errors import ArgumentError

__all__ = ["resolve_device", "machine_name"]


def resolve_device(device: Any = "auto"):
    """``torch.device`` of ``device``: ``"auto"`` is CUDA when available, else CPU; ``"cuda"`` without a GPU
    is a clear error."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ArgumentError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(dev)!r} asked for, but torch sees no CUDA device")
    return dev


def machine_name() -> str:
    """The processor's model and architecture, e.g. ``"AMD EPYC (x86_64)"``: from ``/proc/cpuinfo``'s ``model
    name`` on Linux, else ``platform.processor()``. Run summaries and benchmark reports name it: a training
    run repeats bit for bit on one machine, not always on another, whose math kernels may round differently."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f.read(1 << 20).splitlines():  # bounded: the first MiB has every core's model name
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = " ".join(value.split())
                    break
    except OSError:
        pass
    model = model or platform.processor()
    return f"{model} ({platform.machine()})" if model and model != platform.machine() else platform.machine()
