"""``qa-search build --ray``: embed the passages on a Ray cluster, then build the index from the vectors.

1. The corpus is read, cleaned and windowed here, by the same code as a local
   build (:func:`~pipeline.corpus.load_corpus`), so passage ids and order are
   identical.
2. The passages go to Ray Data in blocks of ``shard_size``; ``map_batches``
   runs bi-encoder actors (``compute=ActorPoolStrategy(size=actors)``, one GPU
   per actor where the cluster has GPUs, CPU actors otherwise).
3. Vectors stream back in passage order into ``.npy`` shards of a work
   directory (``00000.npy``, ``00001.npy``, ...; each written under a
   temporary name, then renamed). ``shards.json`` records what the shards were
   made from (corpus checksum, model fingerprint, windows, shard size): a run
   interrupted and started again with the same inputs embeds only the shards
   that are missing.
4. The index is assembled from the shard folder through the same code path as
   ``qa-search build --vectors FOLDER`` (:func:`assemble_index`).

Example::

    >>> from pipeline.scale_out.ray_build import build_index_on_ray
    >>> build_index_on_ray("data/dev-v1.1.json", "indexes/squad-dev", actors=2)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from pipeline.config import DEFAULT_BI_ENCODER
from pipeline.corpus import Passage, load_corpus
from pipeline.errors import CorpusError, QASearchError
from pipeline.index import build_index
from pipeline.index.build import BuildReport, encoder_window
from pipeline.models.encoder import BiEncoder
from pipeline.scale_out.cluster import connect, gpus_available

logger = logging.getLogger(__name__)

KEY_FILE = "shards.json"
#: Read by ``--vectors`` (branch ``scale``) to check the model: ``{"model", "fingerprint"}``.
META_FILE = "vectors.json"
DEFAULT_SHARD_SIZE = 4096
DEFAULT_BATCH_SIZE = 64


def shard_name(number: int) -> str:
    return f"{number:05d}.npy"


def work_directory_for(index: str | Path) -> Path:
    """Where the shards of a build of ``index`` go by default: ``.NAME.ray-vectors`` beside it."""
    final = Path(index).expanduser()
    return final.parent / f".{final.name}.ray-vectors"


@dataclass
class ShardPlan:
    """The shards of one corpus: how many, their size, and which are already on disk."""

    directory: Path
    passages: int
    shard_size: int

    @property
    def count(self) -> int:
        return -(-self.passages // self.shard_size)

    def rows(self, number: int) -> tuple[int, int]:
        start = number * self.shard_size
        return start, min(start + self.shard_size, self.passages)

    def done(self, number: int) -> bool:
        path = self.directory / shard_name(number)
        if not path.is_file():
            return False
        start, stop = self.rows(number)
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError):
            return False
        return shape[0] == stop - start

    def missing(self) -> list[int]:
        return [n for n in range(self.count) if not self.done(n)]


def open_work_directory(directory: Path, key: dict[str, Any]) -> None:
    """Keep the shards in ``directory`` if they were made from ``key``; otherwise empty it."""
    path = directory / KEY_FILE
    if path.is_file():
        try:
            same = json.loads(path.read_text(encoding="utf-8")) == key
        except ValueError:
            same = False
        if not same:
            logger.info("Discarding the shards in %s: they were made from another corpus, model or shard size", directory)
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.tmp"):
        leftover.unlink()
    tmp = directory / (KEY_FILE + ".tmp")
    tmp.write_text(json.dumps(key, indent=2), encoding="utf-8")
    tmp.replace(path)


def write_shard(path: Path, vectors: np.ndarray) -> None:
    """One shard, atomically: a temporary name that does not end in ``.npy``, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    tmp.replace(path)


@dataclass
class RayBuildReport:
    """A build on Ray: the index build's report, and what the cluster did."""

    build: BuildReport
    actors: int
    shards: int
    shards_resumed: int
    shards_embedded: int
    embed_seconds: float

    def summary(self) -> str:
        return (f"Ray: {self.actors} embedding actor(s), {self.shards_embedded} of {self.shards} shards embedded "
                f"in {self.embed_seconds:.1f} s ({self.shards_resumed} already done)")


class Embedder:
    """A Ray Data actor: loads the bi-encoder once, then embeds the batches it is given."""

    def __init__(self, model: str, device: str | None, batch_size: int):
        self.encoder = BiEncoder.load(model, device=device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(t) for t in batch["text"]], batch_size=self.batch_size)
        return {"shard": batch["shard"], "row": batch["row"], "vector": vectors}


def embed_shards(
    ray,
    passages: Sequence[Passage],
    plan: ShardPlan,
    model: str,
    *,
    actors: int,
    batch_size: int,
    device: str | None,
    progress: bool,
) -> int:
    """Embed the missing shards of ``plan`` on the cluster; returns how many were written."""
    import pyarrow as pa
    from ray.data import ActorPoolStrategy, DataContext

    todo = plan.missing()
    if not todo:
        return 0
    # Blocks of a few batches each, so that every actor has work even when there are fewer shards than actors.
    block_rows = max(1, min(plan.shard_size, batch_size * 4))
    blocks = []
    for number in todo:
        start, stop = plan.rows(number)
        for lo in range(start, stop, block_rows):
            hi = min(lo + block_rows, stop)
            blocks.append(pa.table({
                "shard": pa.array([number] * (hi - lo), pa.int32()),
                "row": pa.array(range(lo - start, hi - start), pa.int32()),
                "text": pa.array([p.text for p in passages[lo:hi]], pa.string()),
            }))
    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # shards complete in order: few partial buffers
    context.enable_progress_bars = False  # this module shows its own
    if not logger.isEnabledFor(logging.INFO):
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    gpu = gpus_available(ray)
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    dataset = ray.data.from_arrow(blocks).map_batches(
        Embedder,
        fn_constructor_kwargs={"model": model, "device": device or ("cuda" if gpu else "cpu"), "batch_size": batch_size},
        batch_size=block_rows,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors),
        **resources,
    )
    buffers: dict[int, np.ndarray] = {}
    filled: dict[int, int] = {}
    written = 0
    total = sum(plan.rows(n)[1] - plan.rows(n)[0] for n in todo)
    with tqdm(total=total, desc="Embedding on Ray", unit="passage", disable=not progress) as bar:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for number in np.unique(batch["shard"]):
                number = int(number)
                rows = batch["shard"] == number
                start, stop = plan.rows(number)
                if number not in buffers:
                    buffers[number] = np.empty((stop - start, batch["vector"].shape[1]), np.float32)
                    filled[number] = 0
                buffers[number][batch["row"][rows]] = batch["vector"][rows]
                filled[number] += int(rows.sum())
                bar.update(int(rows.sum()))
                if filled[number] == stop - start:
                    write_shard(plan.directory / shard_name(number), buffers.pop(number))
                    written += 1
    if buffers:
        raise QASearchError(f"Ray returned no vectors for shards {sorted(buffers)}; run the build again to resume.")
    return written


def assemble_index(corpus: str | Path, index: str | Path, plan: ShardPlan, encoder: BiEncoder,
                   passages: Sequence[Passage], **options: Any) -> BuildReport:
    """Build the index from the shard folder through the same code as ``qa-search build --vectors FOLDER``."""
    # The vectors were just made by this model from these passages: no spot check needed.
    return build_index(corpus, index, bi_encoder=encoder, vectors=plan.directory, vectors_check=0, **options)


def build_index_on_ray(
    corpus: str | Path,
    index: str | Path,
    *,
    address: str | None = None,
    actors: int = 2,
    bi_encoder: str = DEFAULT_BI_ENCODER,
    shard_size: int = DEFAULT_SHARD_SIZE,
    work_dir: str | Path | None = None,
    keep_shards: bool = False,
    fmt: str = "auto",
    strict: bool = True,
    max_tokens: int | None = None,
    overlap: int = 64,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    **options: Any,
) -> "RayBuildReport":
    """Embed ``corpus`` on a Ray cluster and write the index at ``index``; see the module docstring.

    ``options`` go to :func:`~pipeline.index.build_index` (``faiss_kind=``, ...).
    ``num_cpus`` caps a local cluster started here (ignored with ``address``).
    """
    if actors < 1:
        raise QASearchError(f"--ray-actors must be at least 1 ({actors} given).")
    if shard_size < 1:
        raise QASearchError(f"--shard-size must be at least 1 ({shard_size} given).")
    started = time.perf_counter()
    ray = connect(address, num_cpus=num_cpus)
    encoder = BiEncoder.load(bi_encoder, device="cpu")
    max_tokens = encoder_window(encoder, max_tokens)
    corpus_data = load_corpus(corpus, fmt, strict=strict, tokenizer=encoder.tokenizer, max_tokens=max_tokens, overlap=overlap)
    passages = corpus_data.passages
    if not passages:
        raise CorpusError("the corpus holds no text to index", path=str(corpus))
    fingerprint = encoder.fingerprint()
    directory = Path(work_dir).expanduser() if work_dir else work_directory_for(index)
    key = {"corpus": corpus_data.checksum, "passages": len(passages), "bi_encoder": encoder.name,
           "fingerprint": fingerprint, "windows": [max_tokens, overlap], "shard_size": shard_size}
    open_work_directory(directory, key)
    (directory / META_FILE).write_text(json.dumps({"model": encoder.name, "fingerprint": fingerprint}), encoding="utf-8")
    plan = ShardPlan(directory, len(passages), shard_size)
    resumed = plan.count - len(plan.missing())
    if resumed:
        logger.info("Resuming: %d of %d shards are already embedded in %s", resumed, plan.count, directory)
    t0 = time.perf_counter()
    model = str(encoder.resolved.path) if encoder.resolved else bi_encoder
    written = embed_shards(ray, passages, plan, model, actors=actors, batch_size=batch_size, device=device, progress=progress)
    embed_seconds = time.perf_counter() - t0
    report = assemble_index(corpus, index, plan, encoder, passages, fmt=fmt, strict=strict, max_tokens=max_tokens,
                            overlap=overlap, progress=progress, **options)
    report.seconds = time.perf_counter() - started
    if not keep_shards:
        shutil.rmtree(directory, ignore_errors=True)
    return RayBuildReport(report, actors, plan.count, resumed, written, embed_seconds)
