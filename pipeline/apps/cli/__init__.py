"""The ``qa-search`` command: one module per command (``data``, ``build``, ``search``, ``serve``, ``evaluate``),
shared options in ``common``, dispatch in ``main``."""

from pipeline.apps.cli.common import add_pipeline_options, pipeline_settings
from pipeline.apps.cli.main import build_parser, main

__all__ = ["add_pipeline_options", "build_parser", "main", "pipeline_settings"]
