"""Scale benchmark: build, open and query indexes of 10k / 100k / 1M paragraphs on this machine.

Corpus: the 2,067 real SQuAD dev paragraphs (ids ``title#i``, so the Super
Bowl question's gold is ``Super_Bowl_50#0``) mixed into synthetic paragraphs
of 3-8 sentences drawn at random from all SQuAD dev paragraphs. Its posting
lists are denser than real Wikipedia's (a vocabulary of ~20k stems shared by
every paragraph), so BM25 query times are pessimistic.

Vectors: the real paragraphs get their real all-MiniLM-L6-v2 embeddings; a
synthetic paragraph gets the normalised mean of the real embeddings of its
sentences (each distinct sentence embedded once) or, with ``--squad-index``,
of the real embeddings of the paragraphs its sentences come from (nothing is
encoded: the busy 2-core machine embeds ~10-40 passages/s). They come in through
``build_index(vectors=...)`` (``qa-search build --vectors``) with the spot
check off, because the synthetic vectors are not what the model would make of
the paragraph. Encoding every passage with the model is timed separately on
a sample (passages/s) and extrapolated; it is not run at 100k or 1M.

Each size is built in a child process (time, peak RSS), then opened in a
fresh child process that loads the index, the bi-encoder and the stand-in
reranker (open time, serving RSS) and times BM25, dense and hybrid
retrieval on held-out questions, bm25s called directly on the same tokens,
and (up to ``--old-up-to`` passages) the old engine, rank-bm25. Then 10k
passages are added with ``add_to_index`` (time vs the full build).

    PYTHONPATH=. nice -n 10 python benchmarks/scale.py --sizes 10000,100000 \\
        --out benchmarks/results/scale.json --plot docs/scale.png
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("QA_SEARCH_SHARED", Path(__file__).resolve().parents[1] / "../shared")).resolve()
SUPER_BOWL = "Which NFL team represented the AFC at Super Bowl 50?"
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# -- corpus and vectors ----------------------------------------------------------------------------


def squad_paragraphs(path: Path) -> list[tuple[str, str, str]]:
    from pipeline.corpus import clean_text, squad_paragraph_id

    data = json.loads(path.read_text())["data"]
    return [
        (squad_paragraph_id(a["title"], i), a["title"], clean_text(p["context"]))
        for a in data
        for i, p in enumerate(a["paragraphs"])
    ]


def sentence_vectors(work: Path, paragraphs, squad_index: str | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct SQuAD sentences with a vector each, and the real paragraphs' vectors.

    With ``squad_index`` (an index of dev-v1.1.json built with all-MiniLM-L6-v2) the paragraph
    vectors are read from it (a windowed paragraph: the normalised mean of its windows) and a
    sentence's vector is its paragraph's, so nothing is encoded. Without it, every distinct sentence
    and paragraph is encoded (ONNX Runtime fp32, the same vectors as PyTorch); slow on a busy CPU.
    """
    sentences, owner = [], []
    seen = set()
    for i, (_, _, text) in enumerate(paragraphs):
        for sent in _SENT.split(text):
            if len(sent.split()) >= 4 and sent not in seen:
                seen.add(sent)
                sentences.append(sent)
                owner.append(i)
    if squad_index:
        from pipeline.index import SearchIndex

        index = SearchIndex.load(squad_index)
        vectors = index.dense.index.reconstruct_n(0, len(index))
        sums: dict[str, np.ndarray] = {}
        for pos, passage in enumerate(index.passages):
            sums[passage.source_id] = sums.get(passage.source_id, 0) + vectors[pos]
        para = np.stack([sums[pid] for pid, _, _ in paragraphs]).astype(np.float32)
        para /= np.linalg.norm(para, axis=1, keepdims=True)
        return sentences, para[np.asarray(owner)], para
    from pipeline.models.encoder import BiEncoder

    encoder = BiEncoder.load("sentence-transformers/all-MiniLM-L6-v2", device="cpu", backend="onnx")
    cache_s, cache_p = work / "sentence-vectors.npy", work / "paragraph-vectors.npy"
    if not cache_s.exists():
        np.save(cache_s, encoder.encode(sentences, batch_size=64))
    if not cache_p.exists():
        np.save(cache_p, encoder.encode([t for _, _, t in paragraphs], batch_size=32))
    return sentences, np.load(cache_s), np.load(cache_p)


def make_collection(work: Path, n: int, paragraphs, sentences, sent_vecs, para_vecs, seed: int = 0,
                    name: str = "") -> tuple[Path, Path]:
    """``corpus-N.jsonl`` and ``vectors-N.npy`` (one row per paragraph, corpus order)."""
    name = name or str(n)
    corpus, vectors = work / f"corpus-{name}.jsonl", work / f"vectors-{name}.npy"
    if corpus.exists() and vectors.exists():
        return corpus, vectors
    rng = np.random.default_rng(seed)
    real = len(paragraphs)
    # The real paragraphs are spread evenly through the synthetic ones.
    slots = set(np.linspace(0, n - 1, num=min(real, n)).astype(int).tolist())
    out = np.lib.format.open_memmap(vectors.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, sent_vecs.shape[1]))
    real_i = 0
    with corpus.with_suffix(".tmp").open("w", encoding="utf-8") as fh:
        for i in range(n):
            if i in slots and real_i < real:
                pid, title, text = paragraphs[real_i]
                out[i] = para_vecs[real_i]
                real_i += 1
            else:
                picks = rng.choice(len(sentences), size=int(rng.integers(3, 9)), replace=False)
                text = " ".join(sentences[j] for j in picks)
                pid, title = f"synthetic-{name}-{i}", "Synthetic"
                mean = sent_vecs[picks].mean(axis=0)
                out[i] = mean / np.linalg.norm(mean)
            fh.write(json.dumps({"id": pid, "title": title, "text": text}, ensure_ascii=False) + "\n")
    out.flush()
    del out
    corpus.with_suffix(".tmp").replace(corpus)
    vectors.with_suffix(".tmp.npy").replace(vectors)
    return corpus, vectors


# -- child processes -------------------------------------------------------------------------------


def child(args: list[str]) -> dict:
    """Run this script's hidden sub-command in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def do_build(corpus: str, index: str, vectors: str, kind: str, chunk: int, engine: str) -> None:
    from pipeline.index import build_index

    started = time.perf_counter()
    report = build_index(corpus, index, vectors=vectors, vectors_check=0, faiss_kind=kind, chunk_size=chunk,
                         bm25_engine=engine, max_tokens=0, overlap=0, progress=False, resume=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2), "passages": report.passages_added,
                      "peak_rss_mb": round(peak, 1), "faiss": report.manifest.faiss, "stages": report.manifest.build["seconds"]}))


def do_add(index: str, corpus: str, vectors: str) -> None:
    from pipeline.index import add_to_index

    started = time.perf_counter()
    report = add_to_index(index, corpus, vectors=vectors, vectors_check=0, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2), "passages": report.passages_added, "peak_rss_mb": round(peak, 1)}))


def pct(values: list[float]) -> dict:
    values = sorted(values)
    return {"p50": round(statistics.median(values), 3), "p95": round(values[int(0.95 * (len(values) - 1))], 3)}


def exact_top(queries: np.ndarray, vectors_path: str, k: int = 10, chunk: int = 100_000) -> np.ndarray:
    """Exact inner-product top-k positions of ``queries`` over every stored vector (read in chunks)."""
    vectors = np.load(vectors_path, mmap_mode="r")
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ np.asarray(vectors[start:start + chunk], dtype=np.float32).T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return best_i


def do_serve(index: str, questions_path: str, reranker: str, n_questions: int, old_up_to: int,
             vectors_path: str = "") -> None:
    from pipeline.config import SearchSettings
    from pipeline.eval.questions import load_questions, sample_questions
    from pipeline.index import SearchIndex
    from pipeline.index.bm25 import BM25Index
    from pipeline.qa import QAPipeline
    from pipeline.retrieve import Retriever

    HYBRID = SearchSettings(mode="hybrid")

    questions = [q.text for q in sample_questions(load_questions(questions_path, "24-47"), n_questions, seed=0)]
    base = rss_mb()
    t0 = time.perf_counter()
    opened = SearchIndex.load(index)
    open_s = time.perf_counter() - t0
    index_rss = rss_mb() - base
    t0 = time.perf_counter()
    qa = QAPipeline.load(index, reranker=reranker, read=False)
    pipeline_s = time.perf_counter() - t0
    retriever = Retriever(qa.index, qa.encoder)
    bm25 = qa.index.bm25
    times: dict[str, list[float]] = {k: [] for k in ("bm25", "bm25s_direct", "encode", "dense_search", "hybrid")}
    for q in questions + [SUPER_BOWL]:  # warm-up pass
        retriever.retrieve(q, 50, HYBRID)
    for q in questions:
        t = time.perf_counter()
        bm25.search(q, 50)
        times["bm25"].append((time.perf_counter() - t) * 1000)
        ids = bm25.term_ids(q)
        t = time.perf_counter()
        if ids:
            bm25.bm25s_model.retrieve([ids], k=50, show_progress=False, n_threads=1)
        times["bm25s_direct"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        vec = qa.encoder.encode([q])
        times["encode"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        qa.index.dense.search(vec, 50)
        times["dense_search"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        retriever.retrieve(q, 50, HYBRID)
        times["hybrid"].append((time.perf_counter() - t) * 1000)
    recall = None
    if vectors_path:
        # recall@10 of the shipped dense settings against exact search, on the real question vectors
        qvecs = np.asarray(qa.encoder.encode(questions), dtype=np.float32)
        truth = exact_top(qvecs, vectors_path)
        found = qa.index.dense.search(qvecs, 10)
        recall = sum(len({p for p, _ in f} & set(t.tolist())) for f, t in zip(found, truth)) / truth.size
    tops = {}
    for mode in ("bm25", "dense", "hybrid"):
        cands = retriever.retrieve(SUPER_BOWL, 10, SearchSettings(mode=mode)).candidates
        tops[mode] = qa.index.passages[cands[0].position].id
    hit = qa.search(SUPER_BOWL, top_k=3)
    tops["reranked"] = hit.hits[0].id if hit.hits else None
    result = {
        "open_s": round(open_s, 3), "index_rss_mb": round(index_rss, 1), "pipeline_load_s": round(pipeline_s, 2),
        "serving_rss_mb": round(rss_mb(), 1), "latency_ms": {k: pct(v) for k, v in times.items()},
        "super_bowl_top1": tops, "faiss": qa.index.manifest.faiss,
        "dense_recall_at_10_questions": None if recall is None else round(recall, 4),
    }
    if len(opened) <= old_up_to:
        t0 = time.perf_counter()
        old = BM25Index(bm25.table, engine="rank-bm25")
        old_open = time.perf_counter() - t0
        old_times = []
        for q in questions[:20]:
            t = time.perf_counter()
            old.search(q, 50)
            old_times.append((time.perf_counter() - t) * 1000)
        result["rank_bm25"] = {"open_s": round(old_open, 2), "latency_ms": pct(old_times), "queries": len(old_times)}
    print(json.dumps(result))


def do_encode_speed(n: int) -> None:
    from pipeline.models.encoder import BiEncoder

    texts = [p[2] for p in squad_paragraphs(SHARED / "data" / "dev-v1.1.json")[:n]]
    out, reference = {"passages": n}, None
    for backend in ("torch", "onnx", "onnx-int8"):
        encoder = BiEncoder.load("sentence-transformers/all-MiniLM-L6-v2", device="cpu", backend=backend)
        encoder.encode(texts[:16])
        t = time.perf_counter()
        vecs = encoder.encode(texts, batch_size=32)
        out[backend] = {"per_second": round(n / (time.perf_counter() - t), 1)}
        if reference is None:
            reference = vecs
        cos = np.sum(vecs * reference, axis=1)
        out[backend].update(cosine_min=round(float(cos.min()), 4), cosine_mean=round(float(cos.mean()), 5))
    print(json.dumps(out))


# -- the run ---------------------------------------------------------------------------------------


def disk_usage(index: Path) -> dict:
    parts = {"passages.sqlite": 0, "bm25/": 0, "dense.faiss": 0, "manifest.json": 0}
    for path in index.rglob("*"):
        if path.is_file():
            key = "bm25/" if path.parent.name == "bm25" else path.name
            parts[key] = parts.get(key, 0) + path.stat().st_size
    return {k: round(v / 1e6, 2) for k, v in parts.items()}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["passages"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("bm25", "BM25 (bm25s)"), ("dense_search", "dense (FAISS search)"), ("hybrid", "hybrid retrieval")):
        ax1.plot(sizes, [r["serve"]["latency_ms"][key]["p50"] for r in rows], "o-", label=label)
    old = [(r["passages"], r["serve"]["rank_bm25"]["latency_ms"]["p50"]) for r in rows if "rank_bm25" in r["serve"]]
    if old:
        ax1.plot(*zip(*old), "s--", label="BM25 (rank-bm25, old)")
    ax1.set(xscale="log", yscale="log", xlabel="paragraphs", ylabel="p50 query time (ms)", title="Query time")
    ax1.legend()
    ax2.plot(sizes, [r["serve"]["serving_rss_mb"] for r in rows], "o-", label="serving RSS (index + models)")
    ax2.plot(sizes, [r["build"]["peak_rss_mb"] for r in rows], "o-", label="build peak RSS")
    ax2.plot(sizes, [sum(r["disk_mb"].values()) for r in rows], "o-", label="on disk")
    ax2.set(xscale="log", yscale="log", xlabel="paragraphs", ylabel="MB", title="Memory and disk")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        command, *rest = sys.argv[1:]
        {"_build": lambda a: do_build(a[0], a[1], a[2], a[3], int(a[4]), a[5]),
         "_add": lambda a: do_add(*a),
         "_serve": lambda a: do_serve(a[0], a[1], a[2], int(a[3]), int(a[4]), *a[5:]),
         "_encode": lambda a: do_encode_speed(int(a[0]))}[command](rest)
        return
    from pipeline.files import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--work", default="/tmp/qa-search-scale")
    parser.add_argument("--faiss", default="auto")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--old-up-to", type=int, default=100_000, help="also time rank-bm25 up to this many passages")
    parser.add_argument("--add", type=int, default=10_000, help="passages added after each build (0: skip)")
    parser.add_argument("--encode-sample", type=int, default=256, help="passages encoded to time the model (0: skip)")
    parser.add_argument("--squad-index", help="an index of dev-v1.1.json: take the real paragraph vectors from it")
    parser.add_argument("--out", default="benchmarks/results/scale.json")
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    squad = SHARED / "data" / "dev-v1.1.json"
    reranker = str(SHARED / "models" / "minilm-l6-qnli-squad-tune")
    paragraphs = squad_paragraphs(squad)
    sentences, sent_vecs, para_vecs = sentence_vectors(work, paragraphs, args.squad_index)
    print(f"{len(paragraphs)} real paragraphs, {len(sentences)} distinct sentences")
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {"sizes": {}}
    if args.encode_sample:
        results["encode"] = child(["_encode", str(args.encode_sample)])
        print(f"bi-encoder passages/s on this CPU: {results['encode']}")
    for n in [int(s) for s in args.sizes.split(",")]:
        corpus, vectors = make_collection(work, n, paragraphs, sentences, sent_vecs, para_vecs)
        index = work / f"index-{n}"
        print(f"\n== {n:,} paragraphs: building ...", flush=True)
        build = child(["_build", str(corpus), str(index), str(vectors), args.faiss, str(args.chunk_size), "bm25s"])
        print(f"built in {build['seconds']} s, peak RSS {build['peak_rss_mb']} MB; faiss {build['faiss']}", flush=True)
        row = {"passages": n, "build": build, "disk_mb": disk_usage(index)}
        row["serve"] = child(["_serve", str(index), str(squad), reranker, str(args.questions), str(args.old_up_to),
                              str(vectors)])
        print(json.dumps(row["serve"], indent=1), flush=True)
        if args.add:
            extra_corpus, extra_vectors = make_collection(work, args.add, [], sentences, sent_vecs, para_vecs, seed=n + 1,
                                                          name=f"add-{args.add}-to-{n}")
            row["add"] = child(["_add", str(index), str(extra_corpus), str(extra_vectors)])
            row["add"]["share_of_build"] = round(row["add"]["seconds"] / build["seconds"], 3)
            print(f"added {row['add']['passages']} passages in {row['add']['seconds']} s "
                  f"({row['add']['share_of_build']:.1%} of the build)", flush=True)
        results["sizes"][str(n)] = row
        write_json(args.out, results)
        shutil.rmtree(index, ignore_errors=True) if os.environ.get("SCALE_CLEANUP") else None
    rows = [results["sizes"][k] for k in sorted(results["sizes"], key=int)]
    if args.plot:
        plot(rows, Path(args.plot))
    print("\n| paragraphs | build s | build peak MB | disk MB | open s | serving RSS MB | BM25 p50/p95 ms | "
          "bm25s direct p50 | dense p50/p95 ms | encode p50 | hybrid p50/p95 ms | rank-bm25 p50 ms | add 10k s |")
    print("|---" * 13 + "|")
    for r in rows:
        s, lat = r["serve"], r["serve"]["latency_ms"]
        old = s.get("rank_bm25", {}).get("latency_ms", {}).get("p50", "-")
        print(f"| {r['passages']:,} | {r['build']['seconds']} | {r['build']['peak_rss_mb']} | {sum(r['disk_mb'].values()):.0f} | "
              f"{s['open_s']} | {s['serving_rss_mb']} | {lat['bm25']['p50']}/{lat['bm25']['p95']} | {lat['bm25s_direct']['p50']} | "
              f"{lat['dense_search']['p50']}/{lat['dense_search']['p95']} | {lat['encode']['p50']} | "
              f"{lat['hybrid']['p50']}/{lat['hybrid']['p95']} | {old} | {r.get('add', {}).get('seconds', '-')} |")


if __name__ == "__main__":
    main()
