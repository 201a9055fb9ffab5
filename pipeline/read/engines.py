"""What runs the reader's model: PyTorch, or ONNX Runtime in fp32 or int8, chosen by one setting.

Each engine maps one padded batch of token ids (numpy arrays) to the start and
end logits of every token. The reader's span decoding (:mod:`pipeline.read.reader`)
is the same on every engine.

``reader_backend`` (:class:`~pipeline.config.RerankBackend`'s values: ``auto``,
``torch``, ``onnx``, ``onnx-int8``) picks one the way the reranker's backend is
picked (:func:`~pipeline.rerank.backends.choose_backend`): ``auto`` is ONNX Runtime
with int8 weights on a CPU and PyTorch on a GPU. The ONNX file is exported once
per model and cached (:func:`~pipeline.rerank.onnx_export.onnx_model_file`,
head ``question-answering``).

Example::

    >>> engine = load_engine("../shared/models/minilm-l6-squad-tune-reader", "onnx-int8", device="cpu")  # doctest: +SKIP
    >>> start, end = engine({"input_ids": ids, "attention_mask": mask})                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from pipeline.config import RerankBackend
from pipeline.models.device import default_threads
from pipeline.rerank.backends import choose_backend, onnx_session, run_rows

logger = logging.getLogger(__name__)


class TorchSpans:
    """An ``AutoModelForQuestionAnswering`` in PyTorch."""

    backend = RerankBackend.TORCH

    def __init__(self, model):
        self.model = model

    @property
    def device(self):
        return next(self.model.parameters()).device

    def __call__(self, features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        device = self.device
        batch = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)).to(device) for k, v in features.items()}
        with torch.inference_mode():
            result = self.model(**batch)
        return result.start_logits.float().cpu().numpy(), result.end_logits.float().cpu().numpy()


class OnnxSpans:
    """The same model exported to ONNX (``fp32`` or dynamically quantised ``int8``), run by ONNX Runtime."""

    def __init__(self, session, backend: RerankBackend, path: Path):
        self.session = session
        self.backend = backend
        self.path = path
        self.input_names = tuple(i.name for i in session.get_inputs())

    def __call__(self, features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feed = {n: np.asarray(features[n], dtype=np.int64) for n in self.input_names}
        if self.backend is RerankBackend.ONNX_INT8:  # one window at a time: int8 scores independent of the batch
            start, end = run_rows(self.session, ["start_logits", "end_logits"], feed, per_token=True)
            return start, end
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)


def load_engine(path: str, backend: RerankBackend | str, *, device: str, threads: int | None = None,
                trust_remote_code: bool = False, config=None, progress: bool = True):
    """The engine ``backend`` names for the reader at ``path`` (``config``: its already loaded config, if any)."""
    chosen = choose_backend(backend, device)
    if chosen is RerankBackend.TORCH:
        from transformers import AutoModelForQuestionAnswering

        model = AutoModelForQuestionAnswering.from_pretrained(path, config=config, local_files_only=True,
                                                              trust_remote_code=trust_remote_code)
        return TorchSpans(model.to(device).eval())
    from pipeline.rerank.onnx_export import onnx_model_file

    variant = "int8" if chosen is RerankBackend.ONNX_INT8 else "fp32"
    onnx = onnx_model_file(path, variant, trust_remote_code=trust_remote_code, progress=progress,
                           head="question-answering")
    threads = threads or default_threads()
    logger.info("Reader on ONNX Runtime (%s, %d threads): %s", variant, threads, onnx)
    return OnnxSpans(onnx_session(onnx, threads=threads, device=device), chosen, onnx)
