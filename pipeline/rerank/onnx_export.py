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
from the model's files (name, size, modification time) and the export settings.
An entry is built in a temporary folder and renamed into place, with a
``meta.json`` holding the file's sha256 written last; an entry whose file is
missing, truncated or altered is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.files import sha256_of

logger = logging.getLogger(__name__)

#: Bump when the export recipe changes so old cache entries are not reused.
EXPORT_FORMAT = 1
OPSET = 17
VARIANTS = ("fp32", "int8")
HEADS = ("sequence-classification", "feature-extraction")
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


def cache_key(model_dir: str | Path, variant: str, head: str = "sequence-classification") -> str:
    """A short key for (model files, export settings): changes when either changes."""
    model_dir = Path(model_dir).resolve()
    digest = hashlib.sha256()
    settings = {"format": EXPORT_FORMAT, "opset": OPSET, "variant": variant, "dir": str(model_dir)}
    if head != "sequence-classification":  # keeps the keys of existing reranker exports
        settings["head"] = head
    digest.update(json.dumps(settings).encode())
    for path in _model_files(model_dir):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def entry_dir(
    model_dir: str | Path, variant: str, cache_dir: str | Path | None = None, head: str = "sequence-classification"
) -> Path:
    model_dir = Path(model_dir).resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_dir.name)[:60] or "model"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{slug}-{variant}-{cache_key(model_dir, variant, head)}"


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

    ``head``: ``sequence-classification`` (a cross-encoder; output ``logits``)
    or ``feature-extraction`` (a bi-encoder's transformer; output ``last_hidden_state``).
    """
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown ONNX variant {variant!r}; valid values: {', '.join(VARIANTS)}.")
    if head not in HEADS:
        raise ConfigError(f"Unknown ONNX export head {head!r}; valid values: {', '.join(HEADS)}.")
    entry = entry_dir(model_dir, variant, cache_dir, head)
    if _valid(entry):
        logger.debug("Reusing exported model %s", entry)
        return entry / MODEL_FILE
    if entry.exists():
        logger.warning("The exported model at %s is incomplete or damaged; exporting it again.", entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        _export(Path(model_dir), staging, variant, trust_remote_code=trust_remote_code, progress=progress, head=head)
        model = staging / MODEL_FILE
        meta = {"bytes": model.stat().st_size, "sha256": sha256_of(model), "variant": variant,
                "model_dir": str(Path(model_dir).resolve()), "format": EXPORT_FORMAT}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(staging, entry)
        except OSError:
            if not _valid(entry):  # another process won the race with a good entry otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry / MODEL_FILE


def _export(model_dir: Path, out: Path, variant: str, *, trust_remote_code: bool, progress: bool, head: str) -> None:
    from tqdm.auto import tqdm

    steps = ["export", "fuse"] + (["quantise"] if variant == "int8" else [])
    logger.info("Exporting %s to ONNX (%s) in %s; this happens once per model and setting.", model_dir, variant, out)
    with tqdm(total=len(steps), desc=f"ONNX export ({variant})", disable=not progress, unit="step") as bar:
        raw = out / "raw.onnx"
        export = _torch_export if head == "sequence-classification" else _torch_export_features
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


def _torch_export(model_dir: Path, path: Path, *, trust_remote_code: bool):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), trust_remote_code=trust_remote_code, attn_implementation="eager"
    ).eval()
    sample = tokenizer(["what is it?", "a question"], ["a short passage", "another passage here"],
                       padding=True, return_tensors="pt")
    # The legacy exporter names inputs by position, so list them in forward()'s order.
    names = [n for n in inspect.signature(model.forward).parameters if n in sample]
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
