"""Reranker speed on a CPU: every backend and trick against the naive baseline, in one process.

Pairs: the hybrid (BM25 + all-MiniLM-L6-v2, RRF) top-20 candidates of ``--questions``
questions drawn (seed 0) from the held-out SQuAD dev articles 24-47.

Baseline: ``sentence_transformers.CrossEncoder(model).predict(pairs, batch_size=32)``,
PyTorch fp32. Configurations: ``torch`` (our length-sorted token batching, fp32),
``onnx`` (ONNX Runtime fp32, fused graph), ``onnx-int8`` (dynamic int8 alone), the
default (``auto`` on a CPU: int8 screens, fp32 ONNX re-scores each question's best 5),
the default on a repeated search (every score from the score cache), and at
ELECTRA-base size a cascade (the MiniLM stand-in in int8 prunes each question's 20 to
``--cascade-keep``, the default ELECTRA-base path scores those).

Model sizes: ``electra-base`` (a randomly initialised ElectraForSequenceClassification of
cross-encoder/qnli-electra-base's shape, BERT-uncased vocabulary, 512-token limit: speed
only) and ``minilm`` (the stand-in reranker). Speed is measured on the first
``--electra-questions`` / ``--minilm-questions`` questions' pairs, the configurations
interleaved question by question so that load from other processes hits them alike.

Fidelity of the default configuration, with the stand-in reranker on all questions'
pairs, versus PyTorch fp32: fraction of questions whose top-1 passage is unchanged,
mean Kendall's tau (scipy) of the 20 scores, and MRR@10 (ranx) of the gold paragraph.

    nice -n 10 python benchmarks/rerank_speed.py --out benchmarks/results/rerank_speed.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))
PREBUILT_INDEX = REPO / "indexes" / "squad-dev"
HELD_OUT = "24-47"
CANDIDATES = 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=SHARED / "data" / "dev-v1.1.json", help="SQuAD v1.1 dev JSON")
    p.add_argument("--index", type=Path, default=None,
                   help="index of all SQuAD dev paragraphs (default: the prebuilt one, else built under the cache)")
    p.add_argument("--standin", type=Path, default=SHARED / "models" / "minilm-l6-qnli-squad-tune")
    p.add_argument("--questions", type=int, default=100, help="questions for the fidelity figures")
    p.add_argument("--electra-questions", type=int, default=3, help="questions (x20 pairs) timed at ELECTRA-base size")
    p.add_argument("--minilm-questions", type=int, default=10, help="questions (x20 pairs) timed at MiniLM size")
    p.add_argument("--threads", type=int, default=None, help="reranker threads (default: physical cores)")
    p.add_argument("--cascade-keep", type=int, default=5)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def load_questions(data: Path, n: int) -> list[dict]:
    """A fixed sample (seed 0) of ``n`` held-out questions, through the evaluation's own loader."""
    from pipeline.eval.questions import load_questions as load
    from pipeline.eval.questions import sample_questions

    chosen = sample_questions(load(data, HELD_OUT), n, seed=0)
    return [{"id": q.id, "question": q.text, "gold": q.gold_id} for q in chosen]


def candidate_pairs(index_dir: Path, questions: list[dict]) -> list[list[dict]]:
    from pipeline.index import SearchIndex
    from pipeline.models.encoder import BiEncoder
    from pipeline.retrieve import Retriever

    index = SearchIndex.load(index_dir)
    encoder = BiEncoder.load(index.manifest.bi_encoder["name"], device="cpu", allow_download=False)
    retrieved = Retriever(index, encoder).retrieve_many([q["question"] for q in questions], CANDIDATES)
    out = []
    for found in retrieved:
        out.append([{"id": index.passages[c.position].id, "source_id": index.passages[c.position].source_id,
                     "text": index.passages[c.position].text} for c in found.candidates])
    return out


def ensure_index(args) -> Path:
    if args.index:
        return args.index
    if (PREBUILT_INDEX / "manifest.json").is_file():
        return PREBUILT_INDEX
    from pipeline.index import build_index
    from pipeline.rerank.onnx_export import default_cache_dir

    built = default_cache_dir().parent / "bench" / "squad-dev-index"
    if not (built / "manifest.json").is_file():
        build_index(args.data, built, progress=True)
    return built


def random_electra_base(tokenizer_from: Path) -> Path:
    """ElectraForSequenceClassification with cross-encoder/qnli-electra-base's shape, random weights (seed 0), kept for reuse."""
    from pipeline.rerank.onnx_export import default_cache_dir

    path = default_cache_dir().parent / "bench" / "electra-base-random-seed0"
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import (
        AutoTokenizer,
        ElectraConfig,
        ElectraForSequenceClassification,
    )

    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512, num_labels=1)
    staging = path.with_name(path.name + ".tmp")
    ElectraForSequenceClassification(config).save_pretrained(staging)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    tokenizer.model_max_length = 512  # the real model's limit
    tokenizer.save_pretrained(staging)
    os.replace(staging, path)
    return path


# --------------------------------------------------------------------------- timing


def default_reranker(model: Path, args, cache: int = 0):
    """What the pipeline loads with default settings on a CPU (``auto``: int8 screen + fp32 top rescoring)."""
    from pipeline.config import LoadSettings
    from pipeline.qa import load_reranker

    return load_reranker(LoadSettings(reranker=str(model), device="cpu", threads=args.threads, score_cache_size=cache))


def make_configs(model: Path, size: str, args, standin: Path):
    """name -> function(pairs) -> probabilities, the baseline first; and the reranker whose cache is warmed."""
    import torch
    from sentence_transformers import CrossEncoder

    from pipeline.rerank.cascade import Cascade
    from pipeline.rerank.reranker import Reranker

    def reranker(backend, cache=0):
        return Reranker.load(str(model), device="cpu", backend=backend, threads=args.threads, cache_size=cache)

    ce = CrossEncoder(str(model), device="cpu")
    configs = {
        "baseline": lambda pairs: ce.predict(pairs, batch_size=32, show_progress_bar=False, convert_to_numpy=True,
                                             activation_fn=torch.nn.Sigmoid()),
    }
    for backend in ("torch", "onnx", "onnx-int8"):
        configs[backend] = reranker(backend).score_pairs
    default = default_reranker(model, args)
    configs["default: " + default.describe()] = default.score_pairs
    cached = default_reranker(model, args, cache=100_000)
    configs["default, repeated search (cache)"] = cached.score_pairs  # warmed first: every score from the cache
    if size == "electra-base":
        small = Reranker.load(str(standin), device="cpu", backend="onnx-int8", threads=args.threads, cache_size=0)
        configs[f"cascade minilm-int8 -> top {args.cascade_keep}"] = Cascade(small, default, keep=args.cascade_keep).score_pairs
    return configs, cached


def time_configs(configs: dict, per_question: list[list[tuple[str, str]]], warm_cache) -> dict:
    warm = per_question[0][:2]
    for fn in configs.values():
        fn(warm)  # first-call overheads (allocations, thread pools) out of the timings
    for pairs in per_question:
        warm_cache.score_pairs(pairs)
    seconds = defaultdict(float)
    names = list(configs)
    for q, pairs in enumerate(per_question):
        rotated = names[q % len(names):] + names[: q % len(names)]  # nobody always runs first or last
        for name in rotated:
            start = time.perf_counter()
            configs[name](pairs)
            seconds[name] += time.perf_counter() - start
    n_pairs = sum(len(p) for p in per_question)
    base = n_pairs / seconds["baseline"]
    return {name: {"pairs": n_pairs, "seconds": round(seconds[name], 3), "pairs_per_s": round(n_pairs / seconds[name], 2),
                   "speedup_vs_baseline": round(n_pairs / seconds[name] / base, 2)} for name in names}


# --------------------------------------------------------------------------- fidelity


def fidelity(standin: Path, questions, candidates, args) -> dict:
    """The default configuration (and plain int8, for the record) against PyTorch fp32 with the stand-in reranker."""
    from ranx import Qrels, Run, evaluate
    from scipy.stats import kendalltau

    from pipeline.rerank.reranker import Reranker

    pairs = [(q["question"], c["text"]) for q, cands in zip(questions, candidates) for c in cands]
    reference = Reranker.load(str(standin), device="cpu", backend="torch", threads=args.threads, cache_size=0)
    default = default_reranker(standin, args)
    int8 = Reranker.load(str(standin), device="cpu", backend="onnx-int8", threads=args.threads, cache_size=0)
    ref_scores = reference.score_pairs(pairs)
    qrels = Qrels({q["id"]: {q["gold"]: 1} for q in questions})

    def run_of(scores) -> dict:
        run, offset = {}, 0
        for q, cands in zip(questions, candidates):
            best: dict[str, float] = {}
            for c, s in zip(cands, scores[offset: offset + len(cands)]):  # a split paragraph counts at its best window
                best[c["source_id"]] = max(best.get(c["source_id"], -1.0), float(s))
            run[q["id"]] = best
            offset += len(cands)
        return run

    mrr_fp32 = float(evaluate(qrels, Run(run_of(ref_scores)), "mrr@10")) * 100
    out = {}
    for name, model in (("default", default), ("onnx-int8", int8)):
        scores = model.score_pairs(pairs)
        same_top, taus, offset = 0, [], 0
        for cands in candidates:
            r, f = ref_scores[offset: offset + len(cands)], scores[offset: offset + len(cands)]
            offset += len(cands)
            same_top += int(np.argmax(r) == np.argmax(f))
            taus.append(kendalltau(r, f).statistic)
        mrr = float(evaluate(qrels, Run(run_of(scores)), "mrr@10")) * 100
        out[name] = {
            "configuration": model.describe(),
            "questions": len(questions),
            "pairs": len(pairs),
            "top1_unchanged": round(same_top / len(questions), 4),
            "kendall_tau": round(float(np.mean(taus)), 4),
            "mrr10_fp32": round(mrr_fp32, 2),
            "mrr10": round(mrr, 2),
            "mrr10_delta": round(mrr - mrr_fp32, 2),
        }
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    import logging

    import torch

    from pipeline.files import write_json
    from pipeline.models.device import default_threads

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    args.threads = args.threads or default_threads()
    questions = load_questions(args.data, args.questions)
    candidates = candidate_pairs(ensure_index(args), questions)
    per_question = [[(q["question"], c["text"]) for c in cands] for q, cands in zip(questions, candidates)]
    electra = random_electra_base(args.standin)
    print(f"{len(questions)} questions x {CANDIDATES} candidates; {args.threads} threads; torch {torch.__version__}", flush=True)

    speed = {}
    for size, model, n in (("electra-base", electra, args.electra_questions), ("minilm", args.standin, args.minilm_questions)):
        configs, cached = make_configs(model, size, args, args.standin)
        speed[size] = time_configs(configs, per_question[:n], cached)
        print(f"{size}: timed", flush=True)
    fid = fidelity(args.standin, questions, candidates, args)

    print(f"\n{'configuration':<44}" + "".join(f"{s + ' pairs/s':>20}{'x':>7}" for s in speed))
    for name in speed["electra-base"]:
        row = f"{name:<44}"
        for size in speed:
            cell = speed[size].get(name)
            row += f"{cell['pairs_per_s']:>20.2f}{cell['speedup_vs_baseline']:>7.2f}" if cell else f"{'-':>20}{'-':>7}"
        print(row)
    for name, f in fid.items():
        print(f"{name} = {f['configuration']}; stand-in reranker, {f['questions']} held-out questions vs fp32: "
              f"top-1 unchanged {f['top1_unchanged']:.1%}, Kendall tau {f['kendall_tau']:.3f}, "
              f"MRR@10 {f['mrr10']:.2f} vs {f['mrr10_fp32']:.2f} (delta {f['mrr10_delta']:+.2f})")
    result = {
        "benchmark": "rerank_speed",
        "threads": args.threads,
        "cpu": _cpu_name(),
        "pairs_source": f"hybrid top-{CANDIDATES}, {len(questions)} questions of SQuAD dev articles 24-47 (seed 0)",
        "default_configuration": fid["default"]["configuration"],
        "speed": speed,
        "fidelity": fid,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
