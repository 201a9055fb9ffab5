"""The latency budget of a full search (retrieve, rerank, read) with the shipped defaults, one question at a time.

Configurations, timed on the same held-out questions, interleaved question by
question so that load changes hit them alike:

* ``minilm``: the offline stand-ins (MiniLM-L6 reranker and reader), the models
  behind every quality figure, shipped defaults;
* ``electra-base``: randomly initialised models of the product's default shapes
  (ELECTRA-base cross-encoder and ELECTRA-base extractive reader, 110M parameters
  each; random weights: only the time means anything), shipped defaults;
* the levers, at both sizes, each alone against the shipped defaults: no early
  stop (``agreed_candidates 0``: always ``candidates``), the reader in PyTorch
  fp32 (``reader_backend torch``), the int8 screen alone (no fp32 re-score),
  fewer candidates (``--depths``; the pipeline always reranks at least ``top_k``);
  and at ELECTRA-base size a cascade where the MiniLM stand-in screens every
  candidate and ELECTRA-base scores the best ``--cascade-keep``; and, at MiniLM
  size, the answer policy without ``sentence_similarity`` (the bi-encoder reads
  the answer's paragraph sentence by sentence: its time is in ``read``).

Shipped defaults: hybrid, ``candidates``, early stop to ``agreed_candidates`` when
BM25 and the bi-encoder agree on the best paragraph, ``auto`` backends (reranker:
int8 screen + fp32 re-score of the first paragraph of the final order on a CPU;
reader: ONNX Runtime int8), the first ``read_paragraphs`` hits read. p50 is the budget's figure; p90 and the share of
questions that stopped early are printed beside it, since the early stop makes
the distribution two-humped. The
baseline of the ratio is hybrid retrieval alone on the same pipeline. Warm-up
questions are other questions than the timed ones (a repeated question would be
served from the score cache; the cache is off here, so that the two depths of one
question are both scored afresh). Prints a table and writes JSON.

    python benchmarks/latency_budget.py --index indexes/squad-dev --questions data/dev-v1.1.json \\
        --sample 30 --out benchmarks/results/latency_budget.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rerank_speed import random_electra_base  # noqa: E402

from pipeline.config import SearchSettings  # noqa: E402
from pipeline.eval.questions import load_questions, sample_questions  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.qa import QAPipeline  # noqa: E402
from pipeline.read.policy import AnswerPolicy  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"
BUDGET_MS = {"minilm": 400.0, "electra-base": 1500.0}


def random_electra_base_reader(tokenizer_from: Path) -> Path:
    """ElectraForQuestionAnswering of ELECTRA-base's shape with random weights (seed 0), kept for reuse."""
    from pipeline.rerank.onnx_export import default_cache_dir

    path = default_cache_dir().parent / "bench" / "electra-base-reader-random-seed0"
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import AutoTokenizer, ElectraConfig, ElectraForQuestionAnswering

    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512)
    staging = path.with_name(path.name + ".tmp")
    ElectraForQuestionAnswering(config).save_pretrained(staging)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(staging)
    os.replace(staging, path)
    return path


def without_feature(policy: AnswerPolicy, name: str) -> AnswerPolicy:
    """``policy`` without one feature (its coefficient dropped, the others as fitted): that feature's time, not quality."""
    if name not in policy.features:
        return policy
    keep = [i for i, f in enumerate(policy.features) if f != name]
    pick = lambda values: tuple(values[i] for i in keep)  # noqa: E731
    return replace(policy, features=pick(policy.features), mean=pick(policy.mean), scale=pick(policy.scale),
                   coef=pick(policy.coef))


def p50(values: list[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), 50))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default="indexes/squad-dev")
    parser.add_argument("--questions", required=True)
    parser.add_argument("--articles", default="24-47")
    parser.add_argument("--sample", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--standins", type=Path, default=SHARED, help="folder of the stand-in models")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--depths", default="10", help="other candidate depths timed, comma-separated")
    parser.add_argument("--cascade-keep", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    reranker, reader = args.standins / "minilm-l6-qnli-squad-tune", args.standins / "minilm-l6-squad-tune-reader"
    electra_reranker, electra_reader = str(random_electra_base(reranker)), str(random_electra_base_reader(reader))
    minilm = {"reranker": str(reranker), "reader": str(reader), "device": "cpu", "score_cache_size": 0}
    electra = {"reranker": electra_reranker, "reader": electra_reader, "device": "cpu", "score_cache_size": 0}
    pipelines = {
        "minilm": QAPipeline.load(args.index, **minilm),
        "minilm-int8": QAPipeline.load(args.index, **minilm, int8_rescore=0),
        "minilm-torch-reader": QAPipeline.load(args.index, **minilm, reader_backend="torch"),
        "electra-base": QAPipeline.load(args.index, **electra),
        "electra-base-int8": QAPipeline.load(args.index, **electra, int8_rescore=0),
        "electra-base-torch-reader": QAPipeline.load(args.index, **electra, reader_backend="torch"),
        "cascade": QAPipeline.load(args.index, **electra, cascade_reranker=str(reranker), cascade_keep=args.cascade_keep),
    }
    lean = QAPipeline.load(args.index, **minilm)
    lean.answer_policy = without_feature(lean.answer_policy, "sentence_similarity")
    pipelines["minilm-no-sentence-similarity"] = lean
    defaults = SearchSettings()
    depths = [int(x) for x in args.depths.split(",") if x.strip()]
    # (row name, pipeline, search overrides, budget)
    rows = []
    for size, budget in (("minilm", BUDGET_MS["minilm"]), ("electra-base", BUDGET_MS["electra-base"])):
        rows.append((f"{size} (shipped defaults)", size, {}, budget))
        rows.append((f"{size}, no early stop (agreed_candidates 0)", size, {"agreed_candidates": 0}, budget))
        rows.append((f"{size}, reader in PyTorch fp32", f"{size}-torch-reader", {}, budget))
        rows.append((f"{size}, int8 alone (no fp32 re-score)", f"{size}-int8", {}, budget))
        if size == "minilm":  # the bi-encoder's cost: the same at either size
            rows.append(("minilm, answer policy without sentence_similarity", "minilm-no-sentence-similarity", {}, budget))
        for d in depths:
            rows.append((f"{size}, {d} candidates", size, {"candidates": d}, budget))
            rows.append((f"{size}, {d} candidates, int8 alone (no fp32 re-score)", f"{size}-int8", {"candidates": d}, budget))
    rows.append((f"electra-base, cascade: MiniLM screens {defaults.candidates}, ELECTRA scores {args.cascade_keep}",
                 "cascade", {}, BUDGET_MS["electra-base"]))
    sampled = sample_questions(load_questions(args.questions, args.articles), args.sample + args.warmup, args.seed)
    warmup, questions = [q.text for q in sampled[: args.warmup]], [q.text for q in sampled[args.warmup :]]
    times: dict[str, dict[str, list[float]]] = {name: {} for name, *_ in rows}
    for i, question in enumerate(warmup + questions):
        for name, key, overrides, _ in rows:
            qa = pipelines[key]
            full = qa.search(question, **overrides)
            retrieval = qa.search(question, rerank=False, read=False)
            if i < len(warmup):
                continue
            for stage, ms in full.timings.items():
                times[name].setdefault(stage, []).append(ms)
            early = full.settings["reranked_candidates"] < max(full.settings["candidates"], full.settings["top_k"])
            times[name].setdefault("stopped early", []).append(float(early))
            times[name].setdefault("retrieval only", []).append(retrieval.timings["total"])
        print(f"\r{max(0, i + 1 - len(warmup))}/{len(questions)} questions", end="", file=sys.stderr)
    print(file=sys.stderr)

    print(f"\n{len(questions)} held-out questions (articles {args.articles}), one at a time, shipped defaults "
          f"(candidates {defaults.candidates}) unless named; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| configuration | total p50 ms | budget | total p90 | stopped early | rerank p50 | read p50 | retrieval p50 "
          "| total / retrieval only |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    figures = {}
    for name, _, overrides, budget in rows:
        stages = times[name]
        row = {stage: p50(values) for stage, values in stages.items()}
        row["total_p90"] = float(np.percentile(np.asarray(stages["total"], dtype=float), 90))
        row["stopped early"] = float(np.mean(stages["stopped early"]))
        row["ratio_to_retrieval"] = row["total"] / row["retrieval only"]
        row["budget_ms"] = budget
        row["within_budget"] = row["total"] <= budget
        row["overrides"] = overrides
        figures[name] = row
        print(f"| {name} | {row['total']:.0f} | {budget:.0f} | {row['total_p90']:.0f} | {row['stopped early']:.0%} | "
              f"{row.get('rerank', 0):.0f} | "
              f"{row.get('read', 0):.0f} | {row['retrieval only']:.0f} | {row['ratio_to_retrieval']:.1f}x |")
    if args.out:
        write_json(args.out, {
            "questions": len(questions), "articles": args.articles, "seed": args.seed,
            "candidates": defaults.candidates, "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
            "machine": platform.machine(), "settings": pipelines["minilm"].config.to_dict(),
            "answer_policy_paragraphs": pipelines["minilm"].answer_policy.paragraphs, "p50_ms": figures,
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
