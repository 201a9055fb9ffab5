"""Crash test of ``qa-search build --add``: kill it at random points, check the index every time.

Builds a small index from one part of a JSON Lines corpus (or ``--corpus`` split in two), then
``--runs`` (20) times: copies it, starts ``qa-search build --add`` with the other part into the copy,
SIGKILLs it after a random delay (uniform over the measured duration of an uninterrupted add), and
checks that the index opens (``SearchIndex.load``) and is either the old one or the new one, whole:
exactly the old passages, or the old plus every added passage, never a mix, nothing lost. Prints one
line per run and a summary table, writes JSON, exits 1 on any failure.

Half the kills fall anywhere in the run, half in its last half (where the new version is written
and published), so the short publishing steps are reached too. A kill may land before the write
(old index), after the manifest switch (new index), or in between (old index, an orphaned version
directory that the next writer removes); "missing" or "BROKEN" would be a failure.

    nice -n 10 python benchmarks/crash_add.py --corpus ../shared/data/dev-v1.1.json --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from pipeline.files import write_json  # noqa: E402


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.apps.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def split_corpus(squad: Path, out: Path, articles: int) -> tuple[Path, Path]:
    """Two JSON Lines files of SQuAD paragraphs: the first ``articles`` articles, then the next ``articles``."""
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    parts = []
    for n, chosen in enumerate((data[:articles], data[articles: 2 * articles])):
        path = out / f"part{n}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for article in chosen:
                for i, p in enumerate(article["paragraphs"]):
                    fh.write(json.dumps({"id": f"{article['title']}#{i}", "title": article["title"],
                                         "text": p["context"]}) + "\n")
        parts.append(path)
    return parts[0], parts[1]


def passage_ids(index: Path) -> list[str] | str:
    """The index's passage ids, or why it does not open."""
    probe = ("import json, sys\nfrom pipeline.index import SearchIndex\n"
             "idx = SearchIndex.load(sys.argv[1])\nprint(json.dumps([p.id for p in idx.passages]))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(index)], capture_output=True, text=True, env=env())
    if done.returncode:
        return (done.stderr.strip().splitlines() or ["?"])[-1][:200]
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(SHARED / "data" / "dev-v1.1.json"), help="SQuAD JSON to split")
    parser.add_argument("--articles", type=int, default=2, help="articles in each part (default 2)")
    parser.add_argument("--bi-encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/crash_add.json")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="crash-add-"))
    try:
        first, second = split_corpus(Path(args.corpus), work, args.articles)
        base = work / "base"
        subprocess.run(cli("build", "--corpus", str(first), "--index", str(base), "--bi-encoder", args.bi_encoder,
                           "-q"), check=True, env=env(), cwd=REPO)
        old = passage_ids(base)
        # One uninterrupted add: the expected new index and the time span to kill within.
        full = work / "full"
        shutil.copytree(base, full)
        started = time.perf_counter()
        subprocess.run(cli("build", "--index", str(full), "--add", str(second), "-q"), check=True, env=env(), cwd=REPO)
        span = time.perf_counter() - started
        new = passage_ids(full)
        assert isinstance(old, list) and isinstance(new, list) and len(new) > len(old)
        rows = []
        for run in range(args.runs):
            target = work / f"run{run}" / "index"
            target.parent.mkdir()
            shutil.copytree(base, target)
            delay = rng.uniform(0.0, span) if run % 2 == 0 else rng.uniform(0.5 * span, 1.02 * span)
            proc = subprocess.Popen(cli("build", "--index", str(target), "--add", str(second), "-q"), env=env(),
                                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            found = passage_ids(target) if target.exists() else "missing: no index directory"
            state = "old" if found == old else "new" if found == new else "BROKEN"
            leftovers = sorted(p.name for p in target.parent.iterdir() if p.name != "index")
            rows.append({"run": run, "kill_after_s": round(delay, 2), "killed": killed, "state": state,
                         "detail": found if isinstance(found, str) else f"{len(found)} passages",
                         "leftovers": leftovers})
            print(f"run {run:2d}: kill after {delay:5.2f} s ({'killed' if killed else 'had finished'}): {state}"
                  f"{'' if state != 'BROKEN' else ' - ' + rows[-1]['detail']}"
                  f"{' leftovers ' + ', '.join(leftovers) if leftovers else ''}")
        counts = {s: sum(r["state"] == s for r in rows) for s in ("old", "new", "BROKEN")}
        print(f"\n{args.runs} kills over {span:.1f} s of `build --add` ({len(old)} -> {len(new)} passages): "
              f"old {counts['old']}, new {counts['new']}, broken {counts['BROKEN']}")
        out = write_json(args.out, {"benchmark": "crash_add", "span_s": span, "old_passages": len(old),
                                    "new_passages": len(new), "counts": counts, "runs": rows})
        print(f"wrote {out}")
        return 1 if counts["BROKEN"] else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
