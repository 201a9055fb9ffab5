"""Kill a chunked ``qa-search build`` midway, run it again, and check it ends with the same index.

Starts ``qa-search build --corpus C --vectors V --index OUT --chunk-size N`` (the settings of
benchmarks/scale.py's builds: paragraphs whole, vectors trusted), SIGKILLs it once its
``build-state.json`` records ``--kill-after-chunks`` finished chunks, runs the same command again
(it resumes), and compares the result with ``--reference`` (an index, or a version directory of
one, built from the same corpus without interruption): the passage rows, every BM25 file and the
FAISS file byte for byte, and the manifest's counts and FAISS settings. Prints a table, writes
JSON, exits 1 on any difference.

    PYTHONPATH=. python benchmarks/kill_resume.py --corpus /work/scale/corpus-1000000.jsonl \\
        --vectors /work/scale/vectors-1000000.npy --reference /work/scale/index-1000000 \\
        --chunk-size 100000 --kill-after-chunks 5 --out benchmarks/results/kill_resume-1m.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pipeline.files import write_json


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def data_dir(index: Path) -> Path:
    """The directory holding an index's files (the version its manifest names, or the index itself)."""
    manifest = json.loads((index / "manifest.json").read_text())
    directory = manifest.get("directory") or "."
    return index if directory == "." else index / directory


def rows_digest(store: Path) -> tuple[int, str]:
    digest, n = hashlib.sha256(), 0
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        for row in db.execute("SELECT * FROM passages ORDER BY pos"):
            digest.update(repr(row).encode())
            n += 1
    return n, digest.hexdigest()


def fingerprint(index: Path) -> dict:
    data = data_dir(index)
    manifest = json.loads((index / "manifest.json").read_text())
    keep = ("kind", "nlist", "nprobe", "k_factor", "efSearch", "recall_at_10")
    rows, digest = rows_digest(data / "passages.sqlite")
    return {
        "passages": manifest["passages"],
        "faiss": {k: manifest["faiss"].get(k) for k in keep},
        "passage_rows": rows,
        "passage_rows_sha256": digest,
        "files": {str(p.relative_to(data)): sha256(p) for p in sorted((data / "bm25").iterdir())}
        | {"dense.faiss": sha256(data / "dense.faiss")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--vectors", required=True)
    parser.add_argument("--reference", required=True, help="an uninterrupted build of the same corpus")
    parser.add_argument("--index", default="/tmp/qa-search-kill-resume/index")
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--kill-after-chunks", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/kill_resume.json")
    args = parser.parse_args()

    index = Path(args.index)
    command = [sys.executable, "-m", "pipeline.apps.cli", "build", "--corpus", args.corpus, "--vectors", args.vectors,
               "--vectors-check", "0", "--index", str(index), "--chunk-size", str(args.chunk_size),
               "--window-tokens", "0", "--window-overlap", "0", "--faiss", "auto", "--bm25-engine", "bm25s", "-q"]
    state = index.with_name(f".{index.name}.building") / "build-state.json"
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    done = 0
    while proc.poll() is None:
        try:
            done = json.loads(state.read_text()).get("chunks", 0)
        except (OSError, ValueError):
            done = 0
        if done >= args.kill_after_chunks:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    killed_at = round(time.perf_counter() - started, 1)
    if proc.returncode != -signal.SIGKILL:
        sys.exit(f"the build ended (exit {proc.returncode}) before it could be killed after {args.kill_after_chunks} chunks")
    print(f"killed after {done} finished chunks ({killed_at} s); running the same command again", flush=True)
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    resumed_s = round(time.perf_counter() - t0, 1)
    manifest = json.loads((index / "manifest.json").read_text())
    mine, reference = fingerprint(index), fingerprint(Path(args.reference))
    differences = sorted(
        key for key in set(mine) | set(reference) if mine.get(key) != reference.get(key)
    )
    files = sorted(k for k in set(mine["files"]) | set(reference["files"]) if mine["files"].get(k) != reference["files"].get(k))
    result = {
        "killed_after_chunks": done, "killed_at_s": killed_at, "resume_s": resumed_s,
        "resumed_after_chunk": manifest["build"].get("resumed_after_chunk"),
        "same_index": not differences, "differences": differences, "files_differing": files,
        "passages": mine["passages"], "faiss": mine["faiss"], "reference_faiss": reference["faiss"],
    }
    write_json(args.out, result)
    print("| killed after chunk | resumed after chunk | resume run s | passages | same rows | same BM25 files | same FAISS file |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {done} | {result['resumed_after_chunk']} | {resumed_s} | {mine['passages']:,} | "
          f"{mine['passage_rows_sha256'] == reference['passage_rows_sha256']} | "
          f"{not [f for f in files if f != 'dense.faiss']} | {'dense.faiss' not in files} |")
    sys.exit(0 if not differences else 1)


if __name__ == "__main__":
    main()
