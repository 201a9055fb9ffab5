"""How long a training run takes on this machine's CPU, from runs measured here.

The stand-ins in the shared models folder were trained on 2 CPU cores: the
cross-encoder at 0.204 s per (question, passage) pair (19,953 pairs, 4,066 s,
22.7M parameters, max_length 256) and the reader at 0.13 s per 256-token
window (3 epochs of 5,696 questions, 2,224 s). ``qa-search train reader``
itself is slower than the script that made the stand-in: 0.21 s per window
alone on the 2 cores (the first steps of a 610-step run, 2026-12-04) and
0.26 s in a whole fold run (1,175 s for 4,546 windows), so the reader's
estimate uses 0.22 s. A run scales with the number of examples, the model
size and the sequence length, and inversely with the CPU threads.
"""

from __future__ import annotations

SECONDS_PER_PAIR = 0.204
SECONDS_PER_WINDOW = 0.22
REFERENCE = {"parameters": 22.7e6, "length": 256, "threads": 2}


def cpu_seconds(examples: int, *, parameters: int, length: int, threads: int, per_example: float) -> float:
    scale = (parameters / REFERENCE["parameters"]) * (length / REFERENCE["length"]) * (REFERENCE["threads"] / max(threads, 1))
    return examples * per_example * scale


def describe(seconds: float) -> str:
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
