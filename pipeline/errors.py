"""Errors the product raises on purpose.

Every error a user can cause (bad input, missing files, missing models) is a
subclass of :class:`QASearchError` with a message that says what went wrong
and what to do about it. The CLI, the web UI and the HTTP server show that
message instead of a traceback.
"""

from __future__ import annotations


class QASearchError(Exception):
    """Base class for errors with a message meant for the user."""


class ConfigError(QASearchError, ValueError):
    """A setting has a value the product cannot use."""


class QueryError(QASearchError, ValueError):
    """A question is empty, too long or otherwise unusable."""


class CorpusError(QASearchError):
    """A corpus file or record is malformed.

    ``path`` and ``line`` (1-based line or record number, when known) locate
    the problem.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class DataError(QASearchError):
    """A public data set could not be fetched or failed its checksum."""


class ChecksumError(DataError):
    """A file's sha256 differs from the published one."""


class IndexNotFoundError(QASearchError, FileNotFoundError):
    """No index (or an incomplete one) exists at the given path."""


class IndexMismatchError(QASearchError):
    """An index does not match the models or files it is used with."""


class ModelNotFoundError(QASearchError, OSError):
    """A model name could not be resolved to weights on this machine."""


class ServiceUnavailableError(QASearchError):
    """A model replica (on a Ray cluster) did not answer in time or failed; the same request may work if retried.

    The HTTP server answers it with 503 and ``Retry-After``.
    """
