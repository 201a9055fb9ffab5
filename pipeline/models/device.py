"""Where models run: the device and the number of CPU threads."""

from __future__ import annotations

import os
from pathlib import Path


def pick_device(device: str | None) -> str:
    """``device`` as given, or ``cuda`` when a GPU is there, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_threads() -> int:
    """Physical cores this process may run on (logical CPUs divided by SMT siblings)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read_text().strip()
        per_core = sum(len(range(int(a), int(b) + 1)) if "-" in part else 1
                       for part in siblings.split(",") for a, _, b in [part.partition("-")])
    except (OSError, ValueError):
        per_core = 1
    return max(1, logical // max(per_core, 1))
