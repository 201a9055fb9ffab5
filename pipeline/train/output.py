"""The output folder of a training run: checkpoints to resume from, then the finished model.

Layout: ``OUT/checkpoints/checkpoint-N`` while training (with ``run.json``,
the settings the checkpoints belong to); at the end the model's files are
written to ``OUT/.final-tmp`` and moved into ``OUT``, then
``training_card.json`` is written last, so a folder with a card is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import ConfigError
from pipeline.train.card import CARD_FILE

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"

#: Settings that change only the figures, not the training: a run may resume with other values.
EVALUATION_ONLY = ("eval_sample", "eval_candidates")


def training_run(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` without the evaluation-only settings, as JSON types (what checkpoints must agree on)."""
    out = json.loads(json.dumps(run, default=str))
    settings = out.get("settings")
    if isinstance(settings, dict):
        out["settings"] = {k: v for k, v in settings.items() if k not in EVALUATION_ONLY}
    return out


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def training_arguments(settings, out: Path, *, progress: bool, device: str) -> dict:
    """The Trainer arguments the reranker and the reader share: schedule, seed, checkpoints every
    ``save_steps`` (the last two kept, so a killed run resumes), logging, no reporting services."""
    return dict(
        output_dir=str(checkpoint_dir(out)),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup,
        seed=settings.seed,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=settings.logging_steps,
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=device == "cpu",
    )


def last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = checkpoint_dir(out)
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def prepare_output(out: Path, run: dict[str, Any], *, restart: bool = False) -> str | None:
    """Make ``out`` ready for the run described by ``run``; the checkpoint to resume from, if any.

    A folder holding checkpoints of the same run resumes; one holding checkpoints
    of other settings, or a finished model, is refused unless ``restart``.
    """
    out = Path(out)
    folder = checkpoint_dir(out)
    if restart and folder.exists():
        shutil.rmtree(folder)
    if (out / CARD_FILE).is_file() and not restart:
        raise ConfigError(f"{out} already holds a trained model; pass --restart to train it again or choose another --out.")
    run_file = folder / RUN_FILE
    stored = training_run(json.loads(run_file.read_text(encoding="utf-8"))) if run_file.is_file() else None
    resume = last_checkpoint(out)
    run = training_run(run)
    if stored is not None and stored != run:
        changed = sorted(k for k in set(stored) | set(run) if stored.get(k) != run.get(k))
        raise ConfigError(
            f"{folder} holds checkpoints of a run with other settings ({', '.join(changed)}); "
            "pass --restart to start over or choose another --out."
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = run_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(run, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, run_file)
    return resume


def install_model(out: Path, save: Callable[[str], None], *, keep_checkpoints: bool = False) -> None:
    """``save(folder)`` the finished model to a temporary folder, move its files into ``out``, drop checkpoints."""
    out = Path(out)
    tmp = out / ".final-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save(str(tmp))
    for entry in tmp.iterdir():
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()
    if not keep_checkpoints and checkpoint_dir(out).exists():
        shutil.rmtree(checkpoint_dir(out))
