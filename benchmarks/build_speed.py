"""Index build throughput (paragraphs/s) and peak memory, flat vs HNSW FAISS, on the same paragraphs.

Each build runs in its own child process so that its peak resident memory
(``ru_maxrss``) and peak Python heap (``tracemalloc``) are its own. The
paragraphs are the first ``--articles`` of a SQuAD file; ratios are against
the flat build of the same run. Encoding dominates a whole build and is the
same for every kind, so ``--faiss-from INDEX`` also times the FAISS step alone
(best of ``--repeat``) on the vectors of an existing index (e.g. all 2,080 of
indexes/squad-dev), with the serialised index size.

    PYTHONPATH=$PWD python benchmarks/build_speed.py --corpus ../shared/data/dev-v1.1.json \\
        --articles 0-3 --faiss-from indexes/squad-dev --out benchmarks/results/build_speed.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _build(corpus: str, out: str, kind: str, bi_encoder: str, queue) -> None:
    from pipeline.index import build_index

    tracemalloc.start()
    report = build_index(corpus, out, bi_encoder=bi_encoder, faiss_kind=kind, progress=False)
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    queue.put({
        "kind": kind, "passages": report.passages_added, "paragraphs": report.corpus.paragraphs,
        "seconds": report.seconds, "paragraphs_per_s": report.corpus.paragraphs / report.seconds,
        "peak_rss_mib": rss_kib / 1024, "peak_python_heap_mib": heap_peak / 2**20,
    })


def faiss_only(index_dir: str, kinds: list[str], repeat: int) -> list[dict]:
    """Seconds (best of ``repeat``) and bytes of building each FAISS kind from the vectors of ``index_dir``."""
    import time

    import faiss

    from pipeline.index import SearchIndex
    from pipeline.index.dense import DenseIndex

    dense = SearchIndex.load(index_dir).dense
    vectors = dense.index.reconstruct_n(0, len(dense))
    rows = []
    for kind in kinds:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            built = DenseIndex.build(vectors, kind)
            best = min(best, time.perf_counter() - start)
        rows.append({"kind": kind, "vectors": len(vectors), "seconds": best, "vectors_per_s": len(vectors) / best,
                     "bytes": int(faiss.serialize_index(built.index).size)})
    for row in rows:
        row["seconds_vs_" + kinds[0]] = row["seconds"] / rows[0]["seconds"]
        row["bytes_vs_" + kinds[0]] = row["bytes"] / rows[0]["bytes"]
    return rows


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import DEFAULT_BI_ENCODER
    from pipeline.eval.questions import parse_articles
    from pipeline.files import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="SQuAD-format JSON")
    parser.add_argument("--articles", default="0-7", help="articles indexed (default 0-7)")
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--bi-encoder", default=DEFAULT_BI_ENCODER)
    parser.add_argument("--faiss-from", metavar="INDEX", help="also time the FAISS step alone on this index's vectors")
    parser.add_argument("--repeat", type=int, default=5, help="FAISS-only timings: best of N (default 5)")
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args(argv)

    data = json.loads(Path(args.corpus).read_text(encoding="utf-8"))
    chosen = parse_articles(args.articles)
    kinds = [k.strip() for k in args.kinds.split(",")]
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="build-speed-") as tmp:
        subset = Path(tmp) / "corpus.json"
        subset.write_text(json.dumps({"version": "1.1", "data": [data["data"][i] for i in chosen]}), encoding="utf-8")
        for kind in kinds:
            queue = ctx.Queue()
            child = ctx.Process(target=_build, args=(str(subset), str(Path(tmp) / kind), kind, args.bi_encoder, queue))
            child.start()
            row = queue.get()
            child.join()
            rows.append(row)
            print(f"{kind}: {row['paragraphs_per_s']:.1f} paragraphs/s", file=sys.stderr)
    base = rows[0]
    for row in rows:
        row["throughput_vs_" + base["kind"]] = row["paragraphs_per_s"] / base["paragraphs_per_s"]
        row["peak_rss_vs_" + base["kind"]] = row["peak_rss_mib"] / base["peak_rss_mib"]
    print(f"\n{base['paragraphs']} paragraphs ({base['passages']} passages) of articles {args.articles}, "
          f"{args.bi_encoder}, {os.cpu_count()} cores\n")
    print(f"| FAISS | s | paragraphs/s | peak RSS MiB | peak Python heap MiB | throughput vs {base['kind']} | RSS vs {base['kind']} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['seconds']:.1f} | {r['paragraphs_per_s']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['peak_python_heap_mib']:.1f} | {r['throughput_vs_' + base['kind']]:.2f}x | {r['peak_rss_vs_' + base['kind']]:.2f}x |")
    faiss_rows = faiss_only(args.faiss_from, kinds, args.repeat) if args.faiss_from else []
    if faiss_rows:
        k0 = kinds[0]
        print(f"\nFAISS step alone on the {faiss_rows[0]['vectors']} vectors of {args.faiss_from} (best of {args.repeat})\n")
        print(f"| FAISS | ms | vectors/s | MiB | time vs {k0} | size vs {k0} |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in faiss_rows:
            print(f"| {r['kind']} | {1000 * r['seconds']:.1f} | {r['vectors_per_s']:,.0f} | {r['bytes'] / 2**20:.1f} | "
                  f"{r['seconds_vs_' + k0]:.1f}x | {r['bytes_vs_' + k0]:.2f}x |")
    if args.out:
        write_json(args.out, {
            "articles": args.articles, "bi_encoder": args.bi_encoder, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(), "builds": rows,
            "faiss_only": faiss_rows,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
