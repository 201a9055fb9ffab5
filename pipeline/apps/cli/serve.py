"""``qa-search serve``: the HTTP API."""

from __future__ import annotations

import argparse

from pipeline.apps.cli.common import add_pipeline_options, pipeline_settings


def _cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.apps.server import ServerSettings, serve

    settings = ServerSettings.from_env(
        host=args.host,
        port=args.port,
        cors_origins=args.cors_origin,
        batching=False if args.no_batching else None,
        batch_max_wait_ms=args.batch_wait_ms,
        batch_max_pairs=args.batch_max_pairs,
        max_query_chars=args.max_query_chars,
        max_documents=args.max_documents,
        max_document_chars=args.max_document_chars,
        max_top_k=args.max_top_k,
        max_candidates=args.max_candidates,
        max_body_bytes=args.max_body_bytes,
        max_concurrency=args.max_concurrency,
    )
    if args.ray:
        from pipeline.apps.server.ray_serve import serve_on_ray
        from pipeline.scale_out.scaling import RayScaling

        scaling = RayScaling.from_env(
            api_replicas=args.api_replicas,
            retrieval_replicas=args.retrieval_replicas,
            reranker_replicas=args.reranker_replicas,
            reader_replicas=args.reader_replicas,
            reranker_max_replicas=args.reranker_max_replicas,
            reader_max_replicas=args.reader_max_replicas,
            replica_cpus=args.replica_cpus,
        )
        serve_on_ray(args.index, pipeline_settings(args), settings, scaling, address=args.address)
        return 0
    serve(args.index, pipeline_settings(args), settings)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve search, rerank and score over HTTP (FastAPI + Uvicorn)",
        description="HTTP API: POST /v1/search, /v1/rerank (Cohere/Jina shape), /v1/score (vLLM shape); "
        "GET /v1/models, /healthz, /readyz; OpenAPI at /docs. Set QA_SEARCH_API_KEY to require "
        "'Authorization: Bearer <key>'. Every limit can also be set as QA_SEARCH_SERVER_<NAME>.",
    )
    add_pipeline_options(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                       help="allow browser calls from this origin (repeatable; default: CORS off)")
    serve.add_argument("--no-batching", action="store_true", help="score every request alone (no micro-batching)")
    serve.add_argument("--batch-wait-ms", type=float, help="how long a request waits for others to share a batch (default 5)")
    serve.add_argument("--batch-max-pairs", type=int, help="most (query, document) pairs in one shared call (default 128)")
    serve.add_argument("--max-query-chars", type=int, help="longest query (default 2000)")
    serve.add_argument("--max-documents", type=int, help="most documents per rerank/score call (default 1000)")
    serve.add_argument("--max-document-chars", type=int, help="longest document (default 20000)")
    serve.add_argument("--max-top-k", type=int, help="largest top_k a search may ask for (default 100)")
    serve.add_argument("--max-candidates", type=int, help="largest candidates a search may ask for (default 500)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    serve.add_argument("--max-concurrency", type=int, help="connections served at once, more get 503 (default 256)")
    ray = serve.add_argument_group(
        "on a Ray cluster (pip install 'qa-search[ray]'; see docs/ray.md)",
        "The same API, with the retrieval, reranker and reader in Ray Serve deployments. "
        "Each count can also be set as QA_SEARCH_RAY_<NAME> (e.g. QA_SEARCH_RAY_RERANKER_REPLICAS=4).",
    )
    ray.add_argument("--ray", action="store_true", help="serve with Ray Serve: model replicas behind the same HTTP API")
    ray.add_argument("--address", metavar="ADDR", help="Ray cluster to use (default $RAY_ADDRESS, else a local one)")
    ray.add_argument("--api-replicas", type=int, metavar="N", help="HTTP app replicas (default 1)")
    ray.add_argument("--retrieval-replicas", type=int, metavar="N", help="index + bi-encoder replicas (default 1)")
    ray.add_argument("--reranker-replicas", type=int, metavar="N", help="cross-encoder replicas (default 1; the minimum when autoscaling)")
    ray.add_argument("--reranker-max-replicas", type=int, metavar="N", help="autoscale the reranker up to N replicas (default: fixed count)")
    ray.add_argument("--reader-replicas", type=int, metavar="N", help="reader replicas (default 1)")
    ray.add_argument("--reader-max-replicas", type=int, metavar="N", help="autoscale the reader up to N replicas (default: fixed count)")
    ray.add_argument("--replica-cpus", type=float, metavar="CPUS", help="CPUs each model replica reserves (default 1; GPUs: one per model replica where there are GPUs)")
    serve.set_defaults(handler=_cmd_serve)
