"""Long documents read whole: split into chunks that fit the cross-encoder with the query, scored by the best chunk.

A cross-encoder reads at most ``max_length`` tokens of (query, document). A
document longer than what is left after the query is split into overlapping
chunks (on word boundaries, :func:`pipeline.corpus.windows.split_windows`),
each chunk is scored with the query, and the document's score is its best
chunk's (max-pooling, as Cohere's rerank API does with ``max_chunks_per_doc``).
Where part of a document is still not read (more chunks than allowed, or more
tokens than ``max_tokens``), :class:`DocumentChunks` says so with ``truncated``
and the token counts: never silently.

The pipeline scores its candidates with :func:`score_whole`; the rerank
endpoints chunk with :func:`chunk_document` and pool with :func:`max_pool`.

Example::

    >>> from pipeline.rerank.chunking import chunk_document, max_pool     # doctest: +SKIP
    >>> chunks = chunk_document(reranker.tokenizer, "Who?", long_text, max_length=512, max_chunks=10)  # doctest: +SKIP
    >>> best, where = max_pool(scores, [len(chunks.texts)])                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from pipeline.corpus.windows import split_windows

#: Fewest document tokens a chunk gets, even when a long query leaves less (the query is then cut by the model).
MIN_CHUNK_TOKENS = 32
#: Tokens two neighbouring chunks share, so that an answer on a chunk boundary is read whole in one of them.
CHUNK_OVERLAP = 32
#: Chunks one passage of an index may take in a search (its windows are already sized for the bi-encoder).
PASSAGE_CHUNKS = 16


@dataclass(frozen=True)
class DocumentChunks:
    """How one document is read: the chunk texts scored with the query, and whether any of it was left out."""

    texts: list[str]
    query_tokens: int
    document_tokens: int
    truncated: bool

    def describe(self) -> dict[str, Any]:
        """The fields a rerank result carries about its reading."""
        return {"chunks": len(self.texts), "query_tokens": self.query_tokens,
                "document_tokens": self.document_tokens, "truncated": self.truncated}


def _special_tokens(tokenizer: Any) -> int:
    try:
        return int(tokenizer.num_special_tokens_to_add(pair=True))
    except (AttributeError, TypeError):  # not a Hugging Face tokenizer: [CLS] q [SEP] d [SEP]
        return 3


def chunk_document(
    tokenizer: Any,
    query: str,
    document: str,
    *,
    max_length: int,
    max_chunks: int,
    max_tokens: int | None = None,
    overlap: int = CHUNK_OVERLAP,
) -> DocumentChunks:
    """The chunks of ``document`` to score with ``query``: each fits ``max_length`` with the query.

    ``max_chunks`` caps the chunks (the first ones are kept) and ``max_tokens``
    the document tokens read; either cut sets ``truncated``. A query so long
    that fewer than :data:`MIN_CHUNK_TOKENS` are left is cut by the model
    (``longest_first``), which also sets ``truncated``.
    """
    if max_chunks < 1:
        raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
    query_tokens = len(tokenizer(query, add_special_tokens=False)["input_ids"])
    offsets = tokenizer(document, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    document_tokens = len(offsets)
    room = max_length - query_tokens - _special_tokens(tokenizer)
    truncated = room < MIN_CHUNK_TOKENS
    budget = max(room, MIN_CHUNK_TOKENS)
    text = document
    if max_tokens is not None and document_tokens > max_tokens:
        text = document[: offsets[max_tokens - 1][1]]
        truncated = True
    spans = split_windows(text, tokenizer, budget, min(overlap, budget // 4))
    if len(spans) > max_chunks:
        spans = spans[:max_chunks]
        truncated = True
    return DocumentChunks([text[start:end] for start, end in spans], query_tokens, document_tokens, truncated)


def max_pool(scores: Sequence[float], counts: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """Each document's best chunk score and that chunk's position; ``counts`` are the chunks per document, in order."""
    scores = np.asarray(scores, dtype=np.float64)
    if int(sum(counts)) != len(scores):
        raise ValueError(f"{len(scores)} scores for {int(sum(counts))} chunks")
    best, where, offset = np.zeros(len(counts)), [], 0
    for d, n in enumerate(counts):
        part = scores[offset : offset + n]
        k = int(np.argmax(part))
        best[d], offset = part[k], offset + n
        where.append(k)
    return best, where


def score_whole(reranker: Any, pairs: Sequence[tuple[str, str]], groups: Sequence[Hashable] | None = None,
                *, max_chunks: int = PASSAGE_CHUNKS) -> np.ndarray:
    """``reranker.score_pairs(pairs, groups)``, but a passage longer than the model reads is scored by its best chunk.

    Pairs that fit are scored as they are; only longer ones are chunked (all in
    one model call). The chunks of a pair keep its group, so a cascade keeps
    each question's best chunks. A reranker without a tokenizer scores the pairs as they are.
    """
    def score(items: list[tuple[str, str]], labels: Sequence[Hashable] | None) -> np.ndarray:
        out = reranker.score_pairs(items) if labels is None else reranker.score_pairs(items, labels)
        return np.asarray(out, dtype=np.float64)

    tokenizer = getattr(reranker, "tokenizer", None)
    if tokenizer is None or not pairs:
        return score(list(pairs), groups)
    length = int(reranker.max_length)
    special = _special_tokens(tokenizer)
    queries = list(dict.fromkeys(q for q, _ in pairs))
    query_tokens = dict(zip(queries, (len(ids) for ids in tokenizer(queries, add_special_tokens=False)["input_ids"])))
    passage_tokens = [len(ids) for ids in tokenizer([p for _, p in pairs], add_special_tokens=False)["input_ids"]]
    texts: list[list[str]] = []
    for (query, passage), n in zip(pairs, passage_tokens):
        if query_tokens[query] + n + special <= length:
            texts.append([passage])
        else:
            texts.append(chunk_document(tokenizer, query, passage, max_length=length, max_chunks=max_chunks).texts)
    flat = [(query, text) for (query, _), chunks in zip(pairs, texts) for text in chunks]
    flat_groups = None if groups is None else [g for g, chunks in zip(groups, texts) for _ in chunks]
    best, _ = max_pool(score(flat, flat_groups), [len(chunks) for chunks in texts])
    return best
