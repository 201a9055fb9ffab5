"""Beyond one machine, on Ray (the optional ``[ray]`` extra): cluster embedding and model replicas.

``cluster`` (connect to or start a Ray cluster; a clear error when Ray is not installed),
``ray_build`` (``qa-search build --ray``: Ray Data embeds the passages into ``.npy`` shards,
the index is assembled from them like ``--vectors``), ``deployments`` (the Ray Serve
deployments: retrieval, reranker, reader) and ``remote`` (the objects the HTTP app calls,
which forward to those deployments). Nothing here imports Ray at module level: every
single-process command works without it installed.
"""
