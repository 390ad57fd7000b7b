"""YuNet through ``cv2.FaceDetectorYN`` (small, fast, good on small old-photo faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerest_cli.detect.base import Candidates, RawSpec, candidates_to_detections, drop_non_finite

# Reliable face sizes at the network input (longer box side, pixels); measured on ffhq-10 and Solvay faces
# resized through this range (see /work/notes/detect_results.md). Larger faces split into parts (an eye, a
# chin) and smaller ones are missed.
SPEC = RawSpec(face_min=16.0, face_max=300.0, fixed_input=None, tile=2048)


class YuNetDetector:
    name = "yunet"
    spec = SPEC

    def __init__(self, model_path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.3, top_k: int = 5000):
        import cv2

        # OpenCV 5 warns on stderr that targets are unsupported by its new graph engine; it is noise to users.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold, nms_threshold, top_k)

    def candidates(self, bgr: np.ndarray) -> Candidates:
        h, w = bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(np.ascontiguousarray(bgr))
        if faces is None or len(faces) == 0:
            return Candidates.empty()
        f = np.asarray(faces, np.float32).reshape(-1, 15)
        boxes = np.concatenate([f[:, :2], f[:, :2] + f[:, 2:4]], 1)
        # YuNet's landmark order is already ours: image-left eye, image-right eye, nose, mouth corners.
        return drop_non_finite(Candidates(boxes, f[:, 14].copy(), f[:, 4:14].reshape(-1, 5, 2).copy()))

    def detect(self, bgr: np.ndarray):
        return candidates_to_detections(self.candidates(bgr))
