"""Model plumbing shared by every stage: finding weights (``resolve``), the device and threads (``device``),
token limits (``tokens``) and the bi-encoder (``encoder``)."""

from pipeline.models.device import default_threads, pick_device
from pipeline.models.resolve import (
    ResolvedModel,
    canonical_name,
    display_name,
    resolve_model,
)

__all__ = ["ResolvedModel", "canonical_name", "display_name", "default_threads", "pick_device", "resolve_model"]
