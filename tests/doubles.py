"""Test doubles shared by the pipeline, video and identity tests (restorers the tests inject into ``run_job``)."""

from __future__ import annotations


class CountingRestorer:
    """Passthrough that records the batch size of every call (the restorer protocol of restore/base.py)."""

    name = "counting"
    template = "ffhq512"
    needs_prior = False

    def __init__(self, size: int = 512):
        self.size = size
        self.calls: list[int] = []

    def __call__(self, faces, prior=None):
        self.calls.append(int(faces.shape[0]))
        return faces
