"""qa-search: retrieve-and-rerank question answering over your own paragraphs.

Three lines from an index to answerable paragraphs::

    from pipeline import QAPipeline
    qa = QAPipeline.load("indexes/squad-dev", reranker="../shared/models/minilm-l6-qnli-squad-tune")
    print(qa.search("Which NFL team represented the AFC at Super Bowl 50?").hits[0].title)
"""

from pipeline.config import FaissKind, FusionMethod, PipelineConfig, RetrievalMode
from pipeline.errors import (
    ConfigError,
    CorpusError,
    DataError,
    IndexMismatchError,
    IndexNotFoundError,
    ModelNotFoundError,
    QASearchError,
    QueryError,
)
from pipeline.index import SearchIndex, add_to_index, build_index
from pipeline.qa import QAPipeline
from pipeline.read.policy import AnswerPolicy
from pipeline.results import Answer, BestAnswer, Hit, SearchResult

__all__ = [
    "Answer",
    "AnswerPolicy",
    "BestAnswer",
    "ConfigError",
    "CorpusError",
    "DataError",
    "FaissKind",
    "FusionMethod",
    "Hit",
    "IndexMismatchError",
    "IndexNotFoundError",
    "ModelNotFoundError",
    "PipelineConfig",
    "QAPipeline",
    "QASearchError",
    "QueryError",
    "RetrievalMode",
    "SearchIndex",
    "SearchResult",
    "add_to_index",
    "build_index",
]
