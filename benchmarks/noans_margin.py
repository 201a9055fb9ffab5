"""Does a trained no-answer reader's margin help abstention? Out-of-fold margins added to the answer policy.

For every question of a tune v2.0 answers collection (benchmarks/answers_collect.py)
whose article the no-answer reader held out (``--reader-articles``, the articles of
its training card's evaluation split), the reader reads the paragraphs the shipped
answer policy reads (the first ``paragraphs`` hits) and gives its null-vs-best-span
margin (the best span's score relative to the null score, the highest over the
paragraphs read). Then the abstention model is cross-validated, grouped by article,
on those questions alone: with the shipped features, and with the margin added.
Pooled out-of-fold AUROC and the false-answer rate where 85% of answerable questions
keep an answer, for both; and the margin's own AUROC. The AUROCs and the gain
come with 95% intervals over the articles resampled (the gain's on the same
resampled articles for both). Questions of articles the reader trained on are
left out (their margin would be a trained-on figure).

Repeat ``--reader`` and ``--reader-articles`` (in the same order) to pool fold
readers: each reads the questions of the articles it held out, and every question
is read by exactly one of them.

    PYTHONPATH=$PWD python benchmarks/noans_margin.py --collection results/answers-v2-tune.jsonl \\
        --reader models/noans-reader-2ep-fold2 --reader-articles 1,3,4,5,10,11,13,14,16,20,21 \\
        --squad ../shared/data/dev-v1.1.json --out benchmarks/results/noans_margin.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from answers_fit import (  # noqa: E402
    KEEP,
    article_interval,
    auroc_on,
    false_answers_at_keep,
    features_of,
    fit,
    fold_features,
    load,
    sentence_similarity_of,
)

from pipeline.eval.questions import parse_articles  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.index.search_index import SearchIndex  # noqa: E402
from pipeline.models.encoder import BiEncoder  # noqa: E402
from pipeline.read.evidence import LexicalEvidence  # noqa: E402
from pipeline.read.policy import AnswerPolicy  # noqa: E402
from pipeline.read.reader import Reader  # noqa: E402


def margins(reader: Reader, records: list[dict], paragraphs: int) -> np.ndarray:
    """The reader's best span score relative to its null score, the highest over the paragraphs read."""
    pairs, owner = [], []
    for i, r in enumerate(records):
        for hit in r["hits"][:paragraphs]:
            pairs.append((r["question"], hit["text"]))
            owner.append(i)
    best = np.full(len(records), -30.0)
    for i, reading in zip(owner, reader.spans(pairs)):
        if reading.best is not None:
            best[i] = max(best[i], float(reading.best.score))
    return best


def out_of_fold(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, questions: list[str],
                names: tuple[str, ...]) -> np.ndarray:
    """Each question's answerability from a model fitted on the other folds' articles (``names``: X's columns)."""
    from sklearn.model_selection import GroupKFold

    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=folds).split(X, y, groups):
        X_train, X_test = fold_features(X, y, groups, questions, names, train, test, folds)
        scaler, model = fit(X_train, y[train])
        scores[test] = model.predict_proba(scaler.transform(X_test))[:, 1]
    return scores


def summary(scores: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """Pooled AUROC with its interval over resampled articles, and the false-answer rate at KEEP recall."""
    everything = np.arange(len(y))
    return {"auroc": auroc_on(y, scores, everything),
            "auroc_interval": article_interval(lambda idx: auroc_on(y, scores, idx), groups),
            "false_answer_rate_at_keep": false_answers_at_keep(y, scores, everything)}


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", required=True, help="answers_collect.py output on dev-v2.0-tune.json")
    parser.add_argument("--reader", required=True, action="append",
                        help="a no-answer reader (qa-search train reader); repeat for fold readers")
    parser.add_argument("--reader-articles", required=True, action="append",
                        help="the SQuAD articles the reader held out, e.g. 1,3-5 (once per --reader, in its order)")
    parser.add_argument("--squad", required=True,
                        help="the SQuAD file whose article numbers --reader-articles uses, to name the articles")
    parser.add_argument("--index", default=str(REPO / "indexes/squad-dev"),
                        help="the index the collection was made on (its BM25 document frequencies; default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    if len(args.reader) != len(args.reader_articles):
        parser.error(f"{len(args.reader)} --reader but {len(args.reader_articles)} --reader-articles: give one per reader")
    titles = [a["title"] for a in json.loads(Path(args.squad).read_text(encoding="utf-8"))["data"]]
    held_out = [{titles[i] for i in parse_articles(articles)} for articles in args.reader_articles]
    for (i, a), (j, b) in itertools.combinations(enumerate(held_out), 2):
        if a & b:
            parser.error(f"readers {i + 1} and {j + 1} both held out {sorted(a & b)}: each question needs one reader")
    collection = load(args.collection)
    policy = AnswerPolicy.load(None)
    records, parts = [], []
    for path, titles_out in zip(args.reader, held_out):
        mine = [r for r in collection if r["title"] in titles_out]
        if not mine:
            parser.error(f"no question of the collection is in the articles {path} held out")
        reader = Reader.load(path)
        if not reader.allow_no_answer:
            parser.error(f"{path} has no null answer: its spans are not relative to a null score")
        records += mine
        parts.append(margins(reader, mine, policy.paragraphs))
    margin = np.concatenate(parts)
    lexical = LexicalEvidence.of_index(SearchIndex.load(args.index).bm25)
    names = tuple(policy.features)
    similarity = None
    if "sentence_similarity" in names:
        similarity = sentence_similarity_of(BiEncoder.load(policy.fitted_for.get("bi_encoder", "all-MiniLM-L6-v2")),
                                            records)
    X, _ = features_of(records, policy, names, lexical, similarity)
    y = np.array([int(r["answerable"]) for r in records])
    groups = np.array([r["title"] for r in records])
    folds = min(args.folds, len(set(groups)))
    out = {"questions": len(records), "answerable": int(y.sum()), "articles": sorted(set(groups)), "folds": folds,
           "margin_auroc": float(roc_auc_score(y, margin))}
    questions = [r["question"] for r in records]
    shipped = out_of_fold(X, y, groups, folds, questions, names)
    with_margin = out_of_fold(np.c_[X, margin], y, groups, folds, questions, names + ("no_answer_margin",))
    out["shipped_features"], out["with_margin"] = summary(shipped, y, groups), summary(with_margin, y, groups)
    # the gain on the same resampled articles (paired): is it more than the sample of articles?
    out["auroc_gain_interval"] = article_interval(
        lambda idx: auroc_on(y, with_margin, idx) - auroc_on(y, shipped, idx), groups)
    print(f"{out['questions']} questions ({out['answerable']} answerable) of {len(out['articles'])} articles the reader "
          f"held out; {folds} folds grouped by article; the margin alone: AUROC {out['margin_auroc']:.3f}\n")
    print(f"| abstention features | pooled AUROC (95% interval, articles resampled) | false answers at {100 * KEEP:.0f}% recall |")
    print("|---|---:|---:|")
    for name, key in (("shipped", "shipped_features"), ("shipped + no-answer reader margin", "with_margin")):
        lo, hi = out[key]["auroc_interval"]
        print(f"| {name} | {out[key]['auroc']:.3f} ({lo:.3f}-{hi:.3f}) | {out[key]['false_answer_rate_at_keep']:.3f} |")
    lo, hi = out["auroc_gain_interval"]
    print(f"\nAUROC gain of the margin, same resampled articles: "
          f"{out['with_margin']['auroc'] - out['shipped_features']['auroc']:+.3f} ({lo:+.3f} to {hi:+.3f})")
    if args.out:
        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
