"""Engines that turn tokenised (question, passage) batches into logits.

* :class:`TorchEngine`: the Hugging Face model in PyTorch fp32 (``torch``);
* :class:`OnnxEngine`: an ONNX Runtime session over an exported model
  (``onnx``: fp32, ``onnx-int8``: dynamic int8 quantisation), see
  :mod:`pipeline.rerank.onnx_export`.

:func:`choose_backend` resolves ``auto``: ONNX Runtime int8 on a CPU when
onnxruntime and onnx are installed (PyTorch with a warning when not), PyTorch
on a GPU. :func:`default_threads` is the number of physical cores this process
may use, the default for both engines' thread pools.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from pipeline.config import RerankBackend
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)


class Engine(Protocol):
    """Logits (batch × labels) for one padded batch of token ids."""

    backend: RerankBackend
    input_names: tuple[str, ...]

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray: ...


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401  (needed by the exporter and the quantiser)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(backend: RerankBackend | str, device: str) -> RerankBackend:
    """The concrete backend for ``backend`` on ``device`` (resolves ``auto``)."""
    backend = RerankBackend.parse(backend)
    on_gpu = not device.startswith("cpu")
    if backend is RerankBackend.AUTO:
        if on_gpu:
            return RerankBackend.TORCH
        if not onnx_available():
            logger.warning(
                "onnxruntime/onnx are not installed, so the reranker and the reader run in plain PyTorch (several times slower "
                "on a CPU); install them with `pip install 'qa-search[onnx]'`."
            )
            return RerankBackend.TORCH
        return RerankBackend.ONNX_INT8
    if backend is not RerankBackend.TORCH and not onnx_available():
        raise ConfigError(
            f"The rerank backend {backend.value!r} needs onnxruntime and onnx: `pip install 'qa-search[onnx]'`, "
            "or use --rerank-backend torch."
        )
    return backend


class TorchEngine:
    """A Hugging Face sequence classifier in PyTorch (fp32)."""

    backend = RerankBackend.TORCH

    def __init__(self, model, device: str, threads: int):
        import torch

        self.model = model.to(device).eval()
        self.device = device
        if device.startswith("cpu") and torch.get_num_threads() != threads:
            # PyTorch's pool is per process: this sets it for the whole program.
            logger.info("Setting PyTorch to %d CPU threads (was %d)", threads, torch.get_num_threads())
            torch.set_num_threads(threads)
        params = inspect.signature(self.model.forward).parameters
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params)

    @classmethod
    def load(cls, path: str, *, device: str, threads: int, trust_remote_code: bool) -> "TorchEngine":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=trust_remote_code)
        return cls(model, device, threads)

    @property
    def config(self):
        return self.model.config

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = {n: torch.from_numpy(np.asarray(features[n], dtype=np.int64)).to(self.device)
                  for n in self.input_names if n in features}
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        return logits.float().cpu().numpy()


class OnnxEngine:
    """An ONNX Runtime session over an exported (and maybe int8-quantised) classifier."""

    def __init__(self, session, backend: RerankBackend, path: Path):
        self.session = session
        self.backend = backend
        self.path = path
        self.input_names = tuple(i.name for i in session.get_inputs())

    @classmethod
    def load(
        cls,
        model_dir: str,
        backend: RerankBackend,
        *,
        device: str,
        threads: int,
        trust_remote_code: bool,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> "OnnxEngine":
        from pipeline.rerank.onnx_export import onnx_model_file

        variant = "int8" if backend is RerankBackend.ONNX_INT8 else "fp32"
        path = onnx_model_file(model_dir, variant, cache_dir=cache_dir, trust_remote_code=trust_remote_code,
                               progress=progress)
        session = onnx_session(path, threads=threads, device=device)
        logger.info("Reranker on ONNX Runtime (%s, %d threads): %s", variant, threads, path)
        return cls(session, backend, path)

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        feed = {n: np.asarray(features[n], dtype=np.int64) for n in self.input_names}
        if self.backend is RerankBackend.ONNX_INT8:
            (logits,) = run_rows(self.session, ["logits"], feed)
            return logits
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)


def run_rows(session, outputs: Sequence[str], feed: Mapping[str, np.ndarray], *, per_token: bool = False) -> list[np.ndarray]:
    """``session.run`` one row of the batch at a time, each without its padding; the rows' outputs stacked again.

    Dynamic int8 quantisation scales the activations per tensor, over the whole
    batch and its padding, so in one padded batch a row's scores depend on the
    other rows (a reader span moved by a whole logit next to another paragraph).
    Run alone and unpadded, a (question, passage) pair scores the same whatever
    else is scored with it. ``per_token`` outputs (one value per token) come back
    as ``(batch, length)`` arrays, 0 where the row's attention mask is 0.
    """
    mask = feed.get("attention_mask")
    rows = len(next(iter(feed.values())))
    if rows == 0:  # nothing to keep apart
        return [np.asarray(value, dtype=np.float32) for value in session.run(list(outputs), dict(feed))]
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    keeps = []
    for i in range(rows):
        keep = np.asarray(mask[i], dtype=bool) if mask is not None else np.ones(feed["input_ids"].shape[1], dtype=bool)
        keeps.append(keep)
        row = {name: np.asarray(value[i : i + 1])[:, keep] for name, value in feed.items()}
        for j, value in enumerate(session.run(list(outputs), row)):
            got[j].append(np.asarray(value, dtype=np.float32)[0])
    if not per_token:
        return [np.stack(values) for values in got]
    out = []
    for values in got:
        full = np.zeros((rows, len(keeps[0])), dtype=np.float32)
        for i, (keep, value) in enumerate(zip(keeps, values)):
            full[i, keep] = value
        out.append(full)
    return out


def onnx_session(path: Path, *, threads: int, device: str):
    """An ONNX Runtime session over the exported model at ``path``: ``threads`` intra-op threads, no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads would otherwise spin for a while after each run, taking the cores from whatever
    # runs next (the reader, another request, another process on a small shared CPU).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)
