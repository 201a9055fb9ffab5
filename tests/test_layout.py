"""The package's shape: no import cycles, no private names across modules, UI/HTTP/CLI libraries only in apps/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

import pipeline

PACKAGE = REPO / "pipeline"
SHELL_LIBRARIES = {"streamlit", "fastapi", "argparse", "uvicorn", "starlette"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, at any depth (lazy imports count as edges too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; the package uses absolute imports")
            out.append((node.module or "", [alias.name for alias in node.names]))
    return out


def internal_target(module: str, name: str | None = None) -> str | None:
    """The project module an import names (``from pipeline.x import y`` may name the sub-module ``y``)."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names in imports_of(path):
            for name in names or [None]:
                found = internal_target(target, name)
                if found and found != mod:
                    edges[mod].add(found)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            # A module naming its own package (which Python has imported first anyway) is not a cycle.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_cycle_finder_finds_a_planted_cycle():
    edges = graph()
    edges["pipeline.index.bm25"] = edges["pipeline.index.bm25"] | {"pipeline.qa"}
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and "pipeline.qa" in cycle


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for mod, path in MODULES.items():
        for target, names in imports_of(path):
            if target.startswith("pipeline"):
                offenders += [f"{mod}: from {target} import {n}" for n in names if n.startswith("_") and n != "__version__"]
    assert offenders == []


def test_only_apps_import_ui_http_and_cli_libraries():
    offenders = []
    for mod, path in MODULES.items():
        if mod.startswith("pipeline.apps"):
            continue
        for target, _ in imports_of(path):
            if target.split(".")[0] in SHELL_LIBRARIES:
                offenders.append(f"{mod} imports {target}")
    assert offenders == []


@pytest.mark.parametrize("name", ["QAPipeline", "SearchResult", "Hit", "Answer", "BestAnswer", "PipelineConfig",
                                  "build_index", "add_to_index", "SearchIndex", "QASearchError"])
def test_the_public_names_are_still_exported(name):
    assert name in pipeline.__all__ and getattr(pipeline, name) is not None


def test_the_package_reads_like_the_data_flow():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {"corpus", "index", "retrieve", "rerank", "read", "eval", "models", "apps"} <= subpackages
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Layout"):]
    positions = [re.search(rf"^\s+{name}/\s", section, re.M).start() for name in ("corpus", "index", "retrieve", "rerank", "read")]
    assert positions == sorted(positions), "README's layout section lists the stages out of data-flow order"
