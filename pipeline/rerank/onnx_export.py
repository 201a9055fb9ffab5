"""Export a cross-encoder to ONNX (optionally int8-quantised) once, and reuse it.

:func:`onnx_model_file` returns the path of an ``.onnx`` file for a Hugging
Face sequence-classification model directory, exporting it on first use:

1. ``torch.onnx.export`` of the model with eager attention (a graph ONNX
   Runtime's transformer optimiser can fuse into its ``Attention`` kernels),
   dynamic batch and sequence axes;
2. ``onnxruntime.transformers.optimizer`` fuses attention, GELU and layer norms
   (skipped with a warning when the architecture has no fusion pattern);
3. for ``int8``: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
   activations quantised at run time; uses VNNI where the CPU has it).

Entries live under the cache directory (``$QA_SEARCH_CACHE/onnx``, else
``$XDG_CACHE_HOME/qa-search/onnx``, else ``~/.cache/qa-search/onnx``) so
read-only model folders work, in a folder named by the model and a key made
from the *contents* of the model's files (sha256), the export recipe and the
versions of the libraries that export and run it (torch, transformers, onnx,
onnxruntime): a swapped weights file or an upgrade gets a fresh export.

What sits in the cache is loaded as a model, so the cache directory must be
the user's own: it is created owner-only (0700), one owned by someone else or
writable by group or others is refused with a :class:`ConfigError` (a 0755
one of ours is tightened to 0700). An entry is built in a temporary folder
and renamed into place, with a ``meta.json`` holding the file's size and
sha256 written last; an entry whose file is missing, truncated or altered is
rebuilt, never loaded. Entries are never deleted under a reader: when two
exports race, the second keeps the first's entry; a damaged entry is renamed
aside before the new one takes its place.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import uuid
import warnings
from importlib import metadata
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.files import sha256_of

logger = logging.getLogger(__name__)

#: Bump when the export recipe changes so old cache entries are not reused.
EXPORT_FORMAT = 1
OPSET = 17
VARIANTS = ("fp32", "int8")
HEADS = ("sequence-classification", "feature-extraction", "question-answering")
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"


def default_cache_dir() -> Path:
    """Where exported models are kept: ``$QA_SEARCH_CACHE/onnx`` or the user's cache folder."""
    root = os.environ.get("QA_SEARCH_CACHE")
    if root:
        return Path(root).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "qa-search" / "onnx"


def _model_files(model_dir: Path) -> list[Path]:
    keep = (".json", ".safetensors", ".bin", ".txt", ".model", ".py")
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in keep)


#: The libraries whose versions decide what an export holds (and whether a session can run it).
EXPORT_LIBRARIES = ("torch", "transformers", "onnx", "onnxruntime")


def export_versions() -> dict[str, str]:
    """Installed versions of :data:`EXPORT_LIBRARIES` (part of every cache key)."""
    versions = {}
    for dist in EXPORT_LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "none"
    return versions


# sha256 of files already hashed by this process, by (path, size, mtime, ctime, inode): ctime cannot be set
# back by a user, so a file changed in place is hashed again.
_hashes: dict[tuple, str] = {}


def _content_hash(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if memo not in _hashes:
        _hashes[memo] = sha256_of(path)
    return _hashes[memo]


def cache_key(model_dir: str | Path, variant: str, head: str = "sequence-classification") -> str:
    """A key for (model file contents, export recipe, library versions): changes when any of them changes."""
    model_dir = Path(model_dir).resolve()
    digest = hashlib.sha256()
    recipe = {"format": EXPORT_FORMAT, "opset": OPSET, "variant": variant, "versions": export_versions()}
    if head != "sequence-classification":
        recipe["head"] = head
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for path in _model_files(model_dir):
        digest.update(f"{path.name}:{_content_hash(path)}\n".encode())
    return digest.hexdigest()[:32]


def entry_dir(
    model_dir: str | Path, variant: str, cache_dir: str | Path | None = None, head: str = "sequence-classification"
) -> Path:
    model_dir = Path(model_dir).resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_dir.name)[:60] or "model"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{slug}-{variant}-{cache_key(model_dir, variant, head)}"


def private_dir(path: Path) -> Path:
    """Create ``path`` owner-only (0700), or check that an existing one is ours and writable by no one else."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"The ONNX cache {path} is not a directory; set QA_SEARCH_CACHE to a folder of your own.")
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            raise ConfigError(
                f"The ONNX cache {path} belongs to another user, so what it holds cannot be trusted; "
                "set QA_SEARCH_CACHE to a folder of your own."
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"The ONNX cache {path} is writable by other users (mode {mode:o}), so what it holds cannot be "
                f"trusted: empty it and `chmod 700 {path}`, or set QA_SEARCH_CACHE to a folder of your own."
            )
        if mode != 0o700:
            logger.info("Making the ONNX cache %s owner-only (was %o)", path, mode)
            path.chmod(0o700)
    return path


def _valid(entry: Path) -> bool:
    try:
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        model = entry / MODEL_FILE
        return model.stat().st_size == meta["bytes"] and sha256_of(model) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def onnx_model_file(
    model_dir: str | Path,
    variant: str = "fp32",
    *,
    cache_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    head: str = "sequence-classification",
) -> Path:
    """The cached ONNX file of ``model_dir`` in ``variant`` (``fp32`` or ``int8``), exported when missing or damaged.

    ``head``: ``sequence-classification`` (a cross-encoder; output ``logits``),
    ``feature-extraction`` (a bi-encoder's transformer; output ``last_hidden_state``)
    or ``question-answering`` (an extractive reader; outputs ``start_logits`` and ``end_logits``).
    """
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown ONNX variant {variant!r}; valid values: {', '.join(VARIANTS)}.")
    if head not in HEADS:
        raise ConfigError(f"Unknown ONNX export head {head!r}; valid values: {', '.join(HEADS)}.")
    root = private_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    entry = entry_dir(model_dir, variant, root, head)
    if _valid(entry):
        logger.debug("Reusing exported model %s", entry)
        return entry / MODEL_FILE
    if entry.exists():
        logger.warning("The exported model at %s is incomplete or damaged; exporting it again.", entry)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=root))
    try:
        _export(Path(model_dir), staging, variant, trust_remote_code=trust_remote_code, progress=progress, head=head)
        model = staging / MODEL_FILE
        meta = {"bytes": model.stat().st_size, "sha256": sha256_of(model), "variant": variant,
                "model": Path(model_dir).resolve().name, "format": EXPORT_FORMAT, "versions": export_versions()}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _install(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry / MODEL_FILE


def _install(staging: Path, entry: Path) -> None:
    """Rename the finished ``staging`` folder to ``entry``, never deleting a good entry someone may be using."""
    for _ in range(3):
        try:
            os.rename(staging, entry)  # fails while ``entry`` exists (and holds files)
            return
        except OSError:
            if _valid(entry):  # another export won the race: keep its entry, it may already be loaded
                logger.debug("Another export installed %s first; keeping it", entry)
                return
        # A damaged entry: move it aside in one rename (a reader holding its file keeps it), then retry.
        aside = entry.with_name(f".{entry.name}.damaged-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(entry, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise ConfigError(f"Could not put the exported model in place at {entry}; check the cache folder.")


def _export(model_dir: Path, out: Path, variant: str, *, trust_remote_code: bool, progress: bool, head: str) -> None:
    from tqdm.auto import tqdm

    steps = ["export", "fuse"] + (["quantise"] if variant == "int8" else [])
    logger.info("Exporting %s to ONNX (%s) in %s; this happens once per model and setting.", model_dir, variant, out)
    with tqdm(total=len(steps), desc=f"ONNX export ({variant})", disable=not progress, unit="step") as bar:
        raw = out / "raw.onnx"
        export = {"sequence-classification": _torch_export, "feature-extraction": _torch_export_features,
                  "question-answering": _torch_export_qa}[head]
        config = export(model_dir, raw, trust_remote_code=trust_remote_code)
        bar.update(1)
        fused = out / "fused.onnx"
        if not _fuse(raw, fused, config):
            fused = raw
        bar.update(1)
        target = out / MODEL_FILE
        if variant == "int8":
            _quantise(fused, target)
            bar.update(1)
        else:
            os.replace(fused, target)
    for leftover in (out / "raw.onnx", out / "fused.onnx"):
        leftover.unlink(missing_ok=True)


def _pair_model(auto_class: str, model_dir: Path, *, trust_remote_code: bool):
    """``(model, sample, names)``: a (question, passage) model for export, a padded sample batch, its input names."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    model = getattr(transformers, auto_class).from_pretrained(
        str(model_dir), trust_remote_code=trust_remote_code, attn_implementation="eager"
    ).eval()
    sample = tokenizer(["what is it?", "a question"], ["a short passage", "another passage here"],
                       padding=True, return_tensors="pt")
    # The legacy exporter names inputs by position, so list them in forward()'s order.
    return model, sample, [n for n in inspect.signature(model.forward).parameters if n in sample]


def _torch_export(model_dir: Path, path: Path, *, trust_remote_code: bool):
    import torch

    model, sample, names = _pair_model("AutoModelForSequenceClassification", model_dir, trust_remote_code=trust_remote_code)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shapes that the dynamic axes already cover
        torch.onnx.export(
            model, (), str(path), kwargs={n: sample[n] for n in names}, input_names=names, output_names=["logits"],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    return model.config


def _torch_export_features(model_dir: Path, path: Path, *, trust_remote_code: bool):
    """Export a bi-encoder's transformer (``AutoModel``): token ids in, ``last_hidden_state`` out."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    model = AutoModel.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code, attn_implementation="eager").eval()
    sample = tokenizer(["a short passage", "another passage here"], padding=True, return_tensors="pt")
    names = [n for n in inspect.signature(model.forward).parameters if n in sample]

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(model), tuple(sample[n] for n in names), str(path), input_names=names,
            output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    return model.config


def _torch_export_qa(model_dir: Path, path: Path, *, trust_remote_code: bool):
    """Export an extractive reader (``AutoModelForQuestionAnswering``): token ids in, start and end logits out."""
    import torch

    model, sample, names = _pair_model("AutoModelForQuestionAnswering", model_dir, trust_remote_code=trust_remote_code)

    class Spans(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(**dict(zip(names, args)))
            return out.start_logits, out.end_logits

    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({o: {0: "batch", 1: "sequence"} for o in ("start_logits", "end_logits")})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Spans(model), tuple(sample[n] for n in names), str(path), input_names=names,
            output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    return model.config


def _fuse(source: Path, target: Path, config) -> bool:
    """Fuse attention / GELU / layer norm for ONNX Runtime; ``False`` when the optimiser cannot."""
    try:
        from onnxruntime.transformers import optimizer

        optimized = optimizer.optimize_model(
            str(source), model_type="bert", opt_level=0,
            num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
            hidden_size=int(getattr(config, "hidden_size", 0) or 0),
        )
        optimized.save_model_to_file(str(target))
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        logger.info("Fused operators: %s", fused)
        return True
    except Exception as exc:  # an architecture the optimiser has no pattern for: plain graph still works
        logger.warning("ONNX Runtime could not fuse this model's graph (%s); using the plain export.", exc)
        return False


def _quantise(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
