"""YuNet through ``cv2.FaceDetectorYN`` (the default detector: small, fast, good on small old-photo faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerest_cli.types import Detection


class YuNetDetector:
    name = "yunet"

    def __init__(self, model_path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.3, top_k: int = 5000):
        import cv2

        # OpenCV 5 warns on stderr that targets are unsupported by its new graph engine; it is noise to users.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold, nms_threshold, top_k)

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        h, w = bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        out = []
        for f in faces:
            x, y, bw, bh = (float(v) for v in f[:4])
            # YuNet's landmark order is already ours: image-left eye, image-right eye, nose, mouth corners.
            out.append(
                Detection(
                    box=np.array([x, y, x + bw, y + bh], np.float32),
                    score=float(f[14]),
                    landmarks=np.asarray(f[4:14], np.float32).reshape(5, 2),
                )
            )
        return out
