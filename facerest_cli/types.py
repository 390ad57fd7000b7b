"""The typed contracts between pipeline stages. Conventions are written here once.

Pixel arrays (numpy)
    ``(H, W, C)``, C-contiguous, ``uint8`` or ``uint16``; C is 1 (gray), 3 (BGR) or 4 (BGRA). Channel order is
    OpenCV's BGR everywhere a numpy image appears, because decoders, detectors and warps are OpenCV.
Points and boxes
    Image pixel coordinates, float, origin at the *centre* of the top-left pixel (OpenCV's convention):
    ``x`` to the right, ``y`` down. Boxes are ``(x1, y1, x2, y2)``.
Five landmarks
    ``(5, 2)`` float32 in this order, as the person faces the camera: the eye on the image's left, the eye on
    the image's right, nose tip, left mouth corner, right mouth corner (insightface's ``arcface_dst`` order).
Affine matrices
    ``(2, 3)`` float64 mapping **image -> crop** coordinates (``cv2.warpAffine(img, M, ...)`` produces the crop).
    ``invert_affine(M)`` maps crop -> image, for paste-back.
Face crops handed to restorers (torch)
    ``(N, 3, S, S)`` float32 (or the autocast dtype), **RGB**, range ``[0, 1]``, on the restorer's device.
    Restorers return the same shape, range and order. Networks that expect [-1, 1] convert inside their adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True)
class ImageMeta:
    """Metadata carried from input to output (archival: nothing is dropped silently)."""

    format: str  # "JPEG", "PNG", "TIFF", "BMP", "WEBP"
    bit_depth: int  # 8 or 16
    channels: int  # 1, 3 or 4 as decoded (before any conversion for processing)
    orientation: int = 1  # EXIF orientation of the source; pixels are already upright
    exif: bytes | None = None  # raw EXIF (orientation reset to 1 when written)
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    n_frames: int = 1
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecodedImage:
    """An upright image and where it came from."""

    path: Path  # the input file
    rel_path: Path  # path relative to its input root: decides the output location
    pixels: np.ndarray  # (H, W, C) uint8/uint16, BGR(A) or gray, see module docstring
    meta: ImageMeta

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@dataclass(frozen=True)
class Detection:
    """One face found by a detector, in image coordinates of the frame it was run on."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2) float32, LANDMARK_NAMES order

    @property
    def size(self) -> float:
        """Face size in pixels: the longer box side."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to the restorer's template, with the matrix paste-back needs."""

    index: int  # face index within its image, in detection order after selection
    detection: Detection
    crop: np.ndarray  # (S, S, 3) same dtype as the image, BGR
    matrix: np.ndarray  # (2, 3) float64, image -> crop


@dataclass
class FaceRecord:
    """One line of ``report.jsonl``. Later stages add fields under stable keys (identity, pose, frame, track)."""

    source: str
    face_index: int
    bbox: list[float]
    score: float
    landmarks: list[list[float]]
    face_size: float
    detector: str
    restorer: str
    strength: float
    matrix: list[list[float]]
    output: str | None = None
    input_crop: str | None = None
    restored_crop: str | None = None
    identity: dict[str, Any] | None = None
    pose: dict[str, Any] | None = None
    shape: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] | None = None
    frame: int | None = None
    timestamp: float | None = None
    track_id: int | None = None
    notes: list[str] = field(default_factory=list)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    a = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]
