"""Index → candidates: BM25, dense, or both fused into one list (``retriever``, ``fusion``)."""

from pipeline.retrieve.retriever import Candidate, Retriever

__all__ = ["Candidate", "Retriever"]
