import pytest

from pipeline.errors import ModelNotFoundError
from pipeline.models.resolve import resolve_model


def test_local_directory(tiny_cross_encoder):
    resolved = resolve_model(str(tiny_cross_encoder), role="reranker")
    assert resolved.source == "local" and resolved.path == str(tiny_cross_encoder.resolve())


def test_packaged_minilm_by_hub_id_and_alias(minilm_path):
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        resolved = resolve_model(name, role="bi-encoder")
        assert resolved.source in {"package", "hf-cache"}
        assert (resolved.path and (minilm_path / "config.json").is_file())


def test_hf_cache_is_used(tmp_path, monkeypatch, tiny_cross_encoder):
    import shutil

    # Lay out a Hugging Face cache entry by hand, as a download would.
    snapshot = tmp_path / "hub" / "models--acme--tiny-ce" / "snapshots" / "abc123"
    shutil.copytree(tiny_cross_encoder, snapshot)
    (tmp_path / "hub" / "models--acme--tiny-ce" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-ce" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    resolved = resolve_model("acme/tiny-ce", role="reranker")
    assert resolved.source == "hf-cache" and resolved.path.endswith("abc123")


def test_missing_hub_model_offline_names_model_and_how_to_supply():
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("cross-encoder/qnli-electra-base", role="reranker")
    message = str(info.value)
    assert "cross-encoder/qnli-electra-base" in message
    assert "--reranker PATH or QA_SEARCH_RERANKER=PATH" in message
    assert message.count(".") <= 3 and "\n" not in message  # one sentence, no traceback


def test_missing_local_path_is_reported(tmp_path):
    with pytest.raises(ModelNotFoundError, match="No bi-encoder model directory at"):
        resolve_model(str(tmp_path / "nope"), role="bi-encoder")
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(ModelNotFoundError, match="No model directory at"):
        resolve_model(str(tmp_path / "file.bin"))
    with pytest.raises(ModelNotFoundError, match="No reranker model was named"):
        resolve_model("  ", role="reranker")
