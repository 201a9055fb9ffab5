import hashlib

import pytest

from pipeline.datasets import DATASETS, Dataset, fetch_dataset
from pipeline.errors import ChecksumError, DataError


def _dataset(content: bytes) -> Dataset:
    return Dataset("toy", "http://example.invalid/toy.json", hashlib.sha256(content).hexdigest(), "toy.json", "toy")


def test_fetch_from_local_file_verifies_and_writes(tmp_path):
    src = tmp_path / "src.json"
    src.write_bytes(b'{"data": []}')
    out = fetch_dataset(_dataset(b'{"data": []}'), tmp_path / "data", from_file=src, progress=False)
    assert out.read_bytes() == b'{"data": []}'
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["toy.json"]


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.json"
    src.write_bytes(b"tampered")
    dest = tmp_path / "data"
    with pytest.raises(ChecksumError, match="Checksum mismatch for toy.*Nothing was written"):
        fetch_dataset(_dataset(b"original"), dest, from_file=src, progress=False)
    assert list(dest.iterdir()) == []


def test_checksum_mismatch_keeps_an_existing_good_file(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "toy.json").write_bytes(b"original")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"tampered")
    ds = _dataset(b"original")
    # Already verified: nothing is copied over it.
    assert fetch_dataset(ds, dest, from_file=bad, progress=False).read_bytes() == b"original"


def test_missing_local_file_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="No such file"):
        fetch_dataset("squad-dev", tmp_path, from_file=tmp_path / "nope.json", progress=False)
    with pytest.raises(DataError, match="Unknown data set 'squad-train'; known: squad-dev"):
        fetch_dataset("squad-train", tmp_path, progress=False)


def test_download_failure_suggests_from_offline(tmp_path):
    # pytest-socket blocks the network: the download fails fast and says how to work offline.
    with pytest.raises(DataError, match="--from FILE"):
        fetch_dataset(_dataset(b"x"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_official_squad_dev_copy(tmp_path, squad_dev_path):
    out = fetch_dataset("squad-dev", tmp_path, from_file=squad_dev_path, progress=False)
    assert out.name == "dev-v1.1.json"
    assert DATASETS["squad-dev"].sha256 == "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"
