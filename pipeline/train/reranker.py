"""Fine-tune a cross-encoder reranker on questions and hard negatives mined from an index.

Training goes through sentence-transformers' ``CrossEncoderTrainer`` with
binary cross-entropy: each question's gold paragraph is a positive, the best
non-gold paragraphs by BM25 and by the index's bi-encoder are negatives, and
so are the paragraphs unanswerable (SQuAD v2.0) questions were written on.
The saved model has one logit and a sigmoid activation, so it scores 0..1
when loaded (``Reranker.load(OUT)``, ``--reranker OUT``).

Example::

    >>> from pipeline.train.reranker import RerankerSettings, train_reranker        # doctest: +SKIP
    >>> card = train_reranker("indexes/squad-dev", "dev-v1.1.json", "models/my-reranker",
    ...                       RerankerSettings(), eval_articles="20-23")            # doctest: +SKIP
    >>> card["heldout"]["after"]["reranked"]["mrr@10"]                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from pipeline.config import DEFAULT_BI_ENCODER, SearchSettings
from pipeline.eval.evaluation import retrieval_metrics
from pipeline.eval.questions import seeded_sample
from pipeline.index import SearchIndex
from pipeline.models.device import pick_device
from pipeline.models.encoder import BiEncoder
from pipeline.models.resolve import resolve_model
from pipeline.retrieve import Retriever
from pipeline.train import estimate
from pipeline.train.card import write_card
from pipeline.train.data import (
    TrainQuestion,
    load_training_questions,
    mine_negatives,
    training_pairs,
)
from pipeline.train.deps import require_training_libraries
from pipeline.train.output import install_model, prepare_output, training_arguments
from pipeline.train.splits import Split, split_questions

logger = logging.getLogger(__name__)

DEFAULT_BASE = DEFAULT_BI_ENCODER  # sentence-transformers/all-MiniLM-L6-v2, shipped on PyPI
METRICS = ("mrr@10", "recall@1", "recall@5")

#: The baseline order the card reports against: hybrid retrieval fused by RRF.
HYBRID_RRF = SearchSettings(mode="hybrid", fusion="rrf")


@dataclass(frozen=True)
class RerankerSettings:
    """How the reranker is trained (defaults: those of the shared stand-in reranker)."""

    base: str = DEFAULT_BASE
    bm25_negatives: int = 1
    dense_negatives: int = 1
    epochs: float = 1.0
    learning_rate: float = 6e-5
    batch_size: int = 16
    max_length: int = 256
    warmup: float = 0.1
    seed: int = 0
    max_questions: int | None = None  # train on a seeded sample of the training questions
    max_steps: int = -1  # stop after this many steps (tests, smoke runs); -1 = the epochs
    save_steps: int = 200
    logging_steps: int = 10
    eval_candidates: int = 20
    eval_sample: int | None = 300
    device: str | None = None


Notify = Callable[[str], None]


def rankings(
    index: SearchIndex,
    encoder: BiEncoder,
    questions: Sequence[TrainQuestion],
    scorers: dict[str, Callable[[str, list[str]], Sequence[float]]],
    *,
    candidates: int = 20,
    progress: bool = False,
    desc: str = "Held-out",
) -> tuple[dict[str, str], dict[str, dict[str, list[str]]]]:
    """Each answerable question's gold paragraph, and its hybrid (RRF) top ``candidates`` paragraph ids as
    retrieved (``"hybrid"``) and as ordered by each of ``scorers`` (by name)."""
    from tqdm.auto import tqdm

    answerable = [q for q in questions if q.answerable]
    sources = {p.id: p.source_id for p in index.passages}
    golds = {q.id: sources.get(q.positives[0], q.positives[0]) for q in answerable}
    retriever = Retriever(index, encoder)
    out: dict[str, dict[str, list[str]]] = {"hybrid": {}, **{name: {} for name in scorers}}
    for q in tqdm(answerable, desc=desc, unit="question", disable=not progress):
        cands = retriever.retrieve(q.text, candidates, HYBRID_RRF).candidates
        passages = [index.passages[c.position] for c in cands]
        out["hybrid"][q.id] = list(dict.fromkeys(p.source_id for p in passages))
        for name, score in scorers.items():
            scores = list(score(q.text, [p.text for p in passages]))
            order = sorted(range(len(passages)), key=lambda i: -float(scores[i]))
            out[name][q.id] = list(dict.fromkeys(passages[i].source_id for i in order))
    return golds, out


def reciprocal_ranks(golds: dict[str, str], ranking: dict[str, list[str]], k: int = 10) -> dict[str, float]:
    """Each question's reciprocal rank of its gold paragraph in the top ``k`` (0 when not there)."""
    out = {}
    for q, gold in golds.items():
        top = ranking.get(q, [])[:k]
        out[q] = 1.0 / (top.index(gold) + 1) if gold in top else 0.0
    return out


def standard_error(values: Sequence[float]) -> float:
    import numpy as np

    values = np.asarray(list(values), dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def figures_of(golds: dict[str, str], ranking: dict[str, list[str]]) -> dict[str, float]:
    """MRR@10, Recall@1, Recall@5 (ranx) and the standard error of MRR@10 over the questions."""
    figures = retrieval_metrics(golds, ranking, METRICS)
    figures["mrr@10_se"] = standard_error(list(reciprocal_ranks(golds, ranking).values()))
    return figures


def heldout_figures(
    index: SearchIndex,
    encoder: BiEncoder,
    questions: Sequence[TrainQuestion],
    score: Callable[[str, list[str]], Sequence[float]],
    *,
    candidates: int = 20,
    progress: bool = False,
    desc: str = "Held-out",
) -> dict:
    """MRR@10 / Recall@1 / Recall@5 of the hybrid (RRF) top ``candidates`` as retrieved and as reranked by ``score``."""
    golds, ranked = rankings(index, encoder, questions, {"reranked": score}, candidates=candidates,
                             progress=progress, desc=desc)
    return {
        "questions": len(golds),
        "candidates": candidates,
        "hybrid": figures_of(golds, ranked["hybrid"]),
        "reranked": figures_of(golds, ranked["reranked"]),
    }


def _cross_encoder(base: str, settings: RerankerSettings, device: str):
    import torch
    from sentence_transformers import CrossEncoder

    resolved = resolve_model(base, role="reranker")
    torch.manual_seed(settings.seed)  # the fresh one-logit head
    return CrossEncoder(
        resolved.path,
        num_labels=1,
        max_length=settings.max_length,
        activation_fn=torch.nn.Sigmoid(),
        device=device,
        local_files_only=True,
    ), resolved


def _has_trained_head(path: str) -> bool:
    """Whether the base model already is a sequence classifier (a cross-encoder), so its scores mean something."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train_reranker(
    index_path: str | Path,
    questions_path: str | Path,
    out: str | Path,
    settings: RerankerSettings = RerankerSettings(),
    *,
    train_articles: str | None = None,
    eval_articles: str | None = None,
    eval_split: float | None = None,
    restart: bool = False,
    keep_checkpoints: bool = False,
    progress: bool = True,
    notify: Notify = logger.info,
) -> dict:
    """Train a reranker into ``out`` (resuming from its last checkpoint when there is one); the training card."""
    require_training_libraries()
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    started = time.time()
    out = Path(out).expanduser()
    index = SearchIndex.load(index_path)
    questions = load_training_questions(questions_path, index)
    split: Split = split_questions(questions, train_articles=train_articles, eval_articles=eval_articles,
                                   eval_split=eval_split, seed=settings.seed)
    train_questions = seeded_sample(split.train, settings.max_questions, settings.seed)
    device = pick_device(settings.device)
    run = {"kind": "reranker", "index": str(Path(index_path).resolve()), "questions": str(Path(questions_path).resolve()),
           "split": split.describe(), "settings": asdict(settings)}
    resume = prepare_output(out, run, restart=restart)

    needs_encoder = settings.dense_negatives > 0 or bool(split.eval)
    encoder = BiEncoder.load(index.manifest.bi_encoder["name"], device=device) if needs_encoder else None
    if encoder is not None:
        index.check_encoder(encoder)
    mined = mine_negatives(index, encoder, train_questions, bm25=settings.bm25_negatives,
                           dense=settings.dense_negatives, progress=progress)
    pairs = training_pairs(index, mined)
    model, resolved = _cross_encoder(settings.base, settings, device)
    held = seeded_sample(split.eval, settings.eval_sample, settings.seed)

    steps_per_epoch = -(-len(pairs.pairs) // settings.batch_size)
    total_steps = settings.max_steps if settings.max_steps > 0 else round(steps_per_epoch * settings.epochs)
    examples = min(len(pairs.pairs) * settings.epochs, total_steps * settings.batch_size)
    message = (f"Training {settings.base} on {len(pairs.pairs)} pairs ({pairs.counts()}) from "
               f"{len(train_questions)} questions: {total_steps} steps of {settings.batch_size} on {device}")
    if device == "cpu":
        seconds = estimate.cpu_seconds(int(examples), parameters=_parameters(model), length=settings.max_length,
                                       threads=torch.get_num_threads(), per_example=estimate.SECONDS_PER_PAIR)
        message += f", {estimate.describe(seconds)} on this CPU ({torch.get_num_threads()} threads, if nothing else runs)"
    notify(message + (f"; resuming from {resume}" if resume else "") + ".")

    figures: dict = {}
    if held and _has_trained_head(resolved.path):
        notify(f"Held-out figures before training: {len(held)} questions, hybrid top {settings.eval_candidates}.")
        figures["before"] = heldout_figures(index, encoder, held, lambda q, ts: model.predict([(q, t) for t in ts]),
                                            candidates=settings.eval_candidates, progress=progress, desc="Before")
    elif held:  # a fresh random head ranks at random: the baseline is the retrieval order ("hybrid" of "after")
        figures["before"] = {"skipped": f"{settings.base} has no trained scoring head; before training the "
                             "ranking is the hybrid retrieval order, reported as 'hybrid' with the figures after"}

    dataset = Dataset.from_dict({
        "question": [p.question for p in pairs.pairs],
        "passage": [p.passage for p in pairs.pairs],
        "label": [float(p.label) for p in pairs.pairs],
    })
    args = CrossEncoderTrainingArguments(
        **training_arguments(settings, out, progress=progress, device=device),
        dataloader_drop_last=False,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=BinaryCrossEntropyLoss(model))
    from pipeline.train.progress import use_loss_bar

    use_loss_bar(trainer, progress)
    train_started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.time() - train_started
    install_model(out, model.save_pretrained if hasattr(model, "save_pretrained") else model.save,
                  keep_checkpoints=keep_checkpoints)

    if held:
        from pipeline.rerank.reranker import Reranker

        trained = Reranker.load(str(out), device=device, max_length=settings.max_length, cache_size=0, progress=False)
        figures["after"] = heldout_figures(index, encoder, held, trained.score, candidates=settings.eval_candidates,
                                           progress=progress, desc="After")
    card = {
        "kind": "reranker",
        "model": str(out),
        "base": {"name": settings.base, "path": resolved.path, "source": resolved.source},
        "data": {
            "questions_file": str(questions_path),
            "index": str(index_path),
            "index_passages": len(index),
            "bi_encoder": index.manifest.bi_encoder["name"],
            "questions": len(questions),
            "training_questions": len(train_questions),
            "pairs": len(pairs.pairs),
            "pairs_by_kind": pairs.counts(),
        },
        "split": split.describe(),
        "settings": asdict(settings) | {"device": device, "loss": "BinaryCrossEntropyLoss", "activation": "sigmoid"},
        "training": {
            "steps": result.global_step,
            "final_loss": result.training_loss,
            "resumed_from": resume,
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.time() - started, 1),
        },
        "heldout": figures or None,
        "heldout_note": "reranker alone ordering the hybrid (BM25 + dense, RRF k=60) top candidates of a seeded "
        "sample of the held-out questions; never trained on" if figures else "no evaluation split was asked for",
    }
    write_card(out, card)
    return card
