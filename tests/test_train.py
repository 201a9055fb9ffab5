"""``qa-search train``: tiny models trained for a few steps on a generated SQuAD corpus (each test well under a minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.apps.cli.main import main

CITIES = [
    ("Aldoria", "Brenn", "copper", 1204), ("Calvia", "Dunmore", "salt", 1350), ("Elsmark", "Fennick", "wool", 1411),
    ("Gorvany", "Halloway", "timber", 1523), ("Istria", "Jorvik", "amber", 1602), ("Kelmar", "Lunden", "silk", 1688),
    ("Morvia", "Norwick", "tin", 1745), ("Ostrand", "Pellam", "glass", 1801),
]


def _article(i: int, country: str, capital: str, good: str, year: int) -> dict:
    paragraphs = [
        (f"{capital} is the capital of {country}. The city was founded in {year} on a river delta.",
         [(f"What is the capital of {country}?", capital), (f"When was {capital} founded?", str(year))]),
        (f"The economy of {country} rests on {good}. Merchants export {good} to distant ports every spring.",
         [(f"What does the economy of {country} rest on?", good)]),
        (f"The flag of {country} is green with a white star. It was adopted after a long war.",
         [(f"What colour is the flag of {country}?", "green")]),
    ]
    out = []
    for context, qas in paragraphs:
        out.append({"context": context, "qas": [
            {"id": f"q{i}-{len(out)}-{k}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
            for k, (q, a) in enumerate(qas)]})
    return {"title": country, "paragraphs": out}


@pytest.fixture(scope="module")
def gen_squad(tmp_path_factory) -> Path:
    """A generated SQuAD v1.1 file: 8 articles, 3 paragraphs and 4 questions each."""
    path = tmp_path_factory.mktemp("gen") / "gen-v1.1.json"
    data = {"version": "1.1", "data": [_article(i, *c) for i, c in enumerate(CITIES)]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gen_squad_v2(tmp_path_factory, gen_squad) -> Path:
    """The same articles as SQuAD v2.0: each paragraph gains an unanswerable question."""
    data = json.loads(gen_squad.read_text(encoding="utf-8"))
    for article in data["data"]:
        for p, paragraph in enumerate(article["paragraphs"]):
            paragraph["qas"].append({"id": f"{article['title']}-{p}-x", "question": f"Who ruled {article['title']} in {p + 900}?",
                                     "answers": [], "is_impossible": True})
    path = tmp_path_factory.mktemp("gen") / "gen-v2.0.json"
    path.write_text(json.dumps({"version": "v2.0", "data": data["data"]}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_base(tiny_bi_encoder) -> Path:
    """The tiny random BERT (no head) under the tiny bi-encoder: a base model to fine-tune."""
    return tiny_bi_encoder.parent / "hf"


@pytest.fixture(scope="module")
def gen_index(tmp_path_factory, gen_squad, tiny_bi_encoder) -> Path:
    from pipeline.index import build_index

    out = tmp_path_factory.mktemp("gen-index") / "index"
    build_index(gen_squad, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    return out


def _train_reranker(index, questions, out, base, *extra) -> int:
    return main(["train", "reranker", "--index", str(index), "--questions", str(questions), "--out", str(out),
                 "--base", str(base), "--max-steps", "4", "--batch-size", "8", "--max-length", "64", "--save-steps", "2",
                 "-q", *extra])


def test_train_reranker_output_loads_and_scores(tmp_path, gen_index, gen_squad, tiny_base, capsys):
    from pipeline.rerank.reranker import Reranker
    from pipeline.train.card import read_card

    out = tmp_path / "rr"
    assert _train_reranker(gen_index, gen_squad, out, tiny_base, "--eval-articles", "6-7", "--lr", "1e-3") == 0
    card = read_card(out)
    assert card["split"]["train_articles"] == "0-5" and card["split"]["eval_articles"] == "6-7"
    assert card["data"]["pairs_by_kind"]["positive"] == 24  # 6 articles x 4 answerable questions
    assert card["data"]["pairs_by_kind"]["bm25"] == 24 and card["data"]["pairs_by_kind"]["dense"] == 24
    assert card["training"]["steps"] == 4
    assert "no trained scoring head" in card["heldout"]["before"]["skipped"]  # a bare BERT: random head, no baseline
    after = card["heldout"]["after"]
    assert after["questions"] == 8 and 0.0 < after["reranked"]["mrr@10"] <= 1.0 and 0.0 < after["hybrid"]["mrr@10"] <= 1.0
    assert not (out / "checkpoints").exists()
    saved = json.loads((out / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert saved["activation_fn"].endswith("Sigmoid")  # sentence-transformers' CrossEncoder.predict gives 0..1 too
    reranker = Reranker.load(str(out), device="cpu")
    scores = reranker.score("What is the capital of Aldoria?", ["Brenn is the capital of Aldoria.", "The flag is green."])
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()  # the saved sigmoid: probabilities
    assert "Trained reranker" in capsys.readouterr().out


def test_train_reranker_jsonl_and_v2_negatives(tmp_path, gen_index, gen_squad, gen_squad_v2, tiny_base, tiny_cross_encoder):
    from pipeline.index import SearchIndex
    from pipeline.train.card import read_card
    from pipeline.train.data import load_training_questions, training_pairs

    index = SearchIndex.load(gen_index)
    questions = load_training_questions(gen_squad_v2, index)
    unanswerable = [q for q in questions if not q.answerable]
    assert len(unanswerable) == 24 and unanswerable[0].negatives == ("Aldoria#0",)
    kinds = training_pairs(index, questions).counts()
    assert kinds == {"positive": 32, "unanswerable": 24}

    # A cross-encoder base has a trained head: its figures before training are measured.
    out = tmp_path / "from-ce"
    assert _train_reranker(gen_index, gen_squad, out, tiny_cross_encoder, "--eval-articles", "7", "--max-steps", "1") == 0
    assert read_card(out)["heldout"]["before"]["questions"] == 4

    lines = tmp_path / "q.jsonl"
    lines.write_text(json.dumps({"question": "What is the capital of Calvia?", "positive_ids": ["Calvia#0"],
                                 "negative_ids": ["Calvia#2"]}) + "\n", encoding="utf-8")
    (q,) = load_training_questions(lines, index)
    assert (q.positives, q.negatives, q.group) == (("Calvia#0",), ("Calvia#2",), "Calvia")
    assert _train_reranker(gen_index, lines, tmp_path / "rr", tiny_base, "--max-steps", "1") == 0


def test_reranker_resumes_from_its_last_checkpoint(tmp_path, gen_index, gen_squad, tiny_base, capsys):
    """A run stopped after step 2 (its checkpoint) resumes there and ends where an uninterrupted run ends."""
    from pipeline.rerank.reranker import Reranker
    from pipeline.train.card import read_card
    from pipeline.train.output import checkpoint_dir

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert _train_reranker(gen_index, gen_squad, whole, tiny_base, "--keep-checkpoints") == 0
    # The interrupted run: same settings, its folder holds only the step-2 checkpoint (as if killed at step 3).
    assert _train_reranker(gen_index, gen_squad, broken, tiny_base, "--keep-checkpoints") == 0
    for name in list(broken.iterdir()):
        if name.name != "checkpoints":
            (name.unlink() if name.is_file() else None)
    import shutil

    shutil.rmtree(checkpoint_dir(broken) / "checkpoint-4")
    for leftover in [p for p in broken.iterdir() if p.is_dir() and p.name != "checkpoints"]:
        shutil.rmtree(leftover)
    capsys.readouterr()
    assert _train_reranker(gen_index, gen_squad, broken, tiny_base) == 0
    assert "resuming from" in capsys.readouterr().err
    assert read_card(broken)["training"]["resumed_from"].endswith("checkpoint-2")
    pairs = ["What is the capital of Aldoria?", ["Brenn is the capital of Aldoria.", "The flag of Kelmar is green."]]
    a = Reranker.load(str(whole), device="cpu", cache_size=0).score(*pairs)
    b = Reranker.load(str(broken), device="cpu", cache_size=0).score(*pairs)
    assert a == pytest.approx(b, abs=1e-4)


def test_refuses_other_settings_on_resume(tmp_path, gen_index, gen_squad, tiny_base, capsys):
    out = tmp_path / "rr"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "run.json").write_text(json.dumps({"kind": "reader"}), encoding="utf-8")
    assert _train_reranker(gen_index, gen_squad, out, tiny_base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds checkpoints of a run with other settings" in err[0]


def test_resume_ignores_evaluation_only_settings(tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.train.output import prepare_output

    prepare_output(tmp_path, {"kind": "reranker", "settings": {"learning_rate": 6e-5, "eval_sample": 300}})
    prepare_output(tmp_path, {"kind": "reranker", "settings": {"learning_rate": 6e-5, "eval_sample": 12}})
    with pytest.raises(ConfigError, match=r"other settings \(settings\)"):
        prepare_output(tmp_path, {"kind": "reranker", "settings": {"learning_rate": 1e-4, "eval_sample": 12}})


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("empty", "the questions file is empty"),
        ("missing_gold", "gold/negative id(s) are not in the index"),
        ("overlap", "The evaluation articles 5 are also training articles"),
        ("split_overlap", "refusing to report figures on questions it trained on"),
    ],
)
def test_bad_input_one_error_line(tmp_path, gen_index, gen_squad, tiny_base, capsys, setup, expected):
    questions, extra = gen_squad, []
    if setup == "empty":
        questions = tmp_path / "empty.jsonl"
        questions.write_text("\n", encoding="utf-8")
    elif setup == "missing_gold":
        questions = tmp_path / "q.jsonl"
        questions.write_text(json.dumps({"question": "Where?", "positive_ids": ["Nowhere#3"]}) + "\n", encoding="utf-8")
    elif setup == "overlap":
        extra = ["--train-articles", "0-5", "--eval-articles", "5-7"]
    else:  # the same question text in a training and a held-out article
        data = json.loads(gen_squad.read_text(encoding="utf-8"))
        data["data"][7]["paragraphs"][0]["qas"][0]["question"] = data["data"][0]["paragraphs"][0]["qas"][0]["question"]
        questions = tmp_path / "dup.json"
        questions.write_text(json.dumps(data), encoding="utf-8")
        extra = ["--eval-articles", "7"]
    assert _train_reranker(gen_index, questions, tmp_path / "out", tiny_base, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


# --------------------------------------------------------------------------- reader


def _train_reader(questions, out, base, *extra) -> int:
    files = [a for q in questions for a in ("--questions", str(q))]
    return main(["train", "reader", *files, "--out", str(out), "--base", str(base), "--max-steps", "4",
                 "--batch-size", "8", "--max-length", "64", "--stride", "24", "--save-steps", "2", "-q", *extra])


def test_featurize_labels_the_answer_tokens_and_cls_for_no_answer(minilm_path, gen_squad_v2):
    from transformers import AutoTokenizer

    from pipeline.train.reader import featurize, load_reader_examples

    tok = AutoTokenizer.from_pretrained(str(minilm_path))
    examples = load_reader_examples([gen_squad_v2])
    assert len(examples) == 56 and sum(not e.answerable for e in examples) == 24
    answerable = next(e for e in examples if e.answer_text == "1204")
    unanswerable = next(e for e in examples if not e.answerable)
    features = featurize(tok, [answerable, unanswerable], max_length=32, stride=8)
    labelled = [(ids, s, e) for ids, s, e in zip(features["input_ids"], features["start_positions"], features["end_positions"]) if s]
    assert [tok.decode(ids[s : e + 1]) for ids, s, e in labelled] == ["1204"]
    # Every window of the unanswerable question, and the answerable one's windows without the answer, point at CLS (0).
    assert features["start_positions"].count(0) == len(features["start_positions"]) - 1


def test_train_reader_no_answer_head_loads_and_reads(tmp_path, gen_squad, gen_squad_v2, tiny_base, capsys):
    from pipeline.read.reader import Reader
    from pipeline.train.card import read_card

    out = tmp_path / "reader"
    assert _train_reader([gen_squad, gen_squad_v2], out, tiny_base, "--eval-articles", "6-7") == 0
    card = read_card(out)
    assert card["data"]["questions"] == 56 and card["data"]["training_unanswerable"] == 18
    after = card["heldout"]["after"]
    assert after["HasAns"]["total"] == 8 and after["NoAns"]["total"] == 6 and "overall" in after
    assert card["training"]["no_answer_head"] is True
    reader = Reader.load(str(out), device="cpu")
    assert reader.allow_no_answer  # the saved config turns abstention on
    text = "Brenn is the capital of Aldoria."
    answer = reader.read("What is the capital of Aldoria?", [text])[0]
    assert answer is None or text[answer.start : answer.end] == answer.text


def test_train_reader_grouped_folds(tmp_path, gen_squad_v2, tiny_base):
    from pipeline.train.card import read_card

    out = tmp_path / "reader"
    assert _train_reader([gen_squad_v2], out, tiny_base, "--folds", "2", "--max-steps", "2") == 0
    folds = read_card(out)["folds"]["per_fold"]
    assert len(folds) == 2
    held = [set(f["articles"]) for f in folds]
    assert not held[0] & held[1] and len(held[0] | held[1]) == 8  # every article held out exactly once
    assert all(f["NoAns"]["total"] == 3 * len(h) for f, h in zip(folds, held))


def test_missing_training_extra_is_one_error_line(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    assert main(["train", "reader", "--questions", str(tmp_path / "q.json"), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: qa-search train needs datasets: pip install 'qa-search[train]'."]


def test_group_folds_leave_out_a_held_out_question_asked_in_a_training_article():
    """SQuAD asks "What is the population of Los Angeles?" in two articles: no fold may report on it after training on it."""
    from types import SimpleNamespace

    from pipeline.train.splits import group_folds

    questions = [SimpleNamespace(id=f"q{a}-{i}", text=f"Question {i} of article {a}?", group=f"A{a}", article=a)
                 for a in range(2) for i in range(3)]
    questions.append(SimpleNamespace(id="dup", text="question 0 of article 0?  ", group="A1", article=1))
    folds = group_folds(questions, 2)  # two articles, two folds: each article is held out once, trained on once
    held_ids = sorted(q.id for _, held in folds for q in held)
    assert held_ids == sorted(q.id for q in questions if q.id not in {"dup", "q0-0"})
    for train, held in folds:
        assert not {q.text.strip().lower() for q in held} & {q.text.strip().lower() for q in train}
