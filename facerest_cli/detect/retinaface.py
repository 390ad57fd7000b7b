"""RetinaFace (MobileNet-0.25 / ResNet-50) with our own torch network and the official prior-box decoding."""

from __future__ import annotations

import numpy as np

from facerest_cli.detect.base import nms
from facerest_cli.types import Detection

# BGR means subtracted by the official preprocessing (0-255 scale, no std division).
_BGR_MEAN = (104.0, 117.0, 123.0)


class RetinaFaceDetector:
    def __init__(self, net, name: str, device: str = "cpu", score_threshold: float = 0.5, nms_threshold: float = 0.4):
        self.name = name
        self._net = net.to(device).eval()
        self._device = device
        self._score = score_threshold
        self._nms = nms_threshold

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        import torch

        from facerest_cli.models.retinaface import decode_boxes, decode_landmarks, prior_boxes

        h, w = bgr.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(bgr)).to(self._device).float()
        x = (x - torch.tensor(_BGR_MEAN, device=self._device)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            loc, conf, landms = self._net(x)
            # The anchor layout belongs to the trained net (the 1MB variant uses smaller anchors).
            net = self._net
            priors = prior_boxes(h, w, net.min_sizes, net.steps).to(loc.device)
            scale = torch.tensor([w, h, w, h], device=loc.device, dtype=loc.dtype)
            boxes = decode_boxes(loc[0], priors, net.variances) * scale
            lms = decode_landmarks(landms[0], priors, net.variances) * torch.tensor([w, h] * 5, device=loc.device, dtype=loc.dtype)
            scores = conf[0, :, 1]
            keep = scores > self._score
            boxes, lms, scores = boxes[keep].cpu().numpy(), lms[keep].cpu().numpy(), scores[keep].cpu().numpy()
        idx = nms(boxes, scores, self._nms)
        # Official landmark order is already ours (image-left eye first, then the other eye, nose, mouth corners).
        return [
            Detection(box=boxes[i].astype(np.float32), score=float(scores[i]), landmarks=lms[i].reshape(5, 2).astype(np.float32))
            for i in idx
        ]
