"""The optional libraries training needs (``pip install 'qa-search[train]'``), checked with one clear error."""

from __future__ import annotations

import importlib.util

from pipeline.errors import ConfigError

NEEDED = ("datasets", "accelerate", "sklearn")


def require_training_libraries() -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"qa-search train needs {', '.join('scikit-learn' if m == 'sklearn' else m for m in missing)}: "
            "pip install 'qa-search[train]'."
        )
