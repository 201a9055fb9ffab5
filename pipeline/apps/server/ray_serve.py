"""``qa-search serve --ray``: the same HTTP app, with the models in Ray Serve deployments.

There is one app definition: the ``Api`` deployment is Ray Serve's ingress for
the FastAPI app that :func:`~pipeline.apps.server.app.create_app` makes (same
routes, schemas, limits, API key, error bodies). The only difference is the
pipeline it is given: :func:`~pipeline.scale_out.remote.remote_pipeline`, whose
retriever, reranker and reader call the ``Retrieval``, ``Reranker`` and
``Reader`` deployments (:mod:`pipeline.scale_out.deployments`). ``/readyz``
answers 200 once every deployment answers.

Replica counts, autoscaling and resources come from
:class:`~pipeline.scale_out.scaling.RayScaling` (flags, ``QA_SEARCH_RAY_*``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from pipeline.apps.server.app import create_app
from pipeline.apps.server.settings import API_KEY_ENV, ServerSettings
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from pipeline.scale_out.cluster import connect, gpus_available, require_ray
from pipeline.scale_out.remote import remote_pipeline
from pipeline.scale_out.scaling import RayScaling

logger = logging.getLogger(__name__)

APP_NAME = "qa-search"


def build_application(index: str, config: PipelineConfig, settings: ServerSettings, scaling: RayScaling, *, gpus: float = 0.0):
    """The Serve application: ``Api`` (the FastAPI app) bound to the model deployments it calls."""
    from ray import serve

    from pipeline.scale_out.deployments import (
        ReaderDeployment,
        RerankerDeployment,
        RetrievalDeployment,
    )

    load = config.load

    @serve.deployment(name="Api")
    @serve.ingress()
    class Api:
        """Ray Serve's ingress: builds the app of :func:`create_app` in each replica (no second copy of the routes)."""

        def __init__(self, retrieval, reranker, reader):
            self.handles = {"retrieval": retrieval, "reranker": reranker, "reader": reader}

        def __serve_build_asgi_app__(self):
            handles = self.handles
            return create_app(
                lambda: remote_pipeline(handles, config, timeout_s=scaling.timeout_s, retries=scaling.retries),
                settings=settings,
            )

    cpus = {"num_cpus": scaling.replica_cpus}
    model = {"num_cpus": scaling.replica_cpus, "num_gpus": gpus}
    retrieval = serve.deployment(RetrievalDeployment, name="Retrieval").options(
        num_replicas=scaling.retrieval_replicas, ray_actor_options=cpus, max_ongoing_requests=16,
    ).bind(str(index), config)
    reranker = None
    if load.rerank:
        batch = settings.batch_max_queries if settings.batching else 1
        reranker = serve.deployment(RerankerDeployment, name="Reranker").options(
            ray_actor_options=model, max_ongoing_requests=max(2 * batch, 8),
            **scaling.replicas(scaling.reranker_replicas, scaling.reranker_max_replicas),
        ).bind(config, batch, settings.batch_max_wait_ms / 1000.0)
    reader = None
    if load.read:
        reader = serve.deployment(ReaderDeployment, name="Reader").options(
            ray_actor_options=model, max_ongoing_requests=16,
            **scaling.replicas(scaling.reader_replicas, scaling.reader_max_replicas),
        ).bind(config)
    return Api.options(
        num_replicas=scaling.api_replicas, ray_actor_options={"num_cpus": min(scaling.replica_cpus, 0.5)},
        max_ongoing_requests=settings.max_concurrency, max_queued_requests=settings.max_concurrency,
    ).bind(retrieval, reranker, reader)


def check_fits(ray, config: PipelineConfig, scaling: RayScaling, gpus: float) -> None:
    """A :class:`ConfigError` when the cluster cannot place every replica (Serve would wait for them forever)."""
    load = config.load
    models = scaling.reranker_replicas * load.rerank + scaling.reader_replicas * load.read
    need_cpus = (scaling.api_replicas * min(scaling.replica_cpus, 0.5)
                 + (scaling.retrieval_replicas + models) * scaling.replica_cpus)
    need_gpus = models * gpus
    have = ray.cluster_resources()
    if need_cpus > have.get("CPU", 0) + 1e-9 or need_gpus > have.get("GPU", 0) + 1e-9:
        raise ConfigError(
            f"The replicas need {need_cpus:g} CPUs and {need_gpus:g} GPUs, the Ray cluster has {have.get('CPU', 0):g} CPUs "
            f"and {have.get('GPU', 0):g} GPUs: lower --replica-cpus or the replica counts, or add nodes."
        )


def start_on_ray(index: str, pipeline_options: Mapping[str, Any], settings: ServerSettings, scaling: RayScaling,
                 *, address: str | None = None):
    """Connect to (or start) a cluster, start Serve's HTTP proxy on ``settings.host:port`` and deploy the app.

    Returns once every deployment is running; ``/readyz`` then turns 200 as soon as the ``Api`` replicas have
    reached the model deployments.
    """
    ray = connect(address)
    from ray import serve

    config = PipelineConfig.from_env(**pipeline_options)
    gpus = scaling.gpus if scaling.gpus >= 0 else (1.0 if gpus_available(ray) else 0.0)
    check_fits(ray, config, scaling, gpus)
    # One HTTP entry point, on the head node, like the single-process server (Serve's default is one per node).
    serve.start(proxy_location="HeadOnly", http_options={"host": settings.host, "port": settings.port})
    try:
        return serve.run(build_application(index, config, settings, scaling, gpus=gpus), name=APP_NAME, route_prefix="/")
    except RuntimeError as exc:
        raise ConfigError(f"A deployment failed to start on the Ray cluster: {str(exc).strip().splitlines()[-1]}") from exc


def serve_on_ray(index: str, pipeline_options: Mapping[str, Any], settings: ServerSettings, scaling: RayScaling,
                 *, address: str | None = None) -> None:
    """``qa-search serve --ray``: deploy, then wait until interrupted; the application is deleted on the way out."""
    require_ray()
    from ray import serve

    if not settings.is_loopback() and settings.api_key is None:
        logger.warning("Listening on %s without an API key: anyone who can reach it can use it (set %s).",
                       settings.host, API_KEY_ENV)
    started = time.perf_counter()
    start_on_ray(index, pipeline_options, settings, scaling, address=address)
    print(f"Serving {index} on http://{settings.host}:{settings.port} with Ray Serve "
          f"(deployed in {time.perf_counter() - started:.1f} s; Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.delete(APP_NAME)
