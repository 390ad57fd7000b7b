"""Face-parsing blend masks (``--mask bisenet|parsenet``), computed on the restored crops in batches.

The mask keeps the face itself (skin, brows, eyes, glasses, ears, nose, mouth, lips) and excludes hair, hat,
neck, jewellery, clothes and background, so a restorer's hallucinated hair or collar never replaces the photo's.
It is then feathered and limited by the crop-border feather mask, so it is still 0 at the crop border. Which
classes are "face" is the parser architecture's fact (``ArchSpec.meta["face_classes"]``: the two parsers order
their 19 classes differently); the input normalisation is its weights.toml entry's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facerest_cli.blend.mask import feather_mask

if TYPE_CHECKING:
    from facerest_cli.registry import Execution, Model
    from facerest_cli.types import FaceState
    from facerest_cli.weights.cache import WeightsStore


class ParsingMaskStage:
    """BatchStage: after each restore batch, parse the restored crops and store per-face blend masks."""

    needs: frozenset[str] = frozenset({"restored"})
    provides: frozenset[str] = frozenset({"mask"})
    finalizes: frozenset[str] = frozenset()
    retries = False  # may run in the write thread (BatchStage), overlapping the next restorer call

    def __init__(self, model: "Model", size: int = 512):
        import torch

        self.model = model
        self.name = f"mask-{model.name}"
        self.parser = model.name
        self.device = torch.device(model.device)
        self.face_classes = torch.tensor(model.spec.arch_spec.meta["face_classes"], device=self.device)
        self.feather = feather_mask(size)
        # Feathering width of the parsed edge, in crop pixels (about 2% of the crop).
        self.sigma = size / 50.0

    def before_restore(self, faces: list["FaceState"]) -> None:
        pass

    def after_restore(self, faces: list["FaceState"]) -> list["FaceState"]:
        import torch

        crops = np.stack([f.restored for f in faces])  # (N, S, S, 3) BGR [0, 1]
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).flip(1)  # RGB
        with torch.inference_mode():
            labels = self.model(self.model.normalise(x)).argmax(1)  # (N, S, S)
        for f, m in zip(faces, self.masks_from_labels(labels)):
            f.mask = m
        return []

    def masks_from_labels(self, labels) -> list[np.ndarray]:
        """``(N, S, S)`` class indices (torch or numpy) -> blend masks: 1 on the face classes, feathered by a
        Gaussian of ``sigma`` and limited by the crop-border feather mask (so exactly 0 at the border)."""
        import cv2
        import torch

        face = torch.isin(torch.as_tensor(labels, device=self.device), self.face_classes).float().cpu().numpy()
        return [np.minimum(cv2.GaussianBlur(m, (0, 0), self.sigma), self.feather).astype(np.float32) for m in face]

    def summary(self) -> None:
        return None


def build_mask_stage(mask: str, store: "WeightsStore", device: str, size: int = 512,
                     execution: "Execution | None" = None) -> ParsingMaskStage | None:
    """``feather`` -> None (the scheduler's default mask); ``auto`` -> the best installed parser (weights.toml
    ``auto`` ranks), else feather: a parser is never downloaded just for ``auto``."""
    from facerest_cli.errors import UsageError
    from facerest_cli.registry import build, names, resolve_auto

    choices = names("parser", store.registry)
    if mask == "auto":
        installed, _ = resolve_auto("parser", store)
        mask = installed[0] if installed else "feather"
    if mask == "feather":
        return None
    if mask not in choices:
        raise UsageError(f"--mask must be auto, feather or one of {', '.join(choices)}; got {mask!r}")
    return ParsingMaskStage(build(mask, store, device, execution=execution, role="parser"), size)
