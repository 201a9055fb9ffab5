"""Options shared by every command that loads a pipeline, and the settings they make."""

from __future__ import annotations

import argparse
from typing import Callable

from pipeline.config import DEFAULT_READER, FusionMethod, RerankBackend, RetrievalMode

Handler = Callable[[argparse.Namespace], int]


def choices(enum) -> list[str]:
    return [m.value for m in enum]

def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that loads a :class:`QAPipeline` shares."""
    parser.add_argument("--index", default="indexes/squad-dev", metavar="DIR", help="index directory (default indexes/squad-dev)")
    parser.add_argument("--mode", choices=choices(RetrievalMode), help="retrieval mode (default hybrid)")
    parser.add_argument("--fusion", choices=choices(FusionMethod), help="hybrid fusion (default weighted)")
    parser.add_argument("--reranker", metavar="NAME|PATH", help="cross-encoder (default $QA_SEARCH_RERANKER or cross-encoder/qnli-electra-base)")
    parser.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder")
    parser.add_argument("--reader", metavar="NAME|PATH", help=f"extractive QA model that marks the answer (default $QA_SEARCH_READER or {DEFAULT_READER})")
    parser.add_argument("--no-read", action="store_true", help="skip the reader (no answer spans)")
    parser.add_argument("--no-abstain", action="store_true",
                        help="always give the best candidate answer, even where the answer policy would abstain")
    parser.add_argument("--abstain-below", type=float, metavar="P",
                        help="answerability under which the search abstains (default: the answer policy's threshold; "
                        "lower keeps more answers and gives more false ones; $QA_SEARCH_ABSTAIN_BELOW)")
    parser.add_argument("--answer-policy", metavar="PATH",
                        help="answer policy JSON (paragraphs read, abstention model; default: the shipped one)")
    parser.add_argument("--bi-encoder", metavar="NAME|PATH", help="bi-encoder (default: the one the index was built with)")
    parser.add_argument("--candidates", type=int, help="candidates the reranker scores (default 15)")
    parser.add_argument("--agreed-candidates", type=int, metavar="N",
                        help="early stop: candidates reranked when BM25 and dense retrieval agree on the best paragraph "
                        "(default 10; 0 = always --candidates)")
    parser.add_argument("--threshold", type=float, help="probability at which a paragraph answers (default 0.5)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument(
        "--rerank-backend", choices=choices(RerankBackend),
        help="cross-encoder engine: auto (default: ONNX Runtime int8 on a CPU, PyTorch on a GPU), "
        "torch (plain fp32), onnx, onnx-int8 ($QA_SEARCH_RERANK_BACKEND)",
    )
    parser.add_argument(
        "--reader-backend", choices=choices(RerankBackend),
        help="reader engine, same choices as --rerank-backend (default auto: ONNX Runtime int8 on a CPU; "
        "$QA_SEARCH_READER_BACKEND)",
    )
    parser.add_argument("--int8-rescore", type=int, metavar="N",
                        help="with onnx-int8/auto on a CPU, re-score each question's best N in fp32 (default 1; 0 = off)")
    parser.add_argument("--threads", type=int, help="CPU threads of the reranker (default: physical cores; $QA_SEARCH_THREADS)")
    parser.add_argument("--cascade-reranker", metavar="NAME|PATH", help="small cross-encoder that prunes candidates first (default: off)")
    parser.add_argument("--cascade-keep", type=int, help="candidates the cascade passes to the main reranker (default 10)")
    parser.add_argument("--dense-weight", type=float, help="dense weight of --fusion weighted (default 0.4)")
    parser.add_argument("--rrf-k", type=int, help="k of reciprocal rank fusion (default 60)")
    parser.add_argument("--rerank-weight", type=float,
                        help="weight of the reranker probability against the fused score in the final order (default 0.5; 1 = reranker alone)")
    parser.add_argument("--similarity-weight", type=float,
                        help="weight of the bi-encoder's similarity of question and paragraph added to the final order "
                        "(default 0.5; 0 = the fused score alone)")
    parser.add_argument("--read-weight", type=float,
                        help="how far the reader's best span score moves the paragraphs it read in the blended order "
                        "(default 0.06; 0 = the reader does not reorder)")
    parser.add_argument("--read-paragraphs", type=int,
                        help="how many of the first hits the reader reads; their span scores move them and the answer "
                        "comes from the order after the move (default 5)")
    parser.add_argument("--policy", metavar="FILE|NAME|none",
                        help="a fitted ranking policy (JSON) that orders and flags hits instead of the blend "
                        "(none = the reranker's probability alone; $QA_SEARCH_POLICY)")
    parser.add_argument("--calibration", metavar="FILE|none",
                        help="what turns the final score into Hit.probability and the answerable flag: a file from "
                        "benchmarks/calibration_fit.py --write (default: the shipped one when the reranker is the one it "
                        "was fitted for); none = the reranker's own probability; $QA_SEARCH_CALIBRATION")


def pipeline_settings(args: argparse.Namespace) -> dict:
    return {
        "mode": args.mode,
        "fusion": args.fusion,
        "reranker": args.reranker,
        "rerank": False if args.no_rerank else None,
        "reader": args.reader,
        "read": False if args.no_read else None,
        "abstain": False if args.no_abstain else None,
        "abstain_below": args.abstain_below,
        "answer_policy": args.answer_policy,
        "bi_encoder": args.bi_encoder,
        "candidates": args.candidates,
        "agreed_candidates": args.agreed_candidates,
        "threshold": args.threshold,
        "device": args.device,
        "rerank_backend": args.rerank_backend,
        "reader_backend": args.reader_backend,
        "threads": args.threads,
        "int8_rescore": args.int8_rescore,
        "cascade_reranker": args.cascade_reranker,
        "cascade_keep": args.cascade_keep,
        "dense_weight": args.dense_weight,
        "rrf_k": args.rrf_k,
        "rerank_weight": args.rerank_weight,
        "similarity_weight": args.similarity_weight,
        "read_weight": args.read_weight,
        "read_paragraphs": args.read_paragraphs,
        "policy": args.policy,
        "calibration": args.calibration,
    }
