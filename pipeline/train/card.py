"""``training_card.json``: what a trained model was trained on, how, how long, and its held-out figures."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from pipeline.files import write_json

CARD_FILE = "training_card.json"


def environment() -> dict[str, Any]:
    import sentence_transformers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "cuda": torch.cuda.is_available(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def write_card(directory: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` as ``directory/training_card.json`` (temporary file, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card = {"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **card, "environment": environment()}
    return write_json(directory / CARD_FILE, card)


def read_card(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / CARD_FILE).read_text(encoding="utf-8"))
