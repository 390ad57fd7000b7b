"""``facerest identity compare``: the cosine between the largest face of one image and that of another."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerest_cli.detect.base import Detector, detect_bounded, to_detection_bgr
from facerest_cli.errors import InputError
from facerest_cli.identity.align import align_input
from facerest_cli.identity.recognizers import Recognizer


@dataclass(frozen=True)
class FaceEmbedding:
    path: Path
    box: list[float]  # x1, y1, x2, y2 in the upright image
    score: float
    norm: float  # the raw embedding's norm (before L2 normalisation)
    vector: np.ndarray  # (D,) unit norm

    def to_dict(self) -> dict:
        return {"path": str(self.path), "box": self.box, "score": round(self.score, 4), "norm": round(self.norm, 4)}


def largest_face(path: Path, detector: Detector, max_side: int = 2048):
    """The decoded image and its largest detection; ``InputError`` when there is no face."""
    from facerest_cli.io.decode import decode_image

    img = decode_image(Path(path))
    dets = detect_bounded(detector, to_detection_bgr(img.pixels), max_side)
    if not dets:
        raise InputError(path, "no face found")
    return img, max(dets, key=lambda d: d.size)


def embed_faces(found: list, recognizer: Recognizer) -> list[FaceEmbedding]:
    """Embed ``largest_face`` results (``(image, detection)`` pairs), all in one recognizer call."""
    emb = recognizer.embed(np.stack([align_input(img.pixels, d.landmarks) for img, d in found]))
    return [
        FaceEmbedding(img.path, [round(float(v), 2) for v in d.box], float(d.score), float(n), v)
        for (img, d), v, n in zip(found, emb.vectors, emb.norms)
    ]


def embed_largest(paths: list[Path], detector: Detector, recognizer: Recognizer, max_side: int = 2048) -> list[FaceEmbedding]:
    """Embed the largest face of each image."""
    return embed_faces([largest_face(p, detector, max_side) for p in paths], recognizer)
