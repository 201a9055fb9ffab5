"""The web page: ask a question, see which paragraphs of the collection answer it.

Run through the top-level ``app.py``::

    streamlit run app.py                           # indexes/squad-dev, or $QA_SEARCH_INDEX
    streamlit run app.py -- --index indexes/NAME   # another built index

It calls only the public pipeline API (``open_index``, ``load_reranker``, ``load_reader``,
``QAPipeline(...).search``). Indexes and models are loaded once per process and shared by
every visitor and every combination of settings, at most a few of each
(:mod:`pipeline.apps.ui.resources`); a repeated search is answered from a cache
(``st.cache_data``). What visitors may choose is bounded by the operator
(:mod:`pipeline.apps.ui.settings`: models from an allowlist, candidates, results, question
length, searches at once); anything that goes wrong shows one sentence, never a traceback,
and never a server path. Every piece of paragraph text is HTML-escaped before highlights
are added (:mod:`pipeline.apps.ui.highlight`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from pipeline import (
    AnswerPolicy,
    Hit,
    IndexNotFoundError,
    ModelNotFoundError,
    PipelineConfig,
    QAPipeline,
    QASearchError,
    RetrievalMode,
    SearchResult,
)
from pipeline.apps.ui.highlight import escape, escape_markdown, highlight_html
from pipeline.apps.ui.resources import ResourcePool, SearchGate
from pipeline.apps.ui.settings import MAX_MODEL_NAME_CHARS, UISettings
from pipeline.models.resolve import display_name, hide_paths, looks_like_path
from pipeline.qa import load_reader, load_reranker, open_index

logger = logging.getLogger(__name__)

STYLE = Path(__file__).with_name("style.css")
EXAMPLES_FILE = "examples.json"
INDEXES_DIR = Path("indexes")
DEFAULT_INDEX = "indexes/squad-dev"
INDEX_ENV = "QA_SEARCH_INDEX"

#: Example questions for SQuAD v1.1 dev, each shown only when its gold paragraph is in the loaded index.
#: Any other index offers the questions of its own ``examples.json`` (a JSON list of strings), if it has one.
SQUAD_EXAMPLES = {
    "Which NFL team represented the AFC at Super Bowl 50?": "Super_Bowl_50#0",
    "What was Maria Curie the first female recipient of?": "Warsaw#0",
    "In what year was Nikola Tesla born?": "Nikola_Tesla#0",
    "What company owns the American Broadcasting Company?": "American_Broadcasting_Company#0",
    "What is the primary purpose of chloroplasts?": "Chloroplast#0",
}
MAX_EXAMPLES = 8
MODE_LABELS = {"hybrid": "Hybrid", "bm25": "BM25", "dense": "Dense"}
STAGE_LABELS = {"bm25": "BM25", "dense": "dense", "fused": "fused", "rerank": "rerank", "read": "reader span",
                "final": "final"}
TIMING_LABELS = {"bm25": "BM25", "dense": "Dense", "fusion": "Fusion", "rerank": "Rerank", "read": "Reader"}
#: What a visitor may type as a model when the operator allows free text: a Hugging Face id, nothing else.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Shown for anything unexpected; the details go to the server log, never to the visitor.
SOMETHING_WRONG = "Something went wrong on the server; it has been logged. Try again, or try other settings."
BUSY = "The server is busy with other searches; try again in a moment."



# --------------------------------------------------------------------------- settings


def start_index(argv: list[str], env: dict[str, str]) -> str:
    """The index to open first: ``--index`` after ``--`` on the command line, else ``$QA_SEARCH_INDEX``, else the default."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--index")
    args, _ = parser.parse_known_args(argv)
    return args.index or env.get(INDEX_ENV) or DEFAULT_INDEX


def built_indexes() -> list[str]:
    """Index directories (holding a ``manifest.json``) under ``indexes/``; hidden ones (a writer's temporaries) are not."""
    if not INDEXES_DIR.is_dir():
        return []
    return sorted(str(p.parent) for p in INDEXES_DIR.glob("*/manifest.json") if not p.parent.name.startswith("."))


def index_label(index: str) -> str:
    """How the picker shows an index: a path under the working folder as it is, any other by its last part."""
    path = Path(index)
    return index if not path.is_absolute() and ".." not in path.parts and not index.startswith("~") else display_name(index)


def index_stamp(index: str) -> float:
    """Modification time of the index manifest, so a rebuilt index is loaded again."""
    try:
        return (Path(index) / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


# --------------------------------------------------------------------------- cached work


@dataclass
class Shared:
    """The process-wide, bounded parts every session uses (see :mod:`pipeline.apps.ui.resources`)."""

    indexes: ResourcePool
    rerankers: ResourcePool
    readers: ResourcePool
    gate: SearchGate


@st.cache_resource(show_spinner=False)
def shared(ui: UISettings) -> Shared:
    return Shared(
        indexes=ResourcePool("index", ui.max_indexes),
        rerankers=ResourcePool("reranker", ui.max_models),
        readers=ResourcePool("reader", ui.max_models),
        gate=SearchGate(ui.max_searches, ui.busy_wait_s),
    )


def load_pipeline(parts: Shared, defaults: PipelineConfig, index: str, stamp: float,
                  reranker: str | None, reader: str | None) -> QAPipeline:
    """A pipeline over shared parts: the index and each model are loaded once, whatever the toggles."""
    load = defaults.load
    search_index, encoder = parts.indexes.get((index, stamp), lambda: open_index(index, load))
    ranker = None if reranker is None else parts.rerankers.get(
        reranker, lambda: load_reranker(defaults.replace(reranker=reranker).load))
    reading = None if reader is None else parts.readers.get(
        reader, lambda: load_reader(defaults.replace(reader=reader).load))
    return QAPipeline(search_index, encoder=encoder, reranker=ranker, reader=reading, config=defaults)


@st.cache_data(show_spinner=False, max_entries=256)
def run_search(_qa: QAPipeline, pipeline_key: tuple, question: str, settings: tuple) -> SearchResult:
    """One search, cached by pipeline, question and every search setting (``settings``: sorted items)."""
    return _qa.search(question, **dict(settings))


# --------------------------------------------------------------------------- presentation


def display_title(title: str) -> str:
    return (title or "Untitled").replace("_", " ")


def stage_line(hit: Hit) -> str:
    parts = []
    for stage, label in STAGE_LABELS.items():
        if stage in hit.scores:
            rank = hit.ranks.get(stage)
            score = hit.scores[stage]
            parts.append(f"{label} {score:.3g}" + (f" (#{rank})" if rank else ""))
    return " · ".join(parts)


def card_html(hit: Hit, position: int, question: str) -> str:
    """One result card. Every piece of hit text goes through :func:`escape` / :func:`highlight_html`."""
    css, badge = {True: ("qa-yes", "answers"), False: ("qa-no", "does not answer"), None: ("qa-retrieved", "retrieved")}[
        hit.answerable
    ]
    span = (hit.answer.start, hit.answer.end) if hit.answer is not None and hit.answerable is not False else None
    prob = ""
    if hit.probability is not None:
        pct = max(0.0, min(1.0, hit.probability)) * 100
        prob = (
            f'<div class="qa-prob" title="Probability that this paragraph answers the question: the final score calibrated on tune questions where a calibration was fitted for this reranker, else the reranker&#39;s own">'
            f'<div class="qa-bar"><div style="width:{pct:.1f}%"></div></div>'
            f"<span>answer probability <b>{hit.probability:.2f}</b></span></div>"
        )
    return (
        f'<div class="qa-card {css}" data-id="{escape(hit.id)}">'
        f'<div class="qa-head"><span class="qa-rank">#{position}</span>'
        f'<span class="qa-title">{escape(display_title(hit.title))}</span>'
        f'<span class="qa-badge">{badge}</span></div>'
        f"{prob}"
        f'<p class="qa-text">{highlight_html(hit.text, question=question, answer=span)}</p>'
        f'<div class="qa-stages">{escape(stage_line(hit))}</div></div>'
    )


def best_answer_html(result: SearchResult, answer=None, label: str = "Answer") -> str:
    """The best answer (or, with ``answer``, a candidate) with where it comes from and how many paragraphs agree."""
    answer = answer or result.answer
    source = next((h for h in result.hits if h.id == answer.id), None)
    where = f"from {escape(display_title(source.title))}" if source else ""
    if len(answer.support) > 1:
        where += f" and {len(answer.support) - 1} more paragraph{'s' if len(answer.support) > 2 else ''}"
    sure = f" · answerability {result.answerability:.2f}" if result.answerability is not None else ""
    return (
        f'<div class="qa-best"><div class="qa-best-label">{escape(label)}</div>'
        f'<div class="qa-best-text">{escape(answer.text)}</div>'
        f'<div class="qa-best-src">{where} · evidence {answer.score:.2f}{sure}</div></div>'
    )


def show_abstention(result: SearchResult) -> None:
    """Say plainly that no paragraph answers; the best candidate stays one click away."""
    st.warning(f"**No answer.** {result.no_answer_reason}")
    if result.candidate is not None:
        with st.expander("Show the best candidate anyway"):
            st.html(best_answer_html(result, result.candidate, label="Best candidate (not trusted)"))


def timings_html(timings: dict[str, float]) -> str:
    order = [k for k in TIMING_LABELS if k in timings] + sorted(set(timings) - set(TIMING_LABELS) - {"total"})
    rows = [(TIMING_LABELS.get(k, k), timings[k]) for k in order]
    if "total" in timings:
        rows.append(("Total", timings["total"]))
    body = "".join(f"<tr><td>{escape(label)}</td><td>{ms:,.1f} ms</td></tr>" for label, ms in rows)
    return f'<table class="qa-timings">{body}</table>'


def show_collapsed(hits: list[Hit], start: int, question: str, expand_first: bool = False) -> None:
    for offset, hit in enumerate(hits):
        prob = f"{hit.probability:.2f}" if hit.probability is not None else "n/a"
        label = f"Does not answer · {prob} · {escape_markdown(display_title(hit.title))}"
        with st.expander(label, expanded=expand_first and offset == 0):
            st.html(card_html(hit, start + offset, question))


def why_answered(result: SearchResult, policy: AnswerPolicy) -> str | None:
    """What weighed most for and against answering, in words (``None`` when the policy does not abstain)."""
    if not policy.abstains or not result.evidence or result.answerability is None:
        return None
    said = [f"Answerability {result.answerability:.2f}."]
    if pro := policy.weighed_for(result.evidence):
        said.append(f"For it most: {pro}.")
    if con := policy.weighed_against(result.evidence):
        said.append(f"Against it most: {con}.")
    return " ".join(said)


def show_result(result: SearchResult, policy: AnswerPolicy | None = None) -> None:
    """The hits in the pipeline's own order (the CLI's and the API's): answering ones as cards, others collapsed.

    ``policy``: the answer policy the search was decided with; an answer then says what weighed for it.
    """
    question = result.query
    if result.answer is not None:
        st.html(best_answer_html(result))
        why = why_answered(result, policy) if policy is not None else None
        if why:
            with st.expander("Why this answer"):
                st.markdown(escape_markdown(why))
    elif result.no_answer_reason and result.candidate is not None:
        show_abstention(result)
    if result.hits and all(h.answerable is None for h in result.hits):
        st.info("The reranker is off: paragraphs are in retrieval order and not judged as answering or not.")
        for i, hit in enumerate(result.hits, start=1):
            st.html(card_html(hit, i, question))
        return
    n = sum(1 for h in result.hits if h.answerable)
    if n:
        st.markdown(f"**{n} paragraph{'s' if n != 1 else ''} answer{'s' if n == 1 else ''} this question**")
    elif result.answer is None and result.candidate is None:
        st.warning("No paragraph in this collection answers this question.")
        if result.hits:
            st.caption("The closest paragraphs:")
    elif result.hits:  # an answer, or an abstention said above, but no paragraph over the threshold
        st.caption(f"No paragraph reaches the answerable threshold {result.settings.get('threshold', 0.5):.2f}; "
                   "the closest paragraphs:")
    for i, hit in enumerate(result.hits, start=1):
        if hit.answerable:
            st.html(card_html(hit, i, question))
        else:
            show_collapsed([hit], i, question, expand_first=not n and i == 1)


def pick_example() -> None:
    """Pills callback: put the example in the question box and search it."""
    example = st.session_state.get("example")
    if example:
        st.session_state.question = example
        st.session_state.query = example
    st.session_state.example = None


def examples_for(qa: QAPipeline) -> list[str]:
    """Example questions for this index: its own ``examples.json``, else SQuAD dev's whose gold paragraph it holds."""
    own = Path(qa.index.path) / EXAMPLES_FILE
    if own.is_file():
        try:
            listed = json.loads(own.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            listed = None
        if isinstance(listed, list):
            return [q.strip() for q in listed if isinstance(q, str) and q.strip()][:MAX_EXAMPLES]
    if qa.index.manifest.corpus.get("format") != "squad":
        return []
    # One indexed look-up per example (not a pass over every passage id: an index may hold millions).
    return [q for q, gold in SQUAD_EXAMPLES.items() if qa.index.passages.text_of(gold) is not None]


def topics_for(qa: QAPipeline, limit: int = 6) -> list[str]:
    seen: dict[str, None] = {}
    for passage in qa.index.passages:
        seen.setdefault(display_title(passage.title), None)
        if len(seen) >= limit:
            break
    return list(seen)


def show_missing_index(index: str, exc: QASearchError) -> None:
    st.error(escape_markdown(str(exc)))
    if Path(index) == Path(DEFAULT_INDEX):
        st.markdown("Build the SQuAD v1.1 dev index (a few minutes on a CPU):")
        st.code(
            "qa-search data fetch squad-dev\nqa-search build --corpus data/dev-v1.1.json --index indexes/squad-dev",
            language="bash",
        )
    else:
        st.markdown("Build an index from your corpus (SQuAD JSON, JSON Lines, a folder of .txt/.md files):")
        st.code(f"qa-search build --corpus PATH --index {index}", language="bash")
    st.caption("Or pick another built index in the sidebar.")


# --------------------------------------------------------------------------- page


def model_choice(label: str, key: str, allowed: tuple[str, ...], ui: UISettings, disabled: bool) -> str | None:
    """A model from the operator's list (shown by display name), or, when allowed, a typed Hugging Face id."""
    choice = st.selectbox(label, allowed, format_func=display_name, key=key, disabled=disabled) if allowed else None
    if ui.free_text:
        typed = st.text_input(f"Other {label.lower()} (Hugging Face id)", key=f"{key}_free", disabled=disabled,
                              max_chars=MAX_MODEL_NAME_CHARS, placeholder="org/model").strip()
        if typed:
            if looks_like_path(typed) or not HUB_ID.fullmatch(typed):
                st.caption("Only a Hugging Face model id (org/name) can be typed here.")
            else:
                choice = typed
    return choice


def abstention_control(qa: QAPipeline, search: dict) -> None:
    """A sidebar slider for the answerability under which a search abstains (``abstain_below``), when it can abstain.

    It starts where the pipeline's searches abstain (``QA_SEARCH_ABSTAIN_BELOW``, else
    the answer policy's threshold; to two places) and changes ``search`` only when
    moved: lower keeps more answers and gives more false ones.
    """
    policy = qa.answer_policy
    if qa.reader is None or not search.get("read") or not policy.abstains:
        return
    default = qa.settings.abstain_below
    start = round(float(policy.threshold if default is None else default), 2)
    value = st.sidebar.slider("Abstain below answerability", 0.0, 1.0, start, 0.01, key="abstain_below",
                              help="The answer is withheld (the best candidate one click away) when the search's "
                              f"answerability is below this (the answer policy's threshold: {policy.threshold:.2f}); "
                              "lower keeps more answers and gives more false ones.")
    if round(float(value), 2) != start:  # the browser's value, bounded as every other setting
        search["abstain_below"] = min(max(float(value), 0.0), 1.0)
    elif default is not None:  # the operator's, said in the settings, so that run_search's cache key holds it
        search["abstain_below"] = default


def sidebar(defaults: PipelineConfig, ui: UISettings, first_index: str) -> dict:
    """The controls; returns the chosen index, models and search settings (bounded by ``ui``)."""
    with st.sidebar:
        st.header("Settings")
        options = built_indexes()
        if first_index not in options:
            options.insert(0, first_index)
        index = st.selectbox("Index", options, index=options.index(first_index), key="index", format_func=index_label)
        mode = st.radio(
            "Retrieval", [m.value for m in RetrievalMode], index=[m.value for m in RetrievalMode].index(defaults.search.mode.value),
            format_func=MODE_LABELS.get, horizontal=True, key="mode",
        )
        most = max(ui.max_candidates, 5)
        candidates = st.slider("Candidates to rerank", 5, most, min(max(defaults.search.candidates, 5), most), 5, key="candidates")
        top_k = st.slider("Results", 1, max(ui.max_top_k, 2), min(max(defaults.search.top_k, 1), ui.max_top_k), key="top_k")
        threshold = st.slider("Answerable threshold", 0.0, 1.0, float(defaults.search.threshold), 0.05, key="threshold")
        rerank = st.toggle("Rerank with a cross-encoder", value=defaults.load.rerank, key="rerank")
        reranker = model_choice("Reranker", "reranker", ui.rerankers, ui, disabled=not rerank)
        read = st.toggle("Mark the answer (reader)", value=defaults.load.read, key="read")
        reader = model_choice("Reader", "reader", ui.readers, ui, disabled=not read)
        st.subheader("Last search")
        latency = st.empty()
        latency.caption("No search yet.")
    reranker = reranker if rerank and reranker else None
    reader = reader if read and reader else None
    # The widgets' ranges are the browser's business; these bounds hold whatever a session sends.
    search = {"mode": mode, "candidates": max(1, min(int(candidates), ui.max_candidates)),
              "top_k": max(1, min(int(top_k), ui.max_top_k)), "threshold": min(max(float(threshold), 0.0), 1.0),
              "rerank": bool(reranker), "read": bool(reader),
              "max_query_chars": min(ui.max_question_chars, defaults.search.max_query_chars)}
    return {
        "index": index,
        "reranker": reranker,
        "reader": reader,
        "search": search,
        "latency": latency,
    }


def main() -> None:
    st.set_page_config(page_title="qa-search", page_icon="🔎", layout="centered")
    st.html(f"<style>{STYLE.read_text(encoding='utf-8')}</style>")
    st.title("qa-search")
    st.caption("Ask a question: see which paragraphs of the collection answer it.")
    try:
        defaults = PipelineConfig.from_env()
        ui = UISettings.from_env(defaults=defaults)
    except QASearchError as exc:
        st.error(escape_markdown(f"Bad QA_SEARCH_* setting: {exc}"))
        st.stop()
    parts = shared(ui)
    choice = sidebar(defaults, ui, start_index(sys.argv[1:], dict(os.environ)))
    index = choice["index"]
    key = (index, index_stamp(index), choice["reranker"], choice["reader"])
    try:
        with st.spinner(escape_markdown(f"Loading {Path(index).name} and its models (once for every visitor)…")):
            qa = load_pipeline(parts, defaults, *key)
    except IndexNotFoundError as exc:
        show_missing_index(index, exc)
        st.stop()
    except ModelNotFoundError as exc:
        logger.warning("A model could not be loaded: %s", exc)
        names = [display_name(choice[stage]) for stage in ("reranker", "reader") if choice[stage]]
        st.error(escape_markdown(f"A model is not available on this server ({', '.join(names)})."))
        st.caption("Pick another model in the sidebar, or switch that stage off.")
        st.stop()
    except QASearchError as exc:
        logger.warning("Loading failed: %s", exc)
        st.error(escape_markdown(public_message(exc)))
        st.stop()
    except Exception:  # noqa: BLE001 - a visitor sees one sentence; the operator the traceback in the log
        logger.exception("Loading %s with reranker %s and reader %s failed", index, choice["reranker"], choice["reader"])
        st.error(SOMETHING_WRONG)
        st.stop()

    manifest = qa.index.manifest
    models = [f"bi-encoder {display_name(manifest.bi_encoder['name'])}"]
    models += [f"{stage} {display_name(choice[stage])}" for stage in ("reranker", "reader") if choice[stage]]
    st.caption(escape_markdown(f"{Path(index).name} · {manifest.passages:,} passages · " + " · ".join(models)))
    abstention_control(qa, choice["search"])

    with st.form("ask", border=False):
        st.text_input("Question", key="question", max_chars=choice["search"]["max_query_chars"],
                      placeholder="Ask a question about this collection…")
        submitted = st.form_submit_button("Search", type="primary")
    if submitted:
        st.session_state.query = st.session_state.question
    examples = examples_for(qa)
    if examples:
        st.pills("Examples", examples, key="example", on_change=pick_example)
    else:
        st.caption(escape_markdown("In this collection: " + ", ".join(topics_for(qa)) + ", …"))

    query = st.session_state.get("query")
    if query is None:
        return
    settings = tuple(sorted(choice["search"].items()))
    if not parts.gate.enter():
        st.warning(BUSY)
        return
    try:
        with st.spinner("Searching…"):
            result = run_search(qa, key, query, settings)
    except QASearchError as exc:
        st.warning(escape_markdown(public_message(exc)))
        return
    except Exception:  # noqa: BLE001 - one sentence for the visitor, the traceback for the operator
        logger.exception("Search failed (index %s, settings %s)", index, settings)
        st.error(SOMETHING_WRONG)
        return
    finally:
        parts.gate.leave()
    choice["latency"].html(timings_html(result.timings))
    st.divider()
    show_result(result, qa.answer_policy)


def public_message(exc: QASearchError) -> str:
    """The error's sentence with any server path cut to its last part."""
    return hide_paths(str(exc))
