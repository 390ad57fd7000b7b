"""Detection + alignment for one frame: the face list a frame carries into the restore batches."""

from __future__ import annotations

import numpy as np

from facerest_cli.align.templates import template_points
from facerest_cli.align.warp import estimate_similarity, warp_to_crop
from facerest_cli.config import RunConfig
from facerest_cli.detect.base import Detector, detect_bounded, select_faces, to_detection_bgr
from facerest_cli.errors import InputError
from facerest_cli.types import AlignedFace, DecodedImage, Detection, FaceRecord


class FacePreparer:
    """Finds faces in a frame and warps them to the restorer's template.

    ``detect`` applies the bounded resolution and ``--faces``/``--min-face``; ``align`` warps given detections
    (video passes tracked, smoothed ones); ``aligned_input`` treats a whole image as an aligned face.
    """

    def __init__(self, cfg: RunConfig, detector: Detector | None, size: int, template: str, restorer_name: str):
        self.cfg = cfg
        self.detector = detector
        self.size = size
        self.template = template_points(template, size)
        self.restorer_name = restorer_name

    @property
    def detector_name(self) -> str:
        return "aligned-input" if self.detector is None else self.detector.name

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        assert self.detector is not None
        bgr = to_detection_bgr(pixels)
        dets = detect_bounded(self.detector, bgr, self.cfg.detect.max_side)
        return select_faces(dets, bgr.shape[:2], self.cfg.detect)

    def align(self, pixels: np.ndarray, dets: list[Detection]) -> list[AlignedFace]:
        src = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1]
        faces = []
        for i, d in enumerate(dets):
            m = estimate_similarity(d.landmarks, self.template)
            faces.append(AlignedFace(index=i, detection=d, crop=as_bgr(warp_to_crop(src, m, self.size)), matrix=m))
        return faces

    def aligned_input(self, img: DecodedImage) -> AlignedFace:
        import cv2

        h, w = img.pixels.shape[:2]
        if abs(h - w) > max(2, 0.02 * max(h, w)):
            raise InputError(img.path, f"--aligned expects a square aligned face crop, got {w}x{h}")
        s = self.size
        px = img.pixels[:, :, :3] if img.pixels.shape[2] >= 3 else img.pixels[:, :, :1]
        crop = px if (h, w) == (s, s) else cv2.resize(px, (s, s), interpolation=cv2.INTER_AREA if w > s else cv2.INTER_CUBIC)
        if crop.ndim == 2:
            crop = crop[:, :, None]
        # image pixel p -> crop pixel (p + 0.5) * s / w - 0.5
        m = np.array([[s / w, 0, 0.5 * s / w - 0.5], [0, s / h, 0.5 * s / h - 0.5]], np.float64)
        lm = (self.template + 0.5) * np.array([w / s, h / s]) - 0.5
        det = Detection(box=np.array([0, 0, w, h], np.float32), score=1.0, landmarks=lm.astype(np.float32))
        return AlignedFace(index=0, detection=det, crop=as_bgr(crop), matrix=m)

    def record(self, source: str, f: AlignedFace) -> FaceRecord:
        d = f.detection
        return FaceRecord(
            source=source,
            face_index=f.index,
            bbox=[round(float(v), 2) for v in d.box],
            score=round(float(d.score), 4),
            landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in d.landmarks],
            face_size=round(d.size, 2),
            detector=self.detector_name,
            restorer=self.restorer_name,
            strength=self.cfg.restore.strength,
            matrix=[[float(v) for v in row] for row in f.matrix],
        )


def as_bgr(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(crop, 3, axis=2)) if crop.shape[2] == 1 else crop
