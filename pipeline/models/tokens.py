"""Token limits of Hugging Face models."""

from __future__ import annotations


def model_token_limit(tokenizer, config) -> int:
    """The longest input the model takes: the tokenizer's limit when sane, else its position embeddings."""
    positions = getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # RoBERTa offsets its positions by the padding index
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 100_000:
        return int(positions)
    return int(min(limit, positions))
