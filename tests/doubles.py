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


class BlurRestorer(CountingRestorer):
    """Test restorer: Gaussian blur (``sigma`` crop pixels) of every crop; records its batch sizes."""

    def __init__(self, size: int = 512, sigma: float = 6.0):
        super().__init__(size)
        self.sigma = sigma
        self.name = f"blur-{sigma:g}"

    def __call__(self, faces, prior=None):
        import cv2
        import numpy as np
        import torch

        super().__call__(faces)
        x = faces.permute(0, 2, 3, 1).float().cpu().numpy()
        y = np.stack([cv2.GaussianBlur(f, (0, 0), self.sigma) for f in x])
        return torch.from_numpy(y).permute(0, 3, 1, 2).to(faces.device)
