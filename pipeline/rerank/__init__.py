"""Candidates → probabilities: a cross-encoder scores whether each passage answers the question.

``reranker`` (:class:`Reranker`), ``backends`` (PyTorch / ONNX Runtime engines),
``onnx_export`` (the export cache), ``score_cache`` (repeated pairs),
``cascade`` (a cheap model screens for a costly one), ``batching`` (micro-batches
across concurrent callers).
"""

from pipeline.rerank.cascade import Cascade
from pipeline.rerank.reranker import Reranker

__all__ = ["Cascade", "Reranker"]
