"""``qa-search build``: build an index from a corpus, or ``--add`` a corpus to one."""

from __future__ import annotations

import argparse
import sys

from pipeline.apps.cli.common import choices
from pipeline.config import DEFAULT_BI_ENCODER, BM25Engine, EncoderBackend, FaissKind
from pipeline.errors import QASearchError


def _reading(args: argparse.Namespace, progress: bool) -> dict:
    """How a corpus is read and embedded: the options a build, an --add and a Ray build share."""
    return {"fmt": args.format, "strict": not args.skip_bad_records, "batch_size": args.batch_size,
            "device": args.device, "progress": progress}


def _windows(args: argparse.Namespace) -> dict:
    """How long paragraphs become windows (fixed by the first build; --add reuses the manifest's)."""
    return {"max_tokens": args.window_tokens, "overlap": args.window_overlap}


def _print_done(verb: str, report) -> None:
    print(
        f"{verb} {report.index_path}: {report.passages_added} passages in {report.seconds:.1f} s "
        f"({report.passages_per_second:.1f}/s); index now holds {report.manifest.passages} passages."
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from pipeline.index import add_to_index, build_index

    progress = not args.quiet
    if args.ray:
        return _cmd_build_on_ray(args, progress)
    if args.add:
        report = add_to_index(
            args.index,
            args.add,
            bi_encoder=args.bi_encoder,
            vectors=args.vectors,
            vectors_check=args.vectors_check,
            encoder_backend=args.encoder_backend,
            **_reading(args, progress),
        )
        verb = "Added"
    else:
        if not args.corpus:
            raise QASearchError("Pass --corpus PATH to build an index, or --add PATH to extend one.")
        report = build_index(
            args.corpus,
            args.index,
            bi_encoder=args.bi_encoder or DEFAULT_BI_ENCODER,
            faiss_kind=args.faiss,
            bm25_engine=args.bm25_engine,
            bm25_method=args.bm25_method,
            vectors=args.vectors,
            vectors_check=args.vectors_check,
            chunk_size=args.chunk_size,
            encoder_backend=args.encoder_backend,
            resume=not args.restart,
            **_reading(args, progress),
            **_windows(args),
        )
        verb = "Built"
        if report.resumed_chunks:
            print(f"Resumed an interrupted build after chunk {report.resumed_chunks}.")
    _print_done(verb, report)
    print(f"Corpus: {report.corpus.summary()}.")
    faiss = report.manifest.faiss
    if "recall_at_10" in faiss and not args.add:
        tuned = ", ".join(f"{k}={faiss[k]}" for k in ("nprobe", "efSearch", "k_factor") if k in faiss)
        print(f"FAISS {faiss['kind']}{' (' + tuned + ')' if tuned else ''}: recall@10 {faiss['recall_at_10']:.3f} against exact search.")
    for bad in report.corpus.bad_records[:20]:
        print(f"  skipped {bad.path}:{bad.line}: {bad.reason}", file=sys.stderr)
    return 0


def _cmd_build_on_ray(args: argparse.Namespace, progress: bool) -> int:
    if args.add:
        raise QASearchError("--ray builds a new index; --add runs on this machine (drop --ray).")
    if not args.corpus:
        raise QASearchError("Pass --corpus PATH to build an index.")
    from pipeline.scale_out.ray_build import build_index_on_ray

    ray_report = build_index_on_ray(
        args.corpus,
        args.index,
        address=args.address,
        actors=args.ray_actors,
        bi_encoder=args.bi_encoder or DEFAULT_BI_ENCODER,
        shard_size=args.shard_size,
        work_dir=args.work_dir,
        keep_shards=args.keep_shards,
        faiss_kind=args.faiss,
        **_reading(args, progress),
        **_windows(args),
    )
    report = ray_report.build
    _print_done("Built", report)
    print(ray_report.summary() + ".")
    print(f"Corpus: {report.corpus.summary()}.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser("build", help="build a BM25 + FAISS index from a corpus (or --add to one)")
    build.add_argument("--corpus", metavar="PATH", help="SQuAD JSON, JSON Lines, a folder of .txt/.md, or WikiExtractor output")
    build.add_argument("--index", required=True, metavar="DIR", help="index directory, e.g. indexes/squad-dev")
    build.add_argument("--add", metavar="PATH", help="append this corpus to the existing index (old passages are not re-embedded)")
    build.add_argument("--format", default="auto", choices=["auto", "squad", "jsonl", "folder", "wikiextractor"])
    build.add_argument("--bi-encoder", metavar="NAME|PATH", help=f"sentence-transformers model (default {DEFAULT_BI_ENCODER})")
    build.add_argument("--faiss", default="auto", choices=choices(FaissKind),
                       help="FAISS index kind (default auto: flat below 100,000 passages, else ivf-sq with exact re-scoring)")
    build.add_argument("--bm25-engine", default="bm25s", choices=choices(BM25Engine),
                       help="lexical engine (default bm25s; rank-bm25 is the slow in-memory reference)")
    build.add_argument("--bm25-method", default="robertson", choices=["robertson", "lucene", "atire"],
                       help="bm25s idf/tf variant (default robertson: the closest to rank-bm25)")
    build.add_argument("--vectors", metavar="PATH",
                       help="precomputed passage embeddings: a .npy or a folder of .npy shards, one row per passage in corpus order")
    build.add_argument("--vectors-check", type=int, default=8, metavar="N",
                       help="re-embed N passages to check --vectors against the bi-encoder (default 8; 0 = trust them)")
    build.add_argument("--encoder-backend", default="torch", choices=choices(EncoderBackend),
                       help="engine that embeds the passages: torch (fp32), onnx (ONNX Runtime fp32, same vectors, faster) "
                       "or onnx-int8 (fastest, cosine >= 0.99 to fp32)")
    build.add_argument("--chunk-size", type=int, default=10_000, metavar="N",
                       help="passages per build chunk; an interrupted build resumes after its last finished chunk (default 10000)")
    build.add_argument("--restart", action="store_true", help="discard an interrupted build of this index instead of resuming it")
    build.add_argument("--window-tokens", type=int, default=None, metavar="N",
                       help="split longer paragraphs into windows of N bi-encoder tokens (default: what the bi-encoder "
                       "reads, 254 for all-MiniLM-L6-v2; 0: keep paragraphs whole)")
    build.add_argument("--window-overlap", type=int, default=64, help="tokens shared by consecutive windows")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    build.add_argument("--skip-bad-records", action="store_true", help="skip malformed records (counted and listed) instead of stopping")
    ray = build.add_argument_group("on a Ray cluster (pip install 'qa-search[ray]'; see docs/ray.md)")
    ray.add_argument("--ray", action="store_true", help="embed the passages with Ray Data actors, then build the index from their vectors")
    ray.add_argument("--address", metavar="ADDR", help="Ray cluster to use (default $RAY_ADDRESS, else a local one)")
    ray.add_argument("--ray-actors", type=int, default=2, metavar="N", help="embedding actors (one GPU each where there are GPUs; default 2)")
    ray.add_argument("--shard-size", type=int, default=4096, metavar="N", help="passages per vector shard (default 4096)")
    ray.add_argument("--work-dir", metavar="DIR", help="where the vector shards go (default .INDEX.ray-vectors beside the index); "
                     "an interrupted build run again embeds only the missing shards")
    ray.add_argument("--keep-shards", action="store_true", help="keep the vector shards after the build (usable with --vectors)")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    build.set_defaults(handler=_cmd_build)
