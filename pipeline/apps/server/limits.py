"""The request limits the schemas enforce and publish: a small frozen record, held by the server settings."""

from __future__ import annotations

from dataclasses import dataclass

#: Cohere bills one search unit per query with up to 100 documents.
DOCUMENTS_PER_SEARCH_UNIT = 100


@dataclass(frozen=True)
class Limits:
    """Sizes a request may have; :func:`~pipeline.apps.server.schemas.build_schemas` turns them into types."""

    max_query_chars: int = 2000
    max_documents: int = 1000
    max_document_chars: int = 20_000
    max_top_k: int = 100
    max_candidates: int = 500
