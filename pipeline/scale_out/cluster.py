"""Ray is optional: import it on demand, and connect to a cluster (or start a local one).

Example::

    >>> from pipeline.scale_out.cluster import connect
    >>> ray = connect(None, num_cpus=2)      # a local cluster of 2 CPUs   # doctest: +SKIP
    >>> ray = connect("ray://head:10001")    # an existing cluster          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

#: What to install for ``--ray``.
RAY_EXTRA = "pip install 'qa-search[ray]'"


def require_ray():
    """The ``ray`` module, or a :class:`ConfigError` that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from exc
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None):
    """Connect to the cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``).

    Without an address, ``$RAY_ADDRESS`` is used when set; otherwise a local
    cluster is started in this process (``num_cpus`` caps it). Returns the
    ``ray`` module. Connecting twice is harmless.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"Cannot reach a Ray cluster at {address}: {exc}") from exc
    logger.info("Ray cluster: %s", ray.cluster_resources())
    return ray


def gpus_available(ray) -> bool:
    """Whether the cluster has at least one GPU (actors then ask for one each)."""
    return ray.cluster_resources().get("GPU", 0) >= 1
