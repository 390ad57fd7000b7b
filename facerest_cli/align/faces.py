"""Detection + alignment for one frame: the face list a frame carries into the restore batches."""

from __future__ import annotations

import numpy as np

from facerest_cli.align.templates import template_points
from facerest_cli.align.warp import fit_similarity, warp_to_crop
from facerest_cli.config import RunConfig
from facerest_cli.detect.base import Detector, detect_bounded, select_faces, to_detection_bgr
from facerest_cli.detect.face_detector import FaceDetector
from facerest_cli.detect.stats import DetectStats
from facerest_cli.errors import InputError
from facerest_cli.types import AlignedFace, DecodedImage, Detection, FaceRecord


class FacePreparer:
    """Finds faces in a frame and warps them to the restorer's template.

    ``detect`` finds the faces (a ``FaceDetector`` searches every scale itself; any other ``Detector`` is run at
    most at ``--det-size``) and applies ``--faces``/``--min-face``; ``detect_stats`` sums what detection did and
    rejected; ``align`` warps given detections (video passes tracked, smoothed ones) with the ``--align-fit``
    similarity; ``aligned_input`` treats a whole image as an aligned face.
    """

    def __init__(self, cfg: RunConfig, detector: Detector | None, size: int, template: str, restorer_name: str):
        self.cfg = cfg
        self.detector = detector
        self.size = size
        self.template = template_points(template, size)
        self.restorer_name = restorer_name

    @property
    def detector_name(self) -> str:
        """What ran: ``auto(yunet+scrfd-500m+...)`` for fused networks, else the network's name."""
        if self.detector is None:
            return "aligned-input"
        return getattr(self.detector, "description", self.detector.name)

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        assert self.detector is not None
        bgr = to_detection_bgr(pixels)
        if isinstance(self.detector, FaceDetector):
            dets = self.detector.detect(bgr)
        else:
            dets = detect_bounded(self.detector, bgr, self.cfg.detect.max_side)
        return select_faces(dets, bgr.shape[:2], self.cfg.detect)

    def detect_stats(self) -> DetectStats | None:
        """Detection counts summed over every ``detect`` call so far (passes, candidates, merges, rejections by
        reason); ``DetectStats.to_dict()`` is the summary.json form. None for aligned input or a detector that
        keeps no counts."""
        stats = getattr(self.detector, "stats", None)
        return stats() if callable(stats) else None

    @property
    def gfpgan_compat(self) -> bool:
        return self.cfg.blend.compat == "gfpgan"

    def source_image(self, img: DecodedImage, gray: bool) -> tuple[DecodedImage, bool]:
        """The decoded image the faces are taken from and pasted into: as decoded, except with ``--compat gfpgan``,
        which reads it as GFPGAN's script does (8-bit BGR, ``blend.gfpgan_compat.read_like_gfpgan``)."""
        if not self.gfpgan_compat:
            return img, gray
        from facerest_cli.blend.gfpgan_compat import read_like_gfpgan

        return read_like_gfpgan(img), False

    def align(self, pixels: np.ndarray, dets: list[Detection]) -> list[AlignedFace]:
        if self.gfpgan_compat:  # the official LMEDS fit (OpenCV), template and warp; eye distance < 5 px dropped
            from facerest_cli.blend.gfpgan_compat import align_detections

            return align_detections(pixels, dets)
        src = pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1]
        faces = []
        for i, d in enumerate(dets):
            m = fit_similarity(d.landmarks, self.template, self.cfg.detect.align_fit)
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
