"""Index → candidates: BM25, dense, or both fused into one list (``retriever``, ``fusion``)."""

from pipeline.retrieve.retriever import Candidate, Retrieval, Retriever

__all__ = ["Candidate", "Retrieval", "Retriever"]
