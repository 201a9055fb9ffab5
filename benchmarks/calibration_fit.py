"""Which calibration of the shown hits holds on new articles: three Platt scalings fitted on tune, one chosen there.

Reads answers collections (benchmarks/answers_collect.py: each question's hits in the
blended order with their reranker probability and blended score, and the reader's
spans of the first hits), applies the reader's move as the pipeline does
(:func:`pipeline.rank.reading.read_adjusted`, ``--read-weight``, the first
``--paragraphs`` hits) and fits, by logistic regression on the **tune** collection
(label: the hit is the question's gold paragraph), three calibrations:

* ``reranker``: ``sigmoid(a * logit(reranker probability) + b)`` (what ``--calibration`` does today);
* ``final``: ``sigmoid(a * final score + b)``, the score that orders the hits;
* ``final+first``: ``sigmoid(a * final + c * [first place] + b)``; with ``a, c >= 0`` it never
  gives a hit a lower probability than one shown below it.

For each it prints the tune ECE of all shown hits, of the first three places and of the
first hit (torchmetrics, 10 bins); the one with the lowest worst-of-the-three tune ECE is
chosen, and only then, with ``--heldout``, all three are measured on held-out questions.

``--write FILE`` writes the ``final+first`` calibration as the pipeline reads it
(:class:`pipeline.rank.calibration.FinalCalibration`): the weights above for
searches that read, and the same variant fitted again with ``--read-weight 0``
(no reader's move) for searches that do not. The shipped
``pipeline/rank/final_calibration.json`` was written so, from the stand-ins'
tune collection:

    python benchmarks/calibration_fit.py --tune results/answers-v2-tune.jsonl \\
        --heldout results/answers-v1-heldout.jsonl --out benchmarks/results/calibration_fit.json \\
        --write pipeline/rank/final_calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from answers_fit import read_span_scores  # noqa: E402

from pipeline.config import SearchSettings  # noqa: E402
from pipeline.eval.reliability import calibration_error  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.rank.calibration import FinalCalibration, Platt  # noqa: E402
from pipeline.rank.policy import logit  # noqa: E402
from pipeline.rank.reading import read_adjusted  # noqa: E402

VARIANTS = ("reranker", "final", "final+first")


def shown_hits(path: str, read_weight: float, paragraphs: int) -> dict[str, np.ndarray]:
    """Every shown hit of the answerable questions with a known gold paragraph, in the order after the reader's move."""
    rerank, final, place, label = [], [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if not r.get("answerable") or not r.get("gold"):
            continue
        hits = r["hits"]
        spans, _ = read_span_scores(r, paragraphs)
        moved = read_adjusted([h["scores"]["final"] for h in hits], spans, read_weight)
        for at, i in enumerate(sorted(range(len(hits)), key=lambda i: (-moved[i], i))):
            rerank.append(logit(hits[i]["scores"]["rerank"]))
            final.append(moved[i])
            place.append(at)
            label.append(int(hits[i]["source_id"] == r["gold"]))
    return {"rerank": np.array(rerank), "final": np.array(final), "place": np.array(place), "label": np.array(label)}


def design(hits: dict[str, np.ndarray], variant: str) -> np.ndarray:
    if variant == "reranker":
        return hits["rerank"][:, None]
    if variant == "final":
        return hits["final"][:, None]
    return np.c_[hits["final"], (hits["place"] == 0).astype(float)]


def ece(probs: np.ndarray, labels: np.ndarray) -> float:
    return calibration_error(probs, labels, 10)


def figures(model, hits: dict[str, np.ndarray], variant: str) -> dict[str, float]:
    p = model.predict_proba(design(hits, variant))[:, 1]
    first = hits["place"] == 0
    flagged = p[first] >= 0.5
    gold = hits["label"][first] == 1
    return {"ece_all": ece(p, hits["label"]), "ece_top3": ece(p[hits["place"] < 3], hits["label"][hits["place"] < 3]),
            "ece_first": ece(p[first], hits["label"][first]),
            "first_flag_precision": float(gold[flagged].mean()) if flagged.any() else 0.0,
            "first_flag_recall": float((flagged & gold).sum() / max(gold.sum(), 1))}


def similarity_weight_of(path: str) -> float:
    """The blend's ``similarity_weight`` the collection's final scores were made with (0 before it was recorded)."""
    weights = {json.loads(line).get("similarity_weight", 0.0)
               for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()}
    if len(weights) != 1:
        raise ValueError(f"{path} mixes final scores of similarity weights {sorted(weights)}; collect it again")
    return float(weights.pop())


def platt(model) -> Platt:
    final, first = (float(w) for w in model.coef_[0])
    return Platt({"final": final, "first": first}, float(model.intercept_[0]))


def write_calibration(args: argparse.Namespace, with_reading, hits: int) -> FinalCalibration:
    """The ``final+first`` variant as the pipeline reads it; the no-reading weights fitted here on the unmoved scores."""
    from sklearn.linear_model import LogisticRegression

    unmoved = shown_hits(args.tune, 0.0, args.paragraphs)
    without_reading = LogisticRegression(C=1e4).fit(design(unmoved, "final+first"), unmoved["label"])
    calibration = FinalCalibration(
        reranker=args.reranker, reader=args.reader, rerank_weight=SearchSettings().rerank_weight,
        read_weight=args.read_weight, with_reading=platt(with_reading), without_reading=platt(without_reading),
        read_paragraphs=args.paragraphs, similarity_weight=similarity_weight_of(args.tune),
        fitted={"collection": Path(args.tune).name, "hits": hits, "paragraphs_read": args.paragraphs,
                "label": "the hit is the question's gold paragraph",
                "command": "python benchmarks/calibration_fit.py --write"})
    calibration.save(args.write)
    return calibration


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", required=True)
    parser.add_argument("--heldout")
    parser.add_argument("--read-weight", type=float, default=SearchSettings().read_weight,
                        help="the reader's move (default: the shipped %(default)s)")
    parser.add_argument("--paragraphs", type=int, default=SearchSettings().read_paragraphs,
                        help="hits the reader read and moved (default: the shipped read_paragraphs, %(default)s)")
    parser.add_argument("--out")
    parser.add_argument("--write", metavar="FILE", help="write the final+first calibration the pipeline reads")
    parser.add_argument("--reranker", default="minilm-l6-qnli-squad-tune",
                        help="the reranker the collection was made with (recorded in --write's file)")
    parser.add_argument("--reader", default="minilm-l6-squad-tune-reader",
                        help="the reader the collection was made with (recorded in --write's file)")
    args = parser.parse_args(argv)

    tune = shown_hits(args.tune, args.read_weight, args.paragraphs)
    models, out = {}, {"tune": {}, "heldout": {}}
    print("| variant | weights | tune ECE all / top 3 / first | first hit flagged: precision / recall |")
    print("|---|---|---:|---:|")
    for variant in VARIANTS:
        model = LogisticRegression(C=1e4).fit(design(tune, variant), tune["label"])
        models[variant] = model
        f = figures(model, tune, variant)
        f["weights"] = [float(w) for w in model.coef_[0]] + [float(model.intercept_[0])]
        out["tune"][variant] = f
        print(f"| {variant} | {', '.join(f'{w:+.3f}' for w in f['weights'])} | {f['ece_all']:.3f} / {f['ece_top3']:.3f} / "
              f"{f['ece_first']:.3f} | {f['first_flag_precision']:.3f} / {f['first_flag_recall']:.3f} |")
    chosen = min(VARIANTS, key=lambda v: max(out["tune"][v][k] for k in ("ece_all", "ece_top3", "ece_first")))
    out["chosen"] = chosen
    print(f"\nChosen on tune (lowest worst-of-three ECE): {chosen}")
    if args.heldout:
        held = shown_hits(args.heldout, args.read_weight, args.paragraphs)
        for variant in VARIANTS:
            f = out["heldout"][variant] = figures(models[variant], held, variant)
            print(f"held out, {variant}{' (chosen)' if variant == chosen else ''}: ECE all {f['ece_all']:.3f}, "
                  f"top 3 {f['ece_top3']:.3f}, first {f['ece_first']:.3f}; first hit flagged: precision "
                  f"{f['first_flag_precision']:.3f}, recall {f['first_flag_recall']:.3f}")
    if args.write:
        written = write_calibration(args, models["final+first"], len(tune["label"]))
        print(f"\nWrote {args.write}: with reading {written.with_reading}, without {written.without_reading}")
    if args.out:
        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
