"""``qa-search serve``: the HTTP API (FastAPI) over the same pipeline as the CLI and the UI."""
