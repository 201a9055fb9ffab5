"""Public data sets: download (or copy from a local file) with a sha256 check.

Example::

    >>> from pipeline.datasets import fetch_dataset
    >>> fetch_dataset("squad-dev", from_file="../shared/data/dev-v1.1.json")   # doctest: +SKIP
    PosixPath('data/dev-v1.1.json')
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.errors import ChecksumError, DataError
from pipeline.files import sha256_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str
    sha256: str
    filename: str
    description: str


DATASETS: dict[str, Dataset] = {
    "squad-dev": Dataset(
        name="squad-dev",
        url="https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json",
        sha256="95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
        filename="dev-v1.1.json",
        description="SQuAD v1.1 dev set: 48 Wikipedia articles, 2,067 paragraphs, 10,570 questions (CC BY-SA 4.0)",
    ),
}


def _download(url: str, target: Path, progress: bool) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=30.0) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0) or None
            with target.open("wb") as fh, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"Downloading {target.name}", disable=not progress
            ) as bar:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        raise DataError(
            f"Could not download {url} ({exc}); offline, pass a local copy with --from FILE."
        ) from exc


def fetch_dataset(
    name: str | Dataset,
    dest_dir: str | Path = "data",
    *,
    from_file: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Put data set ``name`` in ``dest_dir`` after checking its sha256; returns the file's path.

    With ``from_file`` the data is copied from that local file instead of
    downloaded. The file is written under a temporary name and renamed only
    after the checksum matches, so a failure leaves nothing half-written.
    """
    if isinstance(name, Dataset):
        dataset = name
    elif name in DATASETS:
        dataset = DATASETS[name]
    else:
        raise DataError(f"Unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}.")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / dataset.filename
    if final.is_file() and sha256_of(final) == dataset.sha256:
        logger.info("%s is already in place and verified", final)
        return final
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dataset.filename}.", suffix=".part", dir=dest)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if from_file is not None:
            source = Path(from_file).expanduser()
            if not source.is_file():
                raise DataError(f"No such file: {source}.")
            shutil.copyfile(source, tmp)
        else:
            _download(dataset.url, tmp, progress)
        actual = sha256_of(tmp)
        if actual != dataset.sha256:
            origin = str(from_file) if from_file is not None else dataset.url
            raise ChecksumError(
                f"Checksum mismatch for {dataset.name} from {origin}: sha256 {actual}, expected {dataset.sha256}. "
                "Nothing was written."
            )
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Wrote %s (sha256 verified)", final)
    return final
