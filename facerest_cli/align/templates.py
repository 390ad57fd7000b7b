"""Five-point alignment templates, in LANDMARK_NAMES order (image-left eye first)."""

from __future__ import annotations

import numpy as np

# FFHQ-aligned 512x512 faces (facexlib FaceRestoreHelper's template, used by GFPGAN/CodeFormer/GPEN/RestoreFormer).
FFHQ_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    np.float64,
)

# insightface arcface_dst: the 112x112 template ArcFace recognizers were trained on.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)

TEMPLATES = {"ffhq512": (FFHQ_512, 512), "arcface112": (ARCFACE_112, 112)}


def template_points(name: str, size: int | None = None) -> np.ndarray:
    """The template's points for a ``size``x``size`` crop (scaled from its native size)."""
    pts, native = TEMPLATES[name]
    return pts * ((size or native) / native)
