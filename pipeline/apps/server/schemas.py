"""Request and response shapes of the HTTP API, built from the server's limits.

The limits (:class:`~pipeline.apps.server.limits.Limits`) are part of the types:
pydantic enforces them and FastAPI writes them into the OpenAPI schema
(``maxLength``, ``maxItems``, ``maximum``), so the published schema always
states the limits the running server applies.

* ``/v1/search``: the pipeline's own result (:meth:`SearchResult.to_dict`) plus
  an ``answerable`` flag. Response models allow extra fields, so fields the
  pipeline adds later (the reader's ``answer``) flow through unchanged.
* ``/v1/rerank``: the request of the Cohere v1 and Jina rerank APIs; the
  response is the union of both: ``results`` and ``model`` and Jina's
  ``usage.total_tokens``, plus Cohere's ``id`` and ``meta.billed_units.search_units``.
  Long documents are scored in chunks (``max_chunks_per_doc``), each result says how.
* ``/v2/rerank``: Cohere's v2 request (``max_tokens_per_doc``) and response.
* ``/v1/score``: vLLM's ``/score`` shape (``text_1``, ``text_2`` in;
  ``data[].score``, ``usage`` out).
"""

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from pipeline.apps.server.limits import DOCUMENTS_PER_SEARCH_UNIT, Limits
from pipeline.config import RetrievalMode, SearchSettings
from pipeline.results import Answer, BestAnswer

MAX_MODEL_NAME = 300
#: Chunks of one long document /v1/rerank scores: Cohere v1's default, and the most a request may ask for.
DEFAULT_CHUNKS_PER_DOC, MAX_CHUNKS_PER_DOC = 10, 100
#: Tokens of one document /v2/rerank reads: Cohere v2's default, and the most a request may ask for.
DEFAULT_TOKENS_PER_DOC, MAX_TOKENS_PER_DOC = 4096, 100_000


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty or only whitespace")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from exc
    return text


def _text_of(value: Any) -> Any:
    """A Jina/Cohere document object ``{"text": ...}`` becomes its text; anything else is checked as is."""
    if isinstance(value, dict) and "text" in value:
        return value["text"]
    return value


def _as_list(value: Any) -> Any:
    """One text stands for a list of one (vLLM's ``text_1``/``text_2`` accept both)."""
    return [value] if isinstance(value, str) else value


def _text_schema(max_chars: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_chars, "description": description}


@dataclass(frozen=True)
class Schemas:
    """The models one app uses (built by :func:`build_schemas`)."""

    SearchRequest: type[BaseModel]
    SearchResponse: type[BaseModel]
    RerankRequest: type[BaseModel]
    RerankResponse: type[BaseModel]
    V2RerankRequest: type[BaseModel]
    V2RerankResponse: type[BaseModel]
    ScoreRequest: type[BaseModel]
    ScoreResponse: type[BaseModel]


def build_schemas(limits: Limits) -> Schemas:
    """The request and response models for these limits (one set per app, no global state)."""
    q_chars, d_chars, max_docs = limits.max_query_chars, limits.max_document_chars, limits.max_documents

    QueryText = Annotated[str, Field(min_length=1, max_length=q_chars), AfterValidator(_not_blank)]
    DocText = Annotated[str, Field(min_length=1, max_length=d_chars), AfterValidator(_not_blank)]
    doc_schema = _text_schema(d_chars, f"document text, at most {d_chars:,} characters (max_document_chars)")
    Document = Annotated[
        DocText,
        BeforeValidator(_text_of),
        WithJsonSchema(
            {
                "anyOf": [
                    doc_schema,
                    {"type": "object", "properties": {"text": doc_schema}, "required": ["text"],
                     "description": "a document object (Jina, Cohere v1); only `text` is read"},
                ]
            }
        ),
    ]
    model_field = Field(
        None,
        min_length=1,
        max_length=MAX_MODEL_NAME,
        description="id of a served reranker (see GET /v1/models); omitted: the default one",
    )

    class SearchRequest(BaseModel):
        """A question to answer from the server's index."""

        model_config = ConfigDict(extra="forbid")

        query: QueryText = Field(description=f"the question, at most {q_chars:,} characters (max_query_chars)")
        top_k: int | None = Field(
            None, ge=1, le=limits.max_top_k,
            description=f"hits to return (default: the pipeline's, 10), at most {limits.max_top_k} (max_top_k)",
        )
        candidates: int | None = Field(
            None, ge=1, le=limits.max_candidates,
            description=f"fused candidates the reranker scores (default {SearchSettings().candidates}), at most {limits.max_candidates} "
            "(max_candidates)",
        )
        mode: RetrievalMode | None = Field(None, description="retrieval mode (default hybrid)")
        threshold: float | None = Field(
            None, ge=0.0, le=1.0, allow_inf_nan=False,
            description="probability at which a passage counts as answering (default 0.5)",
        )
        abstain: bool | None = Field(
            None, description="false: always return the best answer, even where the answer policy would abstain",
        )
        abstain_below: float | None = Field(
            None, ge=0.0, le=1.0, allow_inf_nan=False,
            description="answerability under which the search abstains (default: the answer policy's threshold; "
            "lower keeps more answers and gives more false ones)",
        )

    class HitOut(BaseModel):
        """One passage, as the Python API's ``Hit.to_dict()`` gives it."""

        model_config = ConfigDict(extra="allow")
        id: str = Field(description="passage id (`Title#i`, or `Title#i~wN` for the best window of a long paragraph; "
                        "one hit per paragraph)")
        title: str
        text: str
        source_id: str = Field(description="id of the source paragraph the passage came from")
        answerable: bool | None = Field(
            description="probability >= threshold and the search did not abstain; null without a reranker"
        )
        probability: float | None = Field(description="reranker probability (0..1) that the passage answers")
        scores: dict[str, float] = Field(
            description="score of each stage that saw it: bm25, dense (the bi-encoder's similarity; a reranked search "
            "gives it to every hit, also to those the dense list missed, which then have no dense rank), fused, "
            "rerank (the reranker's probability), final (the blended score that orders the hits)"
        )
        ranks: dict[str, int] = Field(
            description="1-based rank at each stage (rerank: by the reranker's probability alone; final: the hit's place)"
        )
        metadata: dict[str, Any] = Field(default_factory=dict)
        answer: Answer | None = Field(None, description="the answer span read from this passage, when a reader runs")

    class SearchResponse(BaseModel):
        model_config = ConfigDict(extra="allow")
        query: str
        answerable: bool | None = Field(
            description="whether any hit answers the question; null when the reranker is off"
        )
        hits: list[HitOut] = Field(description="best first")
        answer: BestAnswer | None = Field(
            None, description="the best answer (its strongest paragraph's span, every supporting paragraph in "
            "support); null when no reader runs or the search abstained (see no_answer_reason)",
        )
        answerability: float | None = Field(
            None, description="fitted probability (0..1) that a paragraph here answers; null without an answer policy"
        )
        no_answer_reason: str | None = Field(None, description="why answer is null, e.g. 'No paragraph here answers this: ...'")
        candidate: BestAnswer | None = Field(
            None, description="the best candidate answer, also when the search abstained (shown on request)"
        )
        evidence: dict[str, float | None] = Field(
            default_factory=dict, description="what answerability was computed from: the answer policy's features "
            "of this search (null: not measured); empty when nothing was read",
        )
        timings: dict[str, float] = Field(description="milliseconds per stage and in total")
        settings: dict[str, Any] = Field(description="the settings that produced the result")

    class RerankRequest(BaseModel):
        """The Cohere v1 / Jina rerank request. Unknown fields (``rank_fields``) are ignored."""

        model_config = ConfigDict(extra="ignore")

        model: str | None = model_field
        query: QueryText = Field(description=f"the query, at most {q_chars:,} characters (max_query_chars)")
        documents: list[Document] = Field(
            min_length=1, max_length=max_docs,
            description=f"texts or {{\"text\": ...}} objects, at most {max_docs:,} (max_documents)",
        )
        top_n: int | None = Field(
            None, ge=1, le=max_docs, description="return only the best top_n (default: all documents)"
        )
        return_documents: bool = Field(False, description="include each document's text in the results")
        max_chunks_per_doc: int = Field(
            DEFAULT_CHUNKS_PER_DOC, ge=1, le=MAX_CHUNKS_PER_DOC,
            description="a document longer than the model reads (with the query) is scored in chunks, at most "
            "this many (Cohere v1's default 10); its score is its best chunk's; the rest is not read (truncated)",
        )

    class V2RerankRequest(BaseModel):
        """The Cohere v2 rerank request (``ClientV2.rerank``). Unknown fields (``priority``) are ignored."""

        model_config = ConfigDict(extra="ignore")

        model: str | None = model_field
        query: QueryText = Field(description=f"the query, at most {q_chars:,} characters (max_query_chars)")
        documents: list[Document] = Field(
            min_length=1, max_length=max_docs, description=f"texts, at most {max_docs:,} (max_documents)",
        )
        top_n: int | None = Field(
            None, ge=1, le=max_docs, description="return only the best top_n (default: all documents)"
        )
        max_tokens_per_doc: int = Field(
            DEFAULT_TOKENS_PER_DOC, ge=1, le=MAX_TOKENS_PER_DOC,
            description="read at most this many tokens of each document (Cohere v2's default 4,096), in chunks "
            "that fit the model; the score is the best chunk's",
        )

    class DocumentOut(BaseModel):
        text: str

    class RerankResult(BaseModel):
        index: int = Field(description="position of the document in the request")
        relevance_score: float = Field(
            description="probability (0..1) that the document answers the query: its best chunk's"
        )
        document: DocumentOut | None = Field(None, description="only with return_documents=true")
        chunks: int | None = Field(None, description="chunks of the document scored with the query")
        query_tokens: int | None = Field(None, description="tokens of the query")
        document_tokens: int | None = Field(None, description="tokens of the whole document")
        truncated: bool | None = Field(
            None, description="true when part of the document (or of a very long query) was not read; null when "
            "the model's tokenizer is not reachable here (a remote reranker), so it cannot be told",
        )

    class Usage(BaseModel):
        total_tokens: int | None = Field(None, description="tokens the model read (pairs truncated to its limit)")
        prompt_tokens: int | None = Field(None, description="same as total_tokens (nothing is generated)")
        completion_tokens: int = Field(0, description="always 0")

    class BilledUnits(BaseModel):
        search_units: int = Field(description=f"one per {DOCUMENTS_PER_SEARCH_UNIT} documents (Cohere's unit)")

    class RerankMeta(BaseModel):
        api_version: dict[str, str]
        billed_units: BilledUnits

    class RerankResponse(BaseModel):
        id: str = Field(description="request id (Cohere)")
        model: str
        results: list[RerankResult] = Field(description="sorted by relevance_score, best first")
        usage: Usage = Field(description="Jina's token usage")
        meta: RerankMeta = Field(description="Cohere's billing metadata")

    class V2RerankResponse(BaseModel):
        id: str = Field(description="request id")
        results: list[RerankResult] = Field(description="sorted by relevance_score, best first")
        meta: RerankMeta = Field(description="Cohere's API version and billing metadata")
        model: str
        usage: Usage = Field(description="tokens read")

    QueryList = Annotated[list[QueryText], Field(min_length=1, max_length=max_docs)]
    DocList = Annotated[list[DocText], Field(min_length=1, max_length=max_docs)]

    def _one_or_many(item: dict[str, Any], what: str) -> dict[str, Any]:
        return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1, "maxItems": max_docs}],
                "description": what}

    class ScoreRequest(BaseModel):
        """vLLM's /score request: one ``text_1`` pairs with every ``text_2``; lists pair element-wise."""

        model_config = ConfigDict(extra="ignore")

        model: str | None = model_field
        text_1: Annotated[
            QueryList,
            BeforeValidator(_as_list),
            WithJsonSchema(_one_or_many(
                _text_schema(q_chars, f"at most {q_chars:,} characters (max_query_chars)"),
                "query side: one text (paired with every text_2) or a list as long as text_2",
            )),
        ]
        text_2: Annotated[
            DocList,
            BeforeValidator(_as_list),
            WithJsonSchema(_one_or_many(
                _text_schema(d_chars, f"at most {d_chars:,} characters (max_document_chars)"),
                f"passage side: at most {max_docs:,} texts (max_documents)",
            )),
        ]

        @model_validator(mode="after")
        def _pairable(self) -> "ScoreRequest":
            if len(self.text_1) not in (1, len(self.text_2)):
                raise ValueError(
                    f"text_1 has {len(self.text_1)} texts and text_2 has {len(self.text_2)}: lists pair "
                    "element-wise, so send as many text_1 as text_2, or a single text_1 for all"
                )
            return self

    class ScoreData(BaseModel):
        index: int = Field(description="position of the pair in the request")
        object: str = "score"
        score: float = Field(description="probability (0..1) that text_2 answers text_1")

    class ScoreResponse(BaseModel):
        id: str
        object: str = "list"
        created: int = Field(description="Unix time")
        model: str
        data: list[ScoreData] = Field(description="in request order")
        usage: Usage

    return Schemas(SearchRequest, SearchResponse, RerankRequest, RerankResponse, V2RerankRequest, V2RerankResponse,
                   ScoreRequest, ScoreResponse)
