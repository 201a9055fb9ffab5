"""The bi-encoder on ONNX Runtime, for builds: fp32 or dynamic int8, several times the passages/s of PyTorch.

sentence-transformers' own ``backend="onnx"`` needs ``optimum``, whose
releases pin a ``transformers`` older than the one this project uses, so the
transformer is exported here with the same exporter as the reranker
(:func:`pipeline.rerank.onnx_export.onnx_model_file`, head
``feature-extraction``, cached on disk) and the sentence-transformers
pipeline around it is re-done in NumPy: tokenise (the model's tokenizer and
``max_seq_length``), mean pooling over the attention mask, L2 normalisation.
Only models made of exactly those modules (Transformer → mean Pooling →
optional Normalize, like all-MiniLM-L6-v2) are accepted; others raise
:class:`~pipeline.errors.ConfigError` and stay on PyTorch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

_SUPPORTED = ("Transformer", "Pooling", "Normalize")


def check_supported(model_dir: Path) -> None:
    """Raise :class:`ConfigError` unless the model is Transformer → mean Pooling (→ Normalize)."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pooling = next(m for m in modules if m["type"].endswith("Pooling"))
        config = json.loads((model_dir / pooling["path"] / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ConfigError(f"The ONNX encoder backend cannot read {model_dir}'s sentence-transformers modules ({exc}); use --encoder-backend torch.") from exc
    # sentence-transformers < 5 writes pooling_mode_mean_tokens: true; later versions pooling_mode: "mean".
    modes = [k[len("pooling_mode_"):] for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
    if isinstance(config.get("pooling_mode"), str):
        modes.append(config["pooling_mode"])
    if kinds[:2] != list(_SUPPORTED[:2]) or any(k not in _SUPPORTED for k in kinds) or modes not in (["mean"], ["mean_tokens"]):
        raise ConfigError(
            f"The ONNX encoder backend supports Transformer + mean pooling models; {model_dir} has {kinds} with "
            f"{modes}: use --encoder-backend torch."
        )


class OnnxEncoder:
    """``encode(texts)`` → L2-normalised float32 vectors, as sentence-transformers would make them."""

    def __init__(self, session, tokenizer, max_seq_length: int):
        self.session = session
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def load(cls, model_dir: str | Path, tokenizer, max_seq_length: int, *, variant: str = "fp32", threads: int | None = None,
             progress: bool = True) -> "OnnxEncoder":
        import onnxruntime as ort

        from pipeline.models.device import default_threads
        from pipeline.rerank.onnx_export import onnx_model_file

        model_dir = Path(model_dir)
        check_supported(model_dir)
        path = onnx_model_file(model_dir, variant, head="feature-extraction", progress=progress)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        logger.info("Bi-encoder on ONNX Runtime (%s): %s", variant, path)
        return cls(session, tokenizer, max_seq_length)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        # Batches of similar length waste little on padding; the output keeps the input order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_seq_length, return_tensors="np")
            feed = {n: np.asarray(enc[n], dtype=np.int64) for n in self.input_names}
            hidden = self.session.run(["last_hidden_state"], feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for j, i in enumerate(idx):
                out[i] = pooled[j]
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
