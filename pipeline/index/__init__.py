"""Passages → a persistent index: BM25 tokens, FAISS vectors, the passage file and a manifest.

``bm25`` (lexical), ``dense`` (FAISS), ``passages`` (the passage file),
``manifest`` (what built it), ``staging`` (atomic swaps), ``build`` (build and
add), ``search_index`` (:class:`SearchIndex`, an opened index).
"""

from pipeline.index.build import BuildReport, add_to_index, build_index
from pipeline.index.search_index import SearchIndex

__all__ = ["BuildReport", "SearchIndex", "add_to_index", "build_index"]
