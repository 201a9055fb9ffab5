import pytest
from conftest import SUPER_BOWL_QUESTION

from pipeline import QAPipeline, build_index
from pipeline.errors import ConfigError, ModelNotFoundError, QueryError
from pipeline.rank.policy import Policy, features, find_policy
from pipeline.rerank.blend import blended_order, blended_scores


@pytest.fixture(scope="module")
def tiny_qa(tiny_index, tiny_cross_encoder):
    # Ranking tests: the reader stage has its own tests (test_read.py).
    return QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu")


def test_search_result_shape_and_ranges(tiny_qa):
    result = tiny_qa.search("What is the capital of Germany?", top_k=4, candidates=6, rerank_weight=1.0,
                            similarity_weight=0.0)
    assert len(result.hits) == 4
    probs = [h.probability for h in result.hits]
    assert probs == sorted(probs, reverse=True)
    for rank, hit in enumerate(result.hits, start=1):
        assert 0.0 <= hit.probability <= 1.0
        assert hit.answerable == (hit.probability >= 0.5)
        # rerank_weight 1: the reranker's probability alone orders the hits
        assert hit.ranks["rerank"] == hit.ranks["final"] == rank and hit.scores["rerank"] == hit.probability
        assert "fused" in hit.ranks
    assert {"bm25", "dense", "fusion", "rerank", "total"} <= set(result.timings)
    assert result.settings["reranker"] and result.settings["mode"] == "hybrid"
    as_dict = result.to_dict()
    assert set(as_dict["hits"][0]) >= {"id", "title", "text", "answerable", "probability", "scores", "ranks"}


def test_by_default_the_blend_orders_and_the_probability_flags(tiny_index, tiny_cross_encoder):
    tiny_qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu",
                              rerank_backend="torch")  # no int8 screen, so no cap (tested below)
    question = "What is the capital of Germany?"
    mixed = tiny_qa.search(question, top_k=6, candidates=6)
    assert mixed.settings["policy"] == "blend (rerank_weight 0.5, similarity_weight 0.5)"
    assert all(-1.0 <= h.scores["dense"] <= 1.0 for h in mixed.hits)  # every hit's bi-encoder similarity
    want = blended_scores([h.probability for h in mixed.hits], [h.scores["fused"] for h in mixed.hits], 0.5,
                          similarities=[h.scores["dense"] for h in mixed.hits], similarity_weight=0.5)
    assert [h.scores["final"] for h in mixed.hits] == pytest.approx(want, abs=1e-6)
    assert want == sorted(want, reverse=True) and [h.ranks["final"] for h in mixed.hits] == list(range(1, 7))
    assert all(h.probability == h.scores["rerank"] and h.answerable == (h.probability >= 0.5) for h in mixed.hits)
    # Both weights 0 keep the retrieval order; the probabilities and flags are the same either way.
    retrieval = tiny_qa.search(question, top_k=6, candidates=6, rerank_weight=0.0, similarity_weight=0.0)
    assert [h.ranks["fused"] for h in retrieval.hits] == sorted(h.ranks["fused"] for h in retrieval.hits)
    assert {h.id: h.probability for h in retrieval.hits} == {h.id: h.probability for h in mixed.hits}
    with pytest.raises(ConfigError, match="rerank_weight must be between 0 and 1"):
        tiny_qa.search(question, rerank_weight=1.5)


def test_a_reranked_search_gives_every_candidate_its_bi_encoder_similarity(tiny_index, tiny_bi_encoder):
    """Candidates the dense list missed get their similarity from the index's stored vectors, not a stand-in."""
    from pipeline.config import SearchSettings
    from pipeline.index import SearchIndex
    from pipeline.models.encoder import BiEncoder
    from pipeline.retrieve import Retriever

    index = SearchIndex.load(tiny_index)
    encoder = BiEncoder.load(str(tiny_bi_encoder), device="cpu")
    retriever = Retriever(index, encoder)
    missed = 0
    for question in ("Which river flows through the capital of Germany?", "What is the capital of Spain?",
                     "Who won the Super Bowl?"):
        everything = dict(index.dense.search(encoder.encode([question]), len(index.passages))[0])
        for k in (1, 2, 3):  # shallow lists, so that BM25 brings candidates the dense list missed
            [found] = retriever.retrieve_many([question], k, SearchSettings(), list_depth=k)
            for cand in found.candidates:
                assert cand.scores["dense"] == pytest.approx(everything[cand.position], abs=1e-5)
                missed += "dense" not in cand.ranks
            # a search that is not reranked (no list depth) keeps the lists as they are
            [plain] = retriever.retrieve_many([question], k, SearchSettings())
            assert all(("dense" in c.scores) == ("dense" in c.ranks) for c in plain.candidates)
    assert missed, "the fixture should give candidates only BM25 found"


def test_the_blends_final_score_does_not_depend_on_how_many_candidates(tiny_index, tiny_cross_encoder):
    """Issue 15: a paragraph retrieved at both depths gets the same final score and place among the others."""
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu", rerank_backend="torch")
    for question in ("Which city is the capital of Spain?", "What is the capital of Germany?"):
        few = {h.source_id: h for h in qa.search(question, top_k=3, candidates=3, agreed_candidates=0).hits}
        many = {h.source_id: h for h in qa.search(question, top_k=8, candidates=8, agreed_candidates=0).hits}
        assert few and set(few) <= set(many)
        for source, hit in few.items():
            assert hit.scores["final"] == pytest.approx(many[source].scores["final"], abs=1e-6)
            assert hit.scores["fused"] == pytest.approx(many[source].scores["fused"], abs=1e-12)
            assert hit.scores["dense"] == pytest.approx(many[source].scores["dense"], abs=1e-6)  # the blend weighs it
        # the early stop (fewer candidates where BM25 and the bi-encoder agree) changes no score either
        stopped = {h.source_id: h for h in qa.search(question, top_k=3, candidates=8, agreed_candidates=3).hits}
        for source, hit in stopped.items():
            assert hit.scores["final"] == pytest.approx(many[source].scores["final"], abs=1e-6)


def _int8_screen(tiny_cross_encoder, cache_dir, keep=1):
    """The CPU default's reranker: int8 screens every candidate, fp32 re-scores its best ``keep``."""
    from pipeline.rerank.cascade import Cascade
    from pipeline.rerank.reranker import Reranker

    def one(backend):
        return Reranker.load(str(tiny_cross_encoder), device="cpu", backend=backend, cache_dir=cache_dir, progress=False)

    fp32 = one("onnx")
    return Cascade(one("onnx-int8"), fp32, keep), fp32


QUESTIONS = ["What is the capital of Germany?", "Which city is the capital of Spain?", "What is the capital of Italy?",
             "Which river flows north through Egypt?", "What is the largest city of France?",
             "Which mountain is the highest above sea level?", "When was Rome founded?", "How many people live in Berlin?"]


def test_with_the_int8_screen_the_first_hits_carry_fp32_scores(tiny_index, tiny_cross_encoder, tmp_path):
    """Issue 15: the screen re-scores its own best by int8; the pipeline re-scores whatever the final order puts first."""
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu", rerank_backend="torch")
    screen, fp32 = _int8_screen(tiny_cross_encoder, tmp_path)
    qa.reranker = screen
    overtaken = 0
    for question in QUESTIONS:
        # weight 0.1: mostly the retrieval order, so the first hit is often not the screen's own pick
        hits = qa.search(question, top_k=5, candidates=8, agreed_candidates=0, rerank_weight=0.1).hits
        int8 = {h.id: float(v) for h, v in zip(hits, screen.first.score(question, [h.text for h in hits]))}
        exact = float(fp32.score(question, [hits[0].text])[0])
        assert hits[0].scores["rerank"] == pytest.approx(exact, abs=1e-6)
        overtaken += max(int8, key=int8.get) != hits[0].id
        assert [h.scores["final"] for h in hits] == sorted((h.scores["final"] for h in hits), reverse=True)
    assert overtaken  # the case this is about happened: the first hit was not the screen's own best


POLICY = Policy(reranker=None, coef={"rerank_logit": 1.0, "fused": 3.0, "bm25_log_rank": -0.5}, intercept=-1.0)


def test_the_policy_orders_and_flags_with_one_probability(tiny_index, tiny_cross_encoder):
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu", rerank_backend="torch")
    qa.policy = POLICY
    result = qa.search("What is the capital of Germany?", top_k=6, candidates=6)
    probs = [h.probability for h in result.hits]
    assert probs == sorted(probs, reverse=True)  # a hit shown above another never has a lower probability
    for place, hit in enumerate(result.hits, start=1):
        want = POLICY.score(features(hit.scores["rerank"], hit.scores, hit.ranks))
        assert hit.probability == pytest.approx(want) and hit.scores["final"] == pytest.approx(hit.probability, abs=1e-6)
        assert hit.ranks["final"] == place and hit.answerable == (hit.probability >= 0.5)
    assert result.settings["policy"] == "policy fitted for any reranker"
    # fitted on hybrid candidates: a BM25-only search (raw BM25 scores as "fused") is ordered by the reranker alone
    bm25 = qa.search("What is the capital of Germany?", top_k=6, candidates=6, mode="bm25")
    assert bm25.settings["policy"] == "reranker probability alone"
    assert all(h.probability == h.scores["rerank"] for h in bm25.hits)
    # the raw reranker probabilities are kept, with their own ranks
    raw = sorted(result.hits, key=lambda h: -h.scores["rerank"])
    assert [h.ranks["rerank"] for h in raw] == list(range(1, 7))


def test_a_hits_probability_does_not_depend_on_how_many_candidates(tiny_index, tiny_cross_encoder):
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu", rerank_backend="torch")
    qa.policy = POLICY
    question = "Which city is the capital of Spain?"
    few = {h.source_id: h for h in qa.search(question, top_k=3, candidates=3).hits}
    many = {h.source_id: h for h in qa.search(question, top_k=6, candidates=6).hits}
    assert few and set(few) <= set(many)
    for source, hit in few.items():
        assert hit.probability == pytest.approx(many[source].probability, abs=1e-9)
        assert hit.scores["fused"] == pytest.approx(many[source].scores["fused"], abs=1e-12)
        assert hit.ranks["fused"] == many[source].ranks["fused"]


def test_policy_files_round_trip_and_bad_ones_are_named(tmp_path, caplog):
    path = POLICY.save(tmp_path / "p.json")
    assert Policy.load(path) == POLICY
    (tmp_path / "bad.json").write_text('{"coef": {"rerank_logit": "x"}, "intercept": 0}', encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.json is not a valid policy file"):
        Policy.load(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text('{"coef": {"colour": 1.0}, "intercept": 0}', encoding="utf-8")
    with pytest.raises(ConfigError, match="Unknown ranking policy feature.*colour; valid values: rerank_probability"):
        Policy.load(tmp_path / "odd.json")
    with pytest.raises(ConfigError, match="No ranking policy file at"):
        find_policy(str(tmp_path / "missing.json"), "some/reranker")
    other = Policy(reranker="other/model", coef={"rerank_logit": 2.0}, intercept=0.0).save(tmp_path / "o.json")
    assert find_policy(str(other), "some/reranker").is_reranker_only  # fitted for another model: not used
    assert "fitted for the reranker other/model" in caplog.text
    assert find_policy("none", "x").is_reranker_only
    assert find_policy(None, "x") is None  # the default: the blend of rerank_weight
    fitted = Policy(reranker="/elsewhere/minilm-l6-qnli-squad-tune", coef={"fused": 1.0}, intercept=0.0)
    assert find_policy(str(fitted.save(tmp_path / "f.json")), "/anywhere/minilm-l6-qnli-squad-tune") == fitted


def test_one_hit_per_paragraph_and_each_stage_named_for_what_it_is(tmp_path, tiny_bi_encoder, tiny_cross_encoder):
    """A long paragraph's windows are one hit (its best window); rerank is the probability's rank, final the order."""
    import json

    long_text = " ".join(f"The river Tamsel flows past mill number {i} on its way north." for i in range(12))
    records = [{"id": "tamsel", "title": "Tamsel", "text": long_text}] + [
        {"id": f"p{i}", "title": f"T{i}", "text": f"Paragraph {i} is about a {kind} {thing}."}
        for i, (kind, thing) in enumerate(zip(["slow", "cold", "wide", "long", "dark"] * 3,
                                              ["river", "mill", "lake", "road", "wood"] * 2 + ["bridge"] * 5))
    ]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    build_index(corpus, tmp_path / "idx", bi_encoder=str(tiny_bi_encoder), max_tokens=40, overlap=4, progress=False)
    qa = QAPipeline.load(tmp_path / "idx", reranker=str(tiny_cross_encoder), read=False, device="cpu", rerank_backend="torch")
    windows = sum(p.source_id == "tamsel" for p in qa.index.passages)
    assert windows >= 4  # the long paragraph is several windows in the index ...
    result = qa.search("Which river flows past the mills?", top_k=20, candidates=20, mode="bm25")
    sources = [h.source_id for h in result.hits]
    assert len(sources) == len(set(sources)) and "tamsel" in sources  # ... and one hit in the results
    assert len(sources) >= 3 and [h.ranks["final"] for h in result.hits] == list(range(1, len(sources) + 1))
    finals = [h.scores["final"] for h in result.hits]
    assert finals == sorted(finals, reverse=True)
    by_probability = sorted(result.hits, key=lambda h: -h.probability)
    assert [h.ranks["rerank"] for h in by_probability] == list(range(1, len(sources) + 1))
    assert all(h.scores["rerank"] == h.probability for h in result.hits)
    # The paragraph's probability is its best window's (max-pooling), and that window is the one shown.
    texts = {p.id: p.text for p in qa.index.passages if p.source_id == "tamsel"}
    window_probs = dict(zip(texts, qa.reranker.score("Which river flows past the mills?", list(texts.values()))))
    tamsel = next(h for h in result.hits if h.source_id == "tamsel")
    assert tamsel.id == max(window_probs, key=window_probs.get)
    assert tamsel.probability == pytest.approx(max(window_probs.values()), abs=1e-5)


def test_default_windows_are_what_the_bi_encoder_reads(tmp_path, tiny_bi_encoder, caplog):
    """A window longer than the bi-encoder's max_seq_length would be embedded only in part: the default fits it."""
    import json

    from pipeline.index import SearchIndex
    from pipeline.models.encoder import BiEncoder

    long_text = " ".join(f"Sentence {i} of a very long paragraph about the river Tamsel and its mills." for i in range(40))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "long", "title": "Long", "text": long_text}) + "\n", encoding="utf-8")
    build_index(corpus, tmp_path / "idx", bi_encoder=str(tiny_bi_encoder), progress=False)
    index = SearchIndex.load(tmp_path / "idx")
    encoder = BiEncoder.load(str(tiny_bi_encoder), device="cpu")
    assert encoder.max_seq_length == 128
    assert index.manifest.windows["max_tokens"] == 126  # 128 less [CLS] and [SEP]
    windows = [p.text for p in index.passages]
    assert len(windows) > 3 and any("Sentence 39 " in w for w in windows)  # the end of the paragraph is indexed
    lengths = [len(encoder.tokenizer(w, add_special_tokens=False)["input_ids"]) for w in windows]
    assert max(lengths) <= 126 and max(lengths) > 100  # every window read whole, none needlessly short
    # Asking for longer windows still works, and says what dense retrieval will miss.
    with caplog.at_level("WARNING", logger="pipeline.index.build"):
        build_index(corpus, tmp_path / "idx-448", bi_encoder=str(tiny_bi_encoder), max_tokens=448, progress=False)
    assert SearchIndex.load(tmp_path / "idx-448").manifest.windows["max_tokens"] == 448
    assert "longer than the bi-encoder" in caplog.text and "--window-tokens 126" in caplog.text


def test_blend_formula_on_hand_computed_values():
    """The default order: the probability blended with each fused score relative to the question's best."""
    # fused 1, 3, 2 -> relative 1/3, 1, 2/3; with weight 0.25: 0.25 * p + 0.75 * relative.
    assert blended_scores([0.8, 0.0, 0.4], [1.0, 3.0, 2.0], 0.25) == pytest.approx([0.45, 0.75, 0.6])
    # relative to a best fused score given from outside (the best paragraph need not be among these)
    assert blended_scores([0.8, 0.0], [1.0, 3.0], 0.25, best=4.0) == pytest.approx([0.3875, 0.5625])
    # no positive retrieval evidence (a dense-only search whose best cosine is negative): the reranker alone
    assert blended_scores([0.3, 0.6], [-0.1, -0.2], 0.5) == pytest.approx([0.15, 0.3])
    assert blended_order([0.8, 0.0, 0.4], [1.0, 3.0, 2.0], 0.25) == [1, 2, 0]
    assert blended_order([0.8, 0.0, 0.4], [1.0, 3.0, 2.0], 1.0) == [0, 2, 1]
    assert blended_order([0.5, 0.5], [2.0, 2.0], 0.5) == [0, 1]  # ties keep the retrieval order
    with pytest.raises(ValueError, match="2 probabilities for 3 fused scores"):
        blended_scores([0.1, 0.2], [1.0, 2.0, 3.0], 0.5)
    # the bi-encoder's similarity, weighed on its own; a candidate without one (a BM25 search) adds nothing
    assert blended_scores([0.8, 0.0, 0.4], [1.0, 3.0, 2.0], 0.25, similarities=[0.6, 0.2, None],
                          similarity_weight=0.5) == pytest.approx([0.75, 0.85, 0.6])
    assert blended_order([0.8, 0.0], [1.0, 3.0], 0.25, similarities=[0.9, 0.1], similarity_weight=1.0) == [0, 1]
    with pytest.raises(ValueError, match="1 similarities for 2 fused scores"):
        blended_scores([0.1, 0.2], [1.0, 2.0], 0.5, similarities=[0.3], similarity_weight=0.5)


def test_a_load_time_setting_is_an_error_per_search(tiny_qa):
    with pytest.raises(ConfigError, match="reranker is fixed when the pipeline loads"):
        tiny_qa.search("capital of Germany", reranker="some/other-model")
    with pytest.raises(ConfigError, match="rerank_backend is fixed when the pipeline loads"):
        tiny_qa.search_many(["capital of Germany"], rerank_backend="torch")


def test_threshold_decides_answerable(tiny_qa):
    none = tiny_qa.search("capital of Germany", threshold=1.0)
    assert not none.answerable_hits
    every = tiny_qa.search("capital of Germany", threshold=0.0)
    assert all(h.answerable for h in every.hits)


def test_rerank_off_keeps_fused_order(tiny_qa):
    result = tiny_qa.search("What is the capital of Germany?", rerank=False, mode="bm25")
    assert result.hits[0].id == "berlin"
    assert all(h.probability is None and h.answerable is None for h in result.hits)
    assert [h.ranks["fused"] for h in result.hits] == list(range(1, len(result.hits) + 1))
    assert "rerank" not in result.timings


def test_bad_questions_get_clear_errors(tiny_qa):
    with pytest.raises(QueryError, match="empty"):
        tiny_qa.search("   ")
    with pytest.raises(QueryError, match="the limit is 2,000"):
        tiny_qa.search("why " * 1000)
    with pytest.raises(QueryError, match="must be text"):
        tiny_qa.search(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="valid values: bm25, dense, hybrid"):
        tiny_qa.search("capital", mode="magic")


def test_search_many_matches_search(tiny_qa):
    questions = ["capital of Germany", "highest mountain", "river in Egypt"]
    many = tiny_qa.search_many(questions, top_k=3)
    for question, result in zip(questions, many):
        single = tiny_qa.search(question, top_k=3)
        assert [h.id for h in result.hits] == [h.id for h in single.hits]
        assert [h.probability for h in result.hits] == pytest.approx([h.probability for h in single.hits], abs=1e-5)


def test_loading_without_reranker_and_missing_reranker(tiny_index):
    qa = QAPipeline.load(tiny_index, rerank=False, read=False)
    assert qa.reranker is None
    with pytest.raises(ConfigError, match="loaded without a reranker"):
        qa.search("capital", rerank=True)
    with pytest.raises(ModelNotFoundError, match="cross-encoder/qnli-electra-base"):
        QAPipeline.load(tiny_index, read=False)  # the default reranker is not on this machine


@pytest.mark.slow
def test_real_minilm_ranks_super_bowl_paragraph_first(tmp_path_factory, squad_slice, minilm_path, standin_reranker):
    index = tmp_path_factory.mktemp("real") / "slice"
    build_index(squad_slice, index, bi_encoder=str(minilm_path), progress=False)
    qa = QAPipeline.load(index, reranker=str(standin_reranker), read=False, device="cpu")
    for mode in ("bm25", "dense", "hybrid"):
        result = qa.search(SUPER_BOWL_QUESTION, mode=mode, rerank=False, top_k=5)
        assert result.hits[0].id == "Super_Bowl_50#0", mode
    reranked = qa.search(SUPER_BOWL_QUESTION, top_k=5, candidates=20)
    top = reranked.hits[0]
    assert top.id == "Super_Bowl_50#0" and top.answerable and top.probability > 0.5
    # A question nothing in these articles answers: nothing is flagged answerable.
    off_topic = qa.search("What is the boiling point of liquid nitrogen in kelvin?", top_k=5)
    assert not off_topic.answerable_hits
