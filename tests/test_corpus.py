import json

import pytest

from pipeline.corpus import (
    CorpusFormat,
    clean_text,
    detect_format,
    load_corpus,
    split_windows,
)
from pipeline.errors import ConfigError, CorpusError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_squad_reader_ids_titles_and_cleanup(tmp_path):
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "  Alpha\n\tbeta  "}, {"context": "Gamma."}]}]}
    corpus = load_corpus(write(tmp_path / "s.json", json.dumps(squad)))
    assert [p.id for p in corpus.passages] == ["T#0", "T#1"]
    assert corpus.passages[0].text == "Alpha beta"
    assert corpus.passages[0].title == "T"
    assert corpus.report.format == "squad"
    assert corpus.report.passages == 2


def test_real_squad_dev_has_every_paragraph(squad_dev_path):
    corpus = load_corpus(squad_dev_path)
    assert corpus.report.paragraphs == 2067
    assert len({p.source_id for p in corpus.passages}) == 2067
    assert corpus.passages[0].id == "Super_Bowl_50#0"


def test_squad_malformed_paragraph_is_reported_with_its_place(tmp_path):
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "ok"}]}, {"title": "U", "paragraphs": [{"text": "x"}]}]}
    path = write(tmp_path / "bad.json", json.dumps(squad))
    with pytest.raises(CorpusError, match=r"bad.json:2: article 1 \(U\) paragraph 0 has no \"context\""):
        load_corpus(path)
    lenient = load_corpus(path, strict=False)
    assert lenient.report.bad_record_count == 1 and lenient.report.passages == 1


def test_invalid_json_file_names_line(tmp_path):
    path = write(tmp_path / "broken.json", '{"data": [\n{"title": "T",,}]}')
    with pytest.raises(CorpusError, match=r"broken.json:2: invalid JSON"):
        load_corpus(path, fmt="squad")


def test_jsonl_reader_metadata_ids_and_bad_lines(tmp_path):
    lines = [
        json.dumps({"id": 7, "title": "A", "text": "First text.", "lang": "en"}),
        "",
        json.dumps({"title": "B", "text": "Second text."}),
        "{not json",
        json.dumps({"id": "x", "title": "C"}),
    ]
    path = write(tmp_path / "c.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=r"c.jsonl:4: invalid JSON"):
        load_corpus(path)
    corpus = load_corpus(path, strict=False)
    assert corpus.report.bad_record_count == 2
    assert [b.line for b in corpus.report.bad_records] == [4, 5]
    assert corpus.report.bad_records[0].reason.startswith("invalid JSON")
    assert corpus.report.bad_records[1].reason == 'missing "text" string'
    first, second = corpus.passages
    assert first.id == "7" and first.metadata == {"lang": "en"}
    # A record without id gets a stable hash of its title and text.
    again = load_corpus(path, strict=False)
    assert second.id == again.passages[1].id and len(second.id) == 16


def test_duplicates_and_empty_paragraphs_are_counted_not_silently_dropped(tmp_path):
    records = [
        {"id": "a", "text": "Same   text"},
        {"id": "b", "text": "Same text"},
        {"id": "c", "text": "   "},
        {"id": "a", "text": "Same text"},
    ]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    corpus = load_corpus(path)
    assert [p.id for p in corpus.passages] == ["a"]
    assert corpus.report.duplicates_removed == 2
    assert corpus.report.empty_skipped == 1
    assert corpus.report.records == 4


def test_same_id_with_different_text_is_an_error(tmp_path):
    records = [{"id": "a", "text": "one"}, {"id": "a", "text": "two"}]
    path = write(tmp_path / "e.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(CorpusError, match=r"e.jsonl:2: duplicate id 'a' with different text"):
        load_corpus(path)


def test_folder_reader_splits_paragraphs_and_uses_headings_as_titles(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    write(root / "a.txt", "First paragraph\nstill first.\n\nSecond paragraph.\n")
    write(root / "sub" / "b.md", "# Guide\n\nBody of the guide.\n\n## Part two\n\nMore body.\n")
    write(root / "ignored.bin", "zzz")
    corpus = load_corpus(root)
    assert corpus.report.format == "folder" and corpus.report.files == 2
    by_id = {p.id: p for p in corpus.passages}
    assert by_id["a.txt#0"].text == "First paragraph still first."
    assert by_id["a.txt#0"].title == "a"
    assert by_id["sub/b.md#0"].title == "Guide"
    assert by_id["sub/b.md#1"].title == "Part two"
    assert corpus.report.headings_skipped == 2


def test_folder_reader_rejects_non_utf8_with_path(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.txt: not UTF-8"):
        load_corpus(root)


def test_wikiextractor_reader(tmp_path):
    root = tmp_path / "extracted" / "AA"
    root.mkdir(parents=True)
    docs = [
        {"id": "12", "url": "https://en.wikipedia.org/wiki?curid=12", "title": "Anarchism",
         "text": "Anarchism\nAnarchism is a political philosophy.\nIt opposes hierarchy."},
        {"id": "25", "url": "u", "title": "Autism", "text": "Autism is a condition."},
    ]
    write(root / "wiki_00", "".join(json.dumps(d) + "\n" for d in docs) + "{broken\n")
    assert detect_format(tmp_path / "extracted") is CorpusFormat.WIKIEXTRACTOR
    with pytest.raises(CorpusError, match=r"wiki_00:3"):
        load_corpus(tmp_path / "extracted")
    corpus = load_corpus(tmp_path / "extracted", strict=False)
    assert [p.id for p in corpus.passages] == ["12#0", "12#1", "25#0"]
    assert corpus.passages[0].text == "Anarchism is a political philosophy."
    assert corpus.passages[0].metadata["url"].endswith("curid=12")
    assert corpus.report.bad_record_count == 1


def test_unknown_format_lists_valid_values(tmp_path):
    path = write(tmp_path / "x.csv", "a,b")
    with pytest.raises(CorpusError, match="squad, jsonl, folder, wikiextractor"):
        load_corpus(path)
    with pytest.raises(ConfigError, match="valid values: auto, squad, jsonl, folder, wikiextractor"):
        load_corpus(path, fmt="csv")


def test_missing_corpus_path(tmp_path):
    with pytest.raises(CorpusError, match="no such file or directory"):
        load_corpus(tmp_path / "nope.jsonl")


def test_long_paragraph_becomes_overlapping_windows_linked_to_source(tmp_path):
    words = [f"w{i}" for i in range(25)]
    path = write(tmp_path / "long.jsonl", json.dumps({"id": "p", "text": " ".join(words)}) + "\n")
    corpus = load_corpus(path, max_tokens=10, overlap=3)
    ids = [p.id for p in corpus.passages]
    assert ids[0] == "p~w0" and len(ids) >= 3
    assert {p.source_id for p in corpus.passages} == {"p"}
    source = " ".join(words)
    for passage in corpus.passages:
        assert source[passage.start : passage.start + len(passage.text)] == passage.text
        assert len(passage.text.split()) <= 10
    # consecutive windows overlap and together cover every word
    assert corpus.passages[1].text.split()[0] in corpus.passages[0].text.split()
    covered = set().union(*(p.text.split() for p in corpus.passages))
    assert covered == set(words)
    assert corpus.report.windows_added == len(ids) - 1


def test_windows_count_real_tokens(minilm_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_path))
    text = "Antidisestablishmentarianism " * 30
    spans = split_windows(text.strip(), tok, max_tokens=40, overlap=8)
    for start, end in spans:
        assert len(tok(text[start:end], add_special_tokens=False)["input_ids"]) <= 40
    assert len(spans) > 1


def test_clean_text_normalises_unicode_and_space():
    assert clean_text("Cafe\u0301\u00a0 au\nlait ") == "Caf\u00e9 au lait"
