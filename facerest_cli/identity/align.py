"""Alignment to the 112x112 ArcFace template, for the input face and for the restored face.

Both return ``(112, 112, 3)`` float32 **BGR** in ``[0, 1]`` (the recognizers' input, see ``recognizers``).
The input face is warped from the original frame with the detector's landmarks. The restored face is warped from
the restored crop with the *same* landmarks carried into crop coordinates by the crop's matrix (image -> crop):
the restorer never moves a face, and re-detecting a hallucinated face would measure the detector, not identity.
Outside the picture both use facexlib's border colour, as the restorer's input crop does, so a face at the
picture's edge is compared like with like.
"""

from __future__ import annotations

import math

import numpy as np

from facerest_cli.align.templates import template_points
from facerest_cli.align.warp import BORDER_VALUE, affine_scale, estimate_similarity, warp_to_crop
from facerest_cli.pixels import as_bgr, to_float

ARCFACE_SIZE = 112
_BORDER_FLOAT = tuple(v / 255.0 for v in BORDER_VALUE)
_PRESHRINK_BELOW = 0.5  # warp_to_crop area-shrinks first below this scale


def arcface_matrix(landmarks: np.ndarray) -> np.ndarray:
    """``(2, 3)`` similarity mapping the five landmarks onto the ArcFace 112 template."""
    return estimate_similarity(np.asarray(landmarks, np.float64), template_points("arcface112", ARCFACE_SIZE))


def to_crop_coords(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Image-space points ``(N, 2)`` -> crop space through an image -> crop matrix ``(2, 3)``."""
    m = np.asarray(matrix, np.float64)
    return np.asarray(landmarks, np.float64) @ m[:, :2].T + m[:, 2]


def align_input(pixels: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The input face: ``pixels`` is the original ``(H, W, C)`` uint8/uint16 frame, ``landmarks`` ``(5, 2)``."""
    return to_float(warp_to_crop(as_bgr(pixels), arcface_matrix(landmarks), ARCFACE_SIZE))


def align_restored(restored: np.ndarray, landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The restored face: ``restored`` is the ``(S, S, 3)`` float32 BGR [0, 1] crop whose image -> crop matrix
    is ``matrix``; ``landmarks`` are the detector's, in image coordinates.

    The restored face is resampled as the input face was, so a passthrough restorer scores ~1: a face that
    ``align_input`` shrinks by more than 2 (area pre-shrink) gets the same pre-shrink here; a smaller face, which
    ``align_input`` samples bilinearly from the photo, is taken from the (upsampled) crop bilinearly after a
    light Gaussian anti-alias (sigma 0.25 * sqrt(1/s^2 - 1) crop pixels for a crop -> 112 scale s). Measured on
    56 faces (Solvay, t1, deepface) with the passthrough restorer: min cosine 0.996 (plain bilinear: 0.977 on
    large faces; area pre-shrink for all: 0.989 on small ones).
    """
    import cv2

    restored = np.asarray(restored, np.float32)
    m = arcface_matrix(to_crop_coords(landmarks, matrix))
    s_r = affine_scale(m)  # crop -> 112
    if s_r * affine_scale(matrix) < _PRESHRINK_BELOW:
        return warp_to_crop(restored, m, ARCFACE_SIZE, border_value=_BORDER_FLOAT)
    if s_r < 1.0:
        restored = cv2.GaussianBlur(restored, (0, 0), 0.25 * math.sqrt(1.0 / (s_r * s_r) - 1.0))
    out = cv2.warpAffine(restored, m, (ARCFACE_SIZE, ARCFACE_SIZE), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=_BORDER_FLOAT)
    return out.reshape(ARCFACE_SIZE, ARCFACE_SIZE, -1)
