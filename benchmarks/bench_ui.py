"""Web UI speed: what the caches buy. Drives app.py with Streamlit's AppTest on one index.

Measures, in one run: the first page load (index + models) against a rerun with the models cached,
and the first search against the same search asked again (answered from the result cache).
Prints a table, writes JSON, reports the ratios (cached / uncached).

    python benchmarks/bench_ui.py --index indexes/squad-dev \\
        --reranker ../shared/models/minilm-l6-qnli-squad-tune --reader ../shared/models/minilm-l6-squad-tune-reader
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.files import write_json  # noqa: E402

QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="indexes/squad-dev")
    parser.add_argument("--reranker", help="reranker name or path (QA_SEARCH_RERANKER)")
    parser.add_argument("--reader", help="reader name or path (QA_SEARCH_READER)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--out", default="benchmarks/results/ui.json")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["QA_SEARCH_INDEX"] = str(Path(args.index).resolve())
    for var, value in (("QA_SEARCH_RERANKER", args.reranker), ("QA_SEARCH_READER", args.reader)):
        if value:
            os.environ[var] = str(Path(value).resolve()) if Path(value).exists() else value
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=900)

    def timed(step) -> float:
        start = time.perf_counter()
        step()
        if at.exception or at.error:
            raise SystemExit(f"the app failed: {[e.value for e in list(at.exception) + list(at.error)]}")
        return time.perf_counter() - start

    def ask() -> None:
        next(b for b in at.button if b.label == "Search").click().run()

    rows = {"first page load": timed(at.run), "page rerun, models cached": timed(at.run)}
    at.text_input(key="question").set_value(args.question)
    rows["first search"] = timed(ask)
    stages = at.sidebar.html[0].value
    rows["same search again"] = timed(ask)
    ratios = {
        "rerun / first load": rows["page rerun, models cached"] / rows["first page load"],
        "repeat / first search": rows["same search again"] / rows["first search"],
    }
    print(f"{'step':<28}{'seconds':>10}")
    for name, seconds in rows.items():
        print(f"{name:<28}{seconds:>10.3f}")
    for name, ratio in ratios.items():
        print(f"{name:<28}{ratio:>10.4f}")
    result = {"index": args.index, "question": args.question, "seconds": rows, "ratios": ratios,
              "sidebar_latency_html": stages, "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    out = write_json(args.out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
