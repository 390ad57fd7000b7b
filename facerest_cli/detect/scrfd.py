"""SCRFD (insightface family) ONNX detectors, through insightface's model_zoo on onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerest_cli.types import Detection


class ScrfdDetector:
    name = "scrfd"

    def __init__(self, model_path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.4, input_size: int = 640, providers=None):
        from insightface.model_zoo import get_model

        kw = {"providers": providers} if providers else {"providers": ["CPUExecutionProvider"]}
        self._model = get_model(str(model_path), **kw)
        self._model.prepare(ctx_id=-1, input_size=(input_size, input_size), det_thresh=score_threshold, nms_thresh=nms_threshold)
        self._input_size = input_size

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        boxes, kps = self._model.detect(bgr, input_size=(self._input_size, self._input_size), max_num=0)
        out = []
        for i in range(len(boxes)):
            lm = np.asarray(kps[i], np.float32).reshape(5, 2) if kps is not None else np.zeros((5, 2), np.float32)
            out.append(Detection(box=np.asarray(boxes[i, :4], np.float32), score=float(boxes[i, 4]), landmarks=lm))
        return out
