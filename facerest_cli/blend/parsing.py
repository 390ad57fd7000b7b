"""Face-parsing blend masks (``--mask bisenet|parsenet``), computed on the restored crops in batches.

The mask keeps the face itself (skin, brows, eyes, glasses, ears, nose, mouth, lips) and excludes hair, hat,
neck, jewellery, clothes and background, so a restorer's hallucinated hair or collar never replaces the photo's.
It is then feathered and limited by the crop-border feather mask, so it is still 0 at the crop border.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facerest_cli.blend.mask import feather_mask

if TYPE_CHECKING:
    from facerest_cli.pipeline import FaceJob
    from facerest_cli.weights.cache import WeightsStore

# ImageNet statistics for BiSeNet; ParseNet takes [-1, 1].
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ParsingMaskStage:
    """BatchStage: after each restore batch, parse the restored crops and store per-face blend masks."""

    def __init__(self, name: str, net, face_classes: tuple[int, ...], device: str, size: int = 512):
        import torch

        self.name = f"mask-{name}"
        self.parser = name
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.face_classes = torch.tensor(face_classes, device=self.device)
        self.feather = feather_mask(size)
        # Feathering width of the parsed edge, in crop pixels (about 2% of the crop).
        self.sigma = size / 50.0

    def before_restore(self, jobs: list["FaceJob"]) -> None:
        pass

    def after_restore(self, jobs: list["FaceJob"]) -> list["FaceJob"]:
        import cv2
        import torch

        crops = np.stack([j.restored for j in jobs])  # (N, S, S, 3) BGR [0, 1]
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).flip(1)  # RGB
        if self.parser == "bisenet":
            mean = torch.tensor(_IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(_IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        else:
            x = x * 2.0 - 1.0
        with torch.inference_mode():
            labels = self.net.parse(x).argmax(1)  # (N, S, S)
            face = torch.isin(labels, self.face_classes).float().cpu().numpy()
        for j, m in zip(jobs, face):
            soft = cv2.GaussianBlur(m, (0, 0), self.sigma)
            j.frame.masks[j.i] = np.minimum(soft, self.feather).astype(np.float32)
        return []


def build_mask_stage(mask: str, store: "WeightsStore", device: str, size: int = 512) -> ParsingMaskStage | None:
    """``feather`` -> None (the pipeline's default mask); ``auto`` -> bisenet if its weights are installed."""
    from facerest_cli.errors import UsageError

    if mask == "auto":
        mask = "bisenet" if store.locate("bisenet") is not None else "feather"
    if mask == "feather":
        return None
    if mask not in ("bisenet", "parsenet"):
        raise UsageError(f"--mask must be auto, feather, bisenet or parsenet; got {mask!r}")
    from importlib import import_module

    from facerest_cli.weights.loader import load_model

    entry = store.registry.get(mask)
    net = load_model(entry, store.ensure(mask))
    classes = import_module(f"facerest_cli.models.{mask}").FACE_CLASSES
    return ParsingMaskStage(mask, net, classes, device, size)
