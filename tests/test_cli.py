import json

import pytest
from conftest import SUPER_BOWL_QUESTION

from pipeline.apps.cli import main


def test_build_and_search_json(tmp_path, small_corpus, tiny_bi_encoder, tiny_cross_encoder, capsys):
    index = tmp_path / "idx"
    assert main(["build", "--corpus", str(small_corpus), "--index", str(index), "--bi-encoder", str(tiny_bi_encoder), "-q"]) == 0
    out = capsys.readouterr().out
    assert "Built" in out and "6 passages" in out
    code = main(["search", "capital of Germany", "--index", str(index), "--reranker", str(tiny_cross_encoder), "--no-read", "--json", "--top-k", "3"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == "capital of Germany" and len(result["hits"]) == 3
    hit = result["hits"][0]
    assert {"id", "title", "text", "answerable", "probability", "scores", "ranks"} <= set(hit)
    assert {"bm25", "dense", "fusion", "rerank", "total"} <= set(result["timings"])


def test_table_output(tiny_index, tiny_cross_encoder, capsys):
    assert main(["search", "capital of Germany", "--index", str(tiny_index), "--no-rerank", "--no-read", "--mode", "bm25"]) == 0
    out = capsys.readouterr().out
    assert "Germany" in out and "bm25" in out


def test_user_errors_exit_2_with_one_line(tmp_path, tiny_index, capsys):
    assert main(["search", "q", "--index", str(tmp_path / "missing"), "--no-rerank", "--no-read"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No index at") and "qa-search build" in err
    assert main(["search", "q", "--index", str(tiny_index), "--no-read"]) == 2
    assert "QA_SEARCH_RERANKER" in capsys.readouterr().err
    assert main(["search", "q", "--index", str(tiny_index), "--no-rerank"]) == 2
    err = capsys.readouterr().err
    assert "QA_SEARCH_READER" in err and "--no-read" in err
    assert main(["search", " ", "--index", str(tiny_index), "--no-rerank", "--no-read"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["data", "fetch", "squad-dev", "--from", str(tmp_path / "nope.json"), "--dest", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["search", "q", "--mode", "magic"])


def test_build_add_reports_counts(tmp_path, small_corpus, tiny_bi_encoder, capsys):
    index = tmp_path / "idx"
    main(["build", "--corpus", str(small_corpus), "--index", str(index), "--bi-encoder", str(tiny_bi_encoder), "-q"])
    extra = tmp_path / "more.jsonl"
    extra.write_text(json.dumps({"id": "oslo", "text": "Oslo is the capital of Norway."}) + "\n{bad\n", encoding="utf-8")
    assert main(["build", "--index", str(index), "--add", str(extra), "-q"]) == 2
    assert "more.jsonl:2" in capsys.readouterr().err
    assert main(["build", "--index", str(index), "--add", str(extra), "--skip-bad-records", "-q"]) == 0
    captured = capsys.readouterr()
    assert "index now holds 7 passages" in captured.out and "1 malformed record(s) SKIPPED" in captured.out
    assert "more.jsonl:2" in captured.err


@pytest.mark.slow
def test_cli_acceptance_on_full_squad_dev(tmp_path_factory, squad_dev_path, minilm_path, standin_reranker, capsys):
    """The issue's acceptance: all 2,067 paragraphs indexed; the Super Bowl 50 paragraph first in every mode."""
    data = tmp_path_factory.mktemp("data")
    assert main(["data", "fetch", "squad-dev", "--from", str(squad_dev_path), "--dest", str(data), "-q"]) == 0
    index = tmp_path_factory.mktemp("indexes") / "squad-dev"
    assert main(["build", "--corpus", str(data / "dev-v1.1.json"), "--index", str(index), "-q"]) == 0
    assert "from 2067 paragraphs" in capsys.readouterr().out
    runs = [["--mode", m, "--no-rerank", "--no-read"] for m in ("bm25", "dense", "hybrid")]
    runs.append(["--reranker", str(standin_reranker), "--no-read"])
    for extra in runs:
        assert main(["search", SUPER_BOWL_QUESTION, "--index", str(index), "--json", *extra]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["hits"][0]["id"] == "Super_Bowl_50#0", extra
