"""Corpus → passages: read a corpus in any of four formats, clean it, give stable ids, window long paragraphs.

``records`` (the types), ``readers`` (one per format), ``clean`` (text and ids),
``windows`` (token windows), ``load`` (:func:`load_corpus`, which does all of it).
"""

from pipeline.corpus.clean import clean_text, squad_paragraph_id, text_digest, text_id
from pipeline.corpus.load import iter_passages, load_corpus, open_corpus
from pipeline.corpus.readers import corpus_checksum, corpus_files, detect_format
from pipeline.corpus.records import (
    BadRecord,
    Corpus,
    CorpusFormat,
    CorpusReport,
    Passage,
)
from pipeline.corpus.windows import split_windows

__all__ = [
    "BadRecord",
    "Corpus",
    "CorpusFormat",
    "CorpusReport",
    "Passage",
    "clean_text",
    "corpus_checksum",
    "corpus_files",
    "detect_format",
    "iter_passages",
    "load_corpus",
    "open_corpus",
    "split_windows",
    "squad_paragraph_id",
    "text_digest",
    "text_id",
]
