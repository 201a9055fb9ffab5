"""Write an evaluation's figures: a Markdown report, ``metrics.json`` and a PNG plot.

Example::

    >>> from pipeline.eval.report import markdown_report, write_outputs   # doctest: +SKIP
    >>> print(markdown_report(result))                                    # doctest: +SKIP
    >>> write_outputs(result, "eval-out/heldout")                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.eval.evaluation import METRICS, RECALL_KS, EvalResult

VERSIONED = (
    "qa-search", "torch", "transformers", "sentence-transformers", "faiss-cpu", "rank-bm25", "ranx", "scikit-learn",
    "torchmetrics",
)  # fmt: skip


def versions() -> dict[str, str | None]:
    """Python and the installed versions of the packages the figures depend on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _ece(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown_report(result: EvalResult) -> str:
    """The figures as Markdown tables (percentages), with the settings that made them."""
    cfg = result.config
    lines = [
        "## Retrieval and reranking",
        "",
        f"{cfg.get('answerable_questions')} questions (articles {cfg.get('articles') or 'all'} of "
        f"`{cfg.get('questions_file')}`"
        + (f", sample of {cfg['sample']} with seed {cfg.get('seed')}" if cfg.get("sample") else "")
        + f"); index `{cfg.get('index')}`"
        + (f"; reranker `{cfg.get('reranker')}` over the hybrid top {cfg.get('candidates')}" if cfg.get("candidates") else "")
        + ". Figures in %.",
        "",
    ]
    header = ["mode"] + [m.replace("recall", "R").replace("mrr", "MRR").replace("ndcg", "nDCG") for m in METRICS]
    rows = [[mode] + [_pct(scores[m]) for m in METRICS] for mode, scores in result.modes.items()]
    lines += _table(header, rows)
    if cfg.get("missing_gold"):
        lines += ["", f"{cfg['missing_gold']} question(s) were skipped: their gold paragraph is not in the index."]
    ans = result.answerability
    if ans:
        lines += ["", "## Answerability (the reranker's top paragraph)", ""]
        rows = [
            ["questions", str(ans["questions"])],
            ["top paragraph is the gold one", str(ans["top_is_gold"])],
            [f"flagged answerable (probability >= {ans['threshold']})", str(ans["flagged"])],
            ["precision of the flag", _pct(ans["precision"])],
            ["recall of the flag", _pct(ans["recall"])],
            ["F1", _pct(ans["f1"])],
            ["answered correctly (flagged gold / answerable questions)", _pct(ans["answered_correctly"])],
            ["best threshold (max F1)", "-" if ans["best_threshold"] is None else f"{ans['best_threshold']:.3f}"],
            ["F1 / precision / recall there", " / ".join(_pct(ans[k]) for k in ("best_f1", "best_precision", "best_recall"))],
        ]
        if ans.get("unanswerable_questions"):
            rows += [
                ["unanswerable questions (SQuAD v2.0)", str(ans["unanswerable_questions"])],
                ["false-answer rate", _pct(ans["false_answer_rate"])],
                ["AUROC answerable vs unanswerable", "-" if ans["auroc"] is None else f"{ans['auroc']:.4f}"],
            ]
        lines += _table(["figure", "value"], rows)
    rel = result.reliability
    if rel:
        lines += ["", "## Reliability of Hit.probability (shown hits of answerable questions; label: the gold paragraph)", "",
                  f"{rel['hits']} hits, {rel['bins_count']} bins. Expected calibration error: all shown "
                  f"{_ece(rel['ece_shown'])}, first three {_ece(rel['ece_top3'])}, first hit {_ece(rel['ece_first'])}.", ""]
        rows = [[f"{b['low']:.1f}-{b['high']:.1f}", str(b["hits"]), f"{b['mean_probability']:.3f}", f"{b['gold_share']:.3f}"]
                for b in rel["bins"] if b["hits"]]
        lines += _table(["probability", "hits", "mean probability", "share that is the gold paragraph"], rows)
    if result.reader:
        lines += ["", "## Reader (exact match / F1, official SQuAD normalisation)", ""]
        rows = [
            [name, _pct(fig["exact_match"]), _pct(fig["f1"]), str(fig["questions"])]
            for name, fig in result.reader.items()
            if isinstance(fig, dict) and "exact_match" in fig
        ]
        lines += _table(["setting", "EM", "F1", "questions"], rows)
        if result.reader.get("end_to_end_to_oracle_f1") is not None:
            lines += ["", f"End-to-end / oracle F1: {100 * result.reader['end_to_end_to_oracle_f1']:.1f}% "
                      "(an abstention counts as a wrong answer)"]
        if result.reader.get("best_candidate_to_oracle_f1") is not None:
            lines += ["", f"Best candidate / oracle F1: {100 * result.reader['best_candidate_to_oracle_f1']:.1f}% "
                      "(the answer with abstention off: answer selection alone)"]
        answers = result.reader.get("answers") or {}
        if answers:
            lines += ["", "## Answers and abstention (official SQuAD v2.0 rules)", ""]
            v2 = answers["v2"]
            rows = [
                ["answerability threshold (the policy's, or abstain_below)", "-" if answers["threshold"] is None else f"{answers['threshold']:.3f}"],
                ["recall: answerable questions with an answer", _pct(answers["recall"])],
                ["false-answer rate: unanswerable questions with an answer", _pct(answers["false_answer_rate"])],
                ["AUROC of answerability", "-" if answers["auroc"] is None else f"{answers['auroc']:.4f}"],
                ["EM / F1 (all)", f"{v2['exact']:.2f} / {v2['f1']:.2f}"],
            ]
            for part in ("HasAns", "NoAns"):
                if f"{part}_total" in v2:
                    rows.append([f"{part} EM / F1 ({v2[f'{part}_total']} questions)",
                                 f"{v2[f'{part}_exact']:.2f} / {v2[f'{part}_f1']:.2f}"])
            lines += _table(["figure", "value"], rows)
    return "\n".join(lines) + "\n"


def plot(result: EvalResult, path: Path) -> Path:
    """Recall@k per mode and the answerability precision-recall curve, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, scores in result.modes.items():
        left.plot(RECALL_KS, [100 * scores[f"recall@{k}"] for k in RECALL_KS], marker="o", label=mode)
    left.set_xscale("log")
    left.set_xticks(RECALL_KS, [str(k) for k in RECALL_KS])
    left.set_xlabel("k")
    left.set_ylabel("Recall@k (%)")
    left.set_title("Gold paragraph in the top k")
    left.grid(True, alpha=0.3)
    left.legend()
    if result.pr_curve.get("precision"):
        right.plot(result.pr_curve["recall"], result.pr_curve["precision"])
        ans = result.answerability or {}
        if ans.get("recall") is not None:
            right.plot([ans["recall"]], [ans["precision"]], "o", label=f"threshold {ans['threshold']}")
        if ans.get("best_threshold") is not None:
            right.plot([ans["best_recall"]], [ans["best_precision"]], "s", label=f"best F1 at {ans['best_threshold']:.2f}")
        right.legend()
        right.set_title("Answerable flag on the top paragraph")
    else:
        right.text(0.5, 0.5, "no reranker run", ha="center", va="center")
    right.set_xlabel("recall")
    right.set_ylabel("precision")
    right.set_xlim(0, 1.02)
    right.set_ylim(0, 1.02)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``metrics.json`` and ``plot.png`` in ``out_dir`` (created), and ``answers.jsonl``.

    ``answers.jsonl`` (when the rerank mode ran) holds one line per question: its
    gold paragraph and that paragraph's place, the first hit, and with a reader the
    answer, the best candidate, the answerability and why the search abstained:
    what a figure of ``metrics.json`` is made of, question by question.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "metrics": out / "metrics.json", "plot": out / "plot.png"}
    paths["report"].write_text(markdown_report(result), encoding="utf-8")
    paths["metrics"].write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(result, paths["plot"])
    if result.questions:
        paths["answers"] = out / "answers.jsonl"
        paths["answers"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.questions),
                                    encoding="utf-8")
    return paths


def add_run_config(result: EvalResult, **settings: Any) -> EvalResult:
    """``settings`` and the package versions merged into ``result.config``."""
    result.config.update(settings)
    result.config["versions"] = versions()
    return result
