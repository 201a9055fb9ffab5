"""The bi-encoder: questions and passages to L2-normalised vectors (sentence-transformers).

Example::

    >>> from pipeline.models.encoder import BiEncoder
    >>> enc = BiEncoder.load("sentence-transformers/all-MiniLM-L6-v2")   # doctest: +SKIP
    >>> enc.encode(["Where is Paris?"]).shape                            # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from pipeline.config import EncoderBackend
from pipeline.errors import ConfigError
from pipeline.models.device import pick_device
from pipeline.models.resolve import (
    ResolvedModel,
    canonical_name,
    display_name,
    resolve_model,
)

logger = logging.getLogger(__name__)

#: Encoded at build time and stored in the manifest; a different model gives a different vector.
PROBE_TEXT = "qa-search fingerprint: Which river flows through the capital of France?"


class BiEncoder:
    """A sentence-transformers model; ``backend`` ``onnx`` / ``onnx-int8`` encodes passages on ONNX Runtime.

    The fingerprint is always computed with the PyTorch model, so an index
    built with an ONNX backend has the same model identity as one built with torch.
    """

    def __init__(self, model, name: str, resolved: ResolvedModel | None = None, onnx=None):
        self.model = model
        self.name = canonical_name(name)
        self.resolved = resolved
        self.onnx = onnx

    @classmethod
    def load(
        cls,
        name: str,
        *,
        device: str | None = None,
        trust_remote_code: bool = False,
        backend: str | EncoderBackend = EncoderBackend.TORCH,
        progress: bool = False,
        allow_download: bool = True,
    ) -> "BiEncoder":
        """Load by name or path; ``allow_download=False`` for a name that comes from an index's manifest."""
        from sentence_transformers import SentenceTransformer

        backend = EncoderBackend.parse(backend)
        resolved = resolve_model(name, role="bi-encoder", allow_download=allow_download)
        try:
            model = SentenceTransformer(
                resolved.path, device=pick_device(device), trust_remote_code=trust_remote_code, local_files_only=True
            )
        except ValueError as exc:
            if "trust_remote_code" not in str(exc):
                raise
            raise ConfigError(
                f"The bi-encoder {display_name(name)} needs custom code to load, which is not run without "
                "trust_remote_code; pass --bi-encoder with a model you trust (and --trust-remote-code if it must run code)."
            ) from exc
        onnx = None
        if backend is not EncoderBackend.TORCH:
            from pipeline.models.onnx_encoder import OnnxEncoder

            variant = "int8" if backend is EncoderBackend.ONNX_INT8 else "fp32"
            onnx = OnnxEncoder.load(resolved.path, model.tokenizer, model.max_seq_length, variant=variant, progress=progress)
        return cls(model, name, resolved, onnx)

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnx"

    @property
    def dimension(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        return int(dim) if dim else int(self.encode(["x"]).shape[1])

    @property
    def max_seq_length(self) -> int | None:
        return getattr(self.model, "max_seq_length", None)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.onnx is not None:
            return self.onnx.encode(list(texts), batch_size=batch_size)
        return self._torch_encode(texts, batch_size=batch_size, progress=progress)

    def _torch_encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    def similarities(self, query: str, texts: Sequence[str]) -> list[float]:
        """The cosine similarity of ``query`` to each of ``texts`` (one batch; what the answer policy reads)."""
        if not len(texts):
            return []
        vectors = self.encode([query, *texts], batch_size=len(texts) + 1)
        return (vectors[1:] @ vectors[0]).astype(float).tolist()

    def fingerprint(self) -> list[float]:
        """The probe text's embedding, rounded: identifies the model whatever its path."""
        return [round(float(x), 5) for x in self._torch_encode([PROBE_TEXT])[0]]
