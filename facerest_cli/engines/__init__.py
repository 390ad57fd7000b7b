"""Engines that run a ``facerest run`` job. ``local`` is ``facerest_cli.pipeline`` (three threads in one process,
called by ``facerest_cli.job.run_job``); ``ray`` (``facerest_cli.engines.ray``) runs the same stages as Ray Data
operators on actor pools, across the cores and GPUs of one machine or a cluster. Both write the same bytes.

Nothing here is imported by ``import facerest_cli``: Ray is an optional extra (``pip install facerest[ray]``).
"""

from __future__ import annotations


def ray_available() -> tuple[bool, str]:
    """(importable, version or why not), without starting anything."""
    try:
        from importlib import metadata

        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        return False, f"not importable ({e}); install it with `pip install facerest[ray]`"
    try:
        return True, metadata.version("ray")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source build
        return True, "unknown version"
