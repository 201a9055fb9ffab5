"""Hits → answers: an extractive reader marks the answer span inside a paragraph (``reader``)."""

from pipeline.read.reader import Reader

__all__ = ["Reader"]
