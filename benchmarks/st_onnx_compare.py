"""sentence-transformers' own ONNX backend vs the project's export, each against PyTorch fp32 in its own run.

sentence-transformers (>= 4.1) ships ``CrossEncoder(backend="onnx")`` and
``export_dynamic_quantized_onnx_model``; both need ``optimum-onnx``, which (as of this writing) pins
``transformers<4.58``, while this project runs on transformers 5. So the two are measured in two
environments, each against its own PyTorch fp32 baseline on the same pairs, and compared by ratio:

    # the project's venv: the project's engines (onnx fp32, onnx-int8)
    python benchmarks/st_onnx_compare.py --engine project --out benchmarks/results/st_onnx_project.json
    # a venv with sentence-transformers + optimum-onnx[onnxruntime] (transformers 4.57):
    python benchmarks/st_onnx_compare.py --engine st --out benchmarks/results/st_onnx_st.json

Pairs: the first 8 held-out questions' gold paragraphs and 19 other paragraphs each, fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))


def pairs_from_squad(path: Path, n_questions: int = 8, per_question: int = 20) -> list[tuple[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs = [p["context"] for a in data[24:48] for p in a["paragraphs"]]
    out = []
    qs = [(qa["question"], p["context"]) for a in data[24:48] for p in a["paragraphs"] for qa in p["qas"]][:n_questions]
    for i, (q, gold) in enumerate(qs):
        others = [paragraphs[(i * 37 + j * 11) % len(paragraphs)] for j in range(per_question - 1)]
        out.extend([(q, gold)] + [(q, o) for o in others])
    return out


def timed(fn, pairs, repeats: int = 3) -> tuple[float, np.ndarray]:
    fn(pairs[:4])  # warm up
    best, scores = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        scores = np.asarray(fn(pairs), dtype=np.float64).reshape(-1)
        best = min(best, time.perf_counter() - start)
    return len(pairs) / best, scores


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["project", "st"], required=True)
    p.add_argument("--model", type=Path, default=SHARED / "models" / "minilm-l6-qnli-squad-tune")
    p.add_argument("--squad", type=Path, default=SHARED / "data" / "dev-v1.1.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(args.threads)
    pairs = pairs_from_squad(args.squad)
    base = CrossEncoder(str(args.model), device="cpu")
    rows = {}
    failures: dict[str, str] = {}
    base_rate, reference = timed(lambda ps: base.predict(ps, batch_size=32), pairs)
    rows["torch fp32 CrossEncoder.predict (baseline)"] = (base_rate, reference)
    if args.engine == "st":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(args.model, tmp, dirs_exist_ok=True)  # the export writes beside the model, never into it
            onnx = CrossEncoder(tmp, device="cpu", backend="onnx")
            rows["st backend=onnx fp32"] = timed(lambda ps: onnx.predict(ps, batch_size=32), pairs)
            try:
                export_dynamic_quantized_onnx_model(onnx, "avx2", tmp)  # writes tmp/onnx/model_qint8_avx2.onnx
                q = CrossEncoder(tmp, device="cpu", backend="onnx",
                                 model_kwargs={"file_name": "onnx/model_qint8_avx2.onnx"})
                rows["st backend=onnx int8 (avx2)"] = timed(lambda ps: q.predict(ps, batch_size=32), pairs)
            except Exception as exc:  # noqa: BLE001 - reported in the table, not fatal
                failures["st backend=onnx int8 (avx2)"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    else:
        sys.path.insert(0, str(REPO))
        from pipeline.rerank.reranker import Reranker

        for backend in ("onnx", "onnx-int8"):
            r = Reranker.load(str(args.model), device="cpu", backend=backend, threads=args.threads, cache_size=0)
            rows[f"project {backend}"] = timed(r.score_pairs, pairs)
    out = {}
    print(f"{len(pairs)} pairs, {args.threads} threads, engine set {args.engine!r}")
    print("| configuration | pairs/s | x baseline | max abs diff vs baseline | top-1 agreement |")
    print("|---|---:|---:|---:|---:|")
    for name, (rate, scores) in rows.items():
        diff = float(np.max(np.abs(scores - reference)))
        top1 = float(np.mean(scores.reshape(-1, 20).argmax(1) == reference.reshape(-1, 20).argmax(1)))
        out[name] = {"pairs_per_s": rate, "ratio": rate / base_rate, "max_abs_diff": diff, "top1_agreement": top1}
        print(f"| {name} | {rate:.1f} | {rate / base_rate:.2f} | {diff:.4f} | {top1:.2f} |")
    for name, why in failures.items():
        print(f"| {name} | failed: {why} | | | |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"engine": args.engine, "pairs": len(pairs), "threads": args.threads,
                                        "load_average": os.getloadavg(), "rows": out,
                                        "failures": failures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
