"""Fine-tune an extractive QA reader (SQuAD-style), with a no-answer head when the data has unanswerable questions.

Training goes through transformers' ``Trainer`` with the standard SQuAD
preprocessing: the question first, the paragraph in windows of ``max_length``
tokens that share ``stride`` tokens, the answer's character span mapped to
token positions through the fast tokenizer's offsets. A window that does not
hold the whole answer, and every window of an unanswerable (SQuAD v2.0)
question, is labelled with the CLS position: the null answer. When the data
has unanswerable questions the saved config says ``allow_no_answer: true``,
so :class:`pipeline.read.reader.Reader` abstains with it.

Held-out figures are SQuAD v2.0-style: HasAns EM/F1 (answerable questions,
official normalisation), NoAns accuracy (the reader says no answer) and their
mean weighted by the counts, read on each question's own paragraph.

Example::

    >>> from pipeline.train.reader import ReaderSettings, train_reader             # doctest: +SKIP
    >>> card = train_reader(["dev-v1.1.json", "dev-v2.0-tune.json"], "models/noans-reader",
    ...                     ReaderSettings(epochs=1), eval_split=0.2)              # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from pipeline.config import DEFAULT_BI_ENCODER
from pipeline.errors import ConfigError, CorpusError
from pipeline.eval.questions import seeded_sample
from pipeline.models.device import pick_device
from pipeline.models.resolve import resolve_model
from pipeline.train import estimate
from pipeline.train.card import CARD_FILE, read_card, write_card
from pipeline.train.deps import require_training_libraries
from pipeline.train.output import install_model, prepare_output, training_arguments
from pipeline.train.splits import group_folds, split_questions

logger = logging.getLogger(__name__)

Notify = Callable[[str], None]


@dataclass(frozen=True)
class ReaderExample:
    """A question on its paragraph with its first gold answer (``None`` for an unanswerable one)."""

    id: str
    text: str
    group: str
    article: int | None
    context: str
    answer_text: str | None = None
    answer_start: int | None = None
    answers: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.answer_text is not None


@dataclass(frozen=True)
class ReaderSettings:
    """How the reader is trained (defaults close to the shared stand-in reader's)."""

    base: str = DEFAULT_BI_ENCODER
    epochs: float = 2.0
    learning_rate: float = 1e-4
    batch_size: int = 16
    max_length: int = 256
    stride: int = 96
    max_answer_tokens: int = 30
    warmup: float = 0.1
    seed: int = 0
    max_questions: int | None = None
    max_steps: int = -1
    save_steps: int = 200
    logging_steps: int = 10
    eval_sample: int | None = 300
    device: str | None = None


def load_reader_examples(paths: Sequence[str | Path]) -> list[ReaderExample]:
    """The questions of one or more SQuAD v1.1/v2.0 files; a question id seen before is skipped.

    Article numbers are those of the first file; an article of a later file
    takes the number of the first file's article with the same title.
    """
    examples: list[ReaderExample] = []
    seen: set[str] = set()
    numbers: dict[str, int] = {}
    for f, path in enumerate(paths):
        path = Path(path).expanduser()
        if not path.is_file():
            raise CorpusError("no such questions file", path=str(path))
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise CorpusError("the questions file is empty: nothing to train on", path=str(path))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"not a SQuAD JSON file ({exc.msg})", path=str(path)) from exc
        documents = data.get("data") if isinstance(data, dict) else None
        if not isinstance(documents, list):
            raise CorpusError('not SQuAD format: expected an object with a "data" list', path=str(path))
        for a, article in enumerate(documents):
            try:
                title = str(article["title"])
                if f == 0:
                    numbers.setdefault(title, a)
                for paragraph in article["paragraphs"]:
                    context = paragraph["context"]
                    for qa in paragraph["qas"]:
                        qid = str(qa["id"])
                        if qid in seen:
                            continue
                        seen.add(qid)
                        answers = [ans for ans in qa.get("answers", []) if ans.get("text")]
                        impossible = bool(qa.get("is_impossible", False)) or not answers
                        first = None if impossible else answers[0]
                        start = None
                        if first is not None:
                            start = int(first["answer_start"])
                            if context[start : start + len(first["text"])] != first["text"]:
                                found = context.find(first["text"])
                                if found < 0:
                                    raise CorpusError(f"answer {first['text']!r} of question {qid} is not in its paragraph",
                                                      path=str(path))
                                start = found
                        examples.append(ReaderExample(
                            qid, qa["question"].strip(), title, numbers.get(title), context,
                            None if first is None else first["text"], start,
                            tuple(ans["text"] for ans in answers),
                        ))
            except (KeyError, TypeError) as exc:
                raise CorpusError(f"article {a} is not SQuAD format (missing {exc})", path=str(path)) from exc
    if not examples:
        raise CorpusError("the questions file holds no questions: nothing to train on", path=str(paths[0]))
    return examples


def featurize(tokenizer, examples: Sequence[ReaderExample], *, max_length: int, stride: int) -> dict[str, list]:
    """Model inputs and start/end labels of every window of every example (the CLS index for no answer)."""
    enc = tokenizer(
        [e.text for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    samples = enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, window in enumerate(offsets):
        example = examples[samples[i]]
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        sequence = enc.sequence_ids(i)
        first = sequence.index(1)
        last = len(sequence) - 1 - sequence[::-1].index(1)
        if not example.answerable:
            starts.append(cls), ends.append(cls)
            continue
        char_start = example.answer_start
        char_end = char_start + len(example.answer_text)
        if window[first][0] > char_start or window[last][1] < char_end:
            starts.append(cls), ends.append(cls)  # the answer is not (wholly) in this window
            continue
        s = first
        while s <= last and window[s][0] <= char_start:
            s += 1
        e = last
        while e >= first and window[e][1] >= char_end:
            e -= 1
        starts.append(s - 1), ends.append(e + 1)
    out = {k: list(v) for k, v in enc.items()}
    out.update(start_positions=starts, end_positions=ends)
    return out


def heldout_figures(model_path: str, examples: Sequence[ReaderExample], settings: ReaderSettings, *,
                    allow_no_answer: bool, device: str) -> dict:
    """HasAns EM/F1, NoAns accuracy and overall F1 (percent) of the reader on each question's own paragraph."""
    from pipeline.eval.squad_metrics import squad_scores
    from pipeline.read.reader import Reader

    reader = Reader.load(model_path, device=device, max_length=max(settings.max_length, 64), stride=settings.stride,
                         max_answer_tokens=settings.max_answer_tokens, allow_no_answer=allow_no_answer)
    answers = []
    for i in range(0, len(examples), 64):
        part = examples[i : i + 64]
        answers.extend(reader.read_pairs([(e.text, e.context) for e in part]))
    has = [(e, a) for e, a in zip(examples, answers) if e.answerable]
    no = [(e, a) for e, a in zip(examples, answers) if not e.answerable]
    figures: dict = {"questions": len(examples), "no_answer_decoding": allow_no_answer}
    if has:
        scores = squad_scores([a.text if a else None for _, a in has], [e.answers for e, _ in has])
        figures["HasAns"] = {"exact": scores.exact_match, "f1": scores.f1, "total": len(has), "answered": scores.answered}
    if no:
        right = sum(1 for _, a in no if a is None)
        figures["NoAns"] = {"exact": round(100.0 * right / len(no), 2), "f1": round(100.0 * right / len(no), 2), "total": len(no)}
    if has and no:
        n = len(has) + len(no)
        figures["overall"] = {k: round((figures["HasAns"][k] * len(has) + figures["NoAns"][k] * len(no)) / n, 2)
                              for k in ("exact", "f1")}
    return figures


def _fit(train: Sequence[ReaderExample], out: Path, settings: ReaderSettings, *, run: dict, restart: bool,
         keep_checkpoints: bool, progress: bool, notify: Notify, label: str = "") -> dict:
    """Train one reader into ``out``; what the card records about the training."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from pipeline.train.progress import use_loss_bar

    resume = prepare_output(out, run, restart=restart)
    device = pick_device(settings.device)
    resolved = resolve_model(settings.base, role="reader")
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"The base model {settings.base} has no fast tokenizer; the SQuAD preprocessing needs its offsets.")
    features = featurize(tokenizer, train, max_length=settings.max_length, stride=settings.stride)
    torch.manual_seed(settings.seed)  # the fresh span head
    model = AutoModelForQuestionAnswering.from_pretrained(resolved.path, local_files_only=True)
    no_answer = any(not e.answerable for e in train)
    model.config.version_2_with_negative = no_answer
    model.config.allow_no_answer = no_answer
    windows = len(features["input_ids"])
    steps = settings.max_steps if settings.max_steps > 0 else round(-(-windows // settings.batch_size) * settings.epochs)
    message = (f"{label}Training a reader from {settings.base} on {len(train)} questions "
               f"({sum(not e.answerable for e in train)} unanswerable), {windows} windows: {steps} steps of "
               f"{settings.batch_size} on {device}")
    if device == "cpu":
        seconds = estimate.cpu_seconds(min(windows * settings.epochs, steps * settings.batch_size),
                                       parameters=sum(p.numel() for p in model.parameters()),
                                       length=settings.max_length, threads=torch.get_num_threads(),
                                       per_example=estimate.SECONDS_PER_WINDOW)
        message += f", {estimate.describe(seconds)} on this CPU ({torch.get_num_threads()} threads, if nothing else runs)"
    notify(message + (f"; resuming from {resume}" if resume else "") + ".")
    args = TrainingArguments(
        **training_arguments(settings, out, progress=progress, device=device),
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(features),
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    use_loss_bar(trainer, progress)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)

    def save(folder: str) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    install_model(out, save, keep_checkpoints=keep_checkpoints)
    return {
        "steps": result.global_step,
        "final_loss": result.training_loss,
        "resumed_from": resume,
        "windows": windows,
        "no_answer_head": no_answer,
        "train_seconds": round(time.time() - started, 1),
        "base_path": resolved.path,
        "base_source": resolved.source,
        "device": device,
    }


def train_reader(
    questions_paths: Sequence[str | Path] | str | Path,
    out: str | Path,
    settings: ReaderSettings = ReaderSettings(),
    *,
    train_articles: str | None = None,
    eval_articles: str | None = None,
    eval_split: float | None = None,
    folds: int | None = None,
    restart: bool = False,
    keep_checkpoints: bool = False,
    progress: bool = True,
    notify: Notify = logger.info,
) -> dict:
    """Train a reader into ``out`` (resuming from its last checkpoint); with ``folds``, also K grouped-fold figures."""
    require_training_libraries()
    started = time.time()
    paths = [questions_paths] if isinstance(questions_paths, (str, Path)) else list(questions_paths)
    out = Path(out).expanduser()
    examples = load_reader_examples(paths)
    split = split_questions(examples, train_articles=train_articles, eval_articles=eval_articles,
                            eval_split=eval_split, seed=settings.seed)
    train = seeded_sample(split.train, settings.max_questions, settings.seed)
    held = seeded_sample(split.eval, settings.eval_sample, settings.seed)
    device = pick_device(settings.device)
    base_run = {"kind": "reader", "questions": [str(Path(p).resolve()) for p in paths], "split": split.describe(),
                "settings": asdict(settings)}

    fold_figures = []
    if folds:
        for k, (fold_train, fold_held) in enumerate(group_folds(train, folds)):
            fold_out = out / "folds" / f"fold-{k}"
            if (fold_out / CARD_FILE).is_file() and not restart:
                fold_figures.append(read_card(fold_out)["heldout"]["after"])
                notify(f"Fold {k + 1}/{folds}: done before, figures read from {fold_out / CARD_FILE}.")
                continue
            info = _fit(fold_train, fold_out, settings, run=base_run | {"fold": k, "folds": folds}, restart=restart,
                        keep_checkpoints=False, progress=progress, notify=notify, label=f"Fold {k + 1}/{folds}: ")
            figures = heldout_figures(str(fold_out), seeded_sample(fold_held, settings.eval_sample, settings.seed), settings,
                                      allow_no_answer=info["no_answer_head"], device=device)
            figures["articles"] = sorted({e.group for e in fold_held})
            write_card(fold_out, {"kind": "reader-fold", "fold": k, "training": info, "heldout": {"after": figures}})
            for entry in fold_out.iterdir():  # keep the figures, not the fold's weights
                if entry.name != CARD_FILE:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            fold_figures.append(figures)
            notify(f"Fold {k + 1}/{folds}: {json.dumps({k2: v for k2, v in figures.items() if k2 != 'articles'})}")

    figures: dict = {}
    if held:
        resolved = resolve_model(settings.base, role="reader")
        try:
            figures["before"] = heldout_figures(resolved.path, held, settings, allow_no_answer=False, device=device)
        except ConfigError as exc:  # a base that is not a QA model cannot be read before training
            figures["before"] = {"skipped": str(exc)}
    info = _fit(train, out, settings, run=base_run, restart=restart, keep_checkpoints=keep_checkpoints,
                progress=progress, notify=notify)
    if held:
        figures["after"] = heldout_figures(str(out), held, settings, allow_no_answer=info["no_answer_head"], device=device)
    card = {
        "kind": "reader",
        "model": str(out),
        "base": {"name": settings.base, "path": info.pop("base_path"), "source": info.pop("base_source")},
        "data": {
            "questions_files": [str(p) for p in paths],
            "questions": len(examples),
            "training_questions": len(train),
            "training_unanswerable": sum(not e.answerable for e in train),
        },
        "split": split.describe(),
        "settings": asdict(settings) | {"device": info.pop("device")},
        "training": info | {"total_seconds": round(time.time() - started, 1)},
        "heldout": figures or None,
        "heldout_note": "the reader on each held-out question's own paragraph (HasAns EM/F1, NoAns accuracy); never "
        "trained on" if figures else "no evaluation split was asked for",
        "folds": {"k": folds, "grouped_by": "article", "per_fold": fold_figures} if folds else None,
    }
    write_card(out, card)
    return card
