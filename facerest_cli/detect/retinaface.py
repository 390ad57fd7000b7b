"""RetinaFace (MobileNet-0.25 / ResNet-50) with our own torch network and the official prior-box decoding."""

from __future__ import annotations

import numpy as np

from facerest_cli.detect.base import Candidates, RawSpec, candidates_to_detections, drop_non_finite, nms

# BGR means subtracted by the official preprocessing (0-255 scale, no std division).
_BGR_MEAN = (104.0, 117.0, 123.0)


def spec_for(min_sizes) -> RawSpec:
    """Reliable face sizes at the input. Measured for the 1MB release (anchors 10-256: 28 of 29 Solvay faces at
    20 px, face parts above ~300 px); the facexlib releases (anchors 16-512) follow their anchors."""
    sizes = [s for level in min_sizes for s in level]
    if min(sizes) < 16:
        return RawSpec(face_min=20.0, face_max=260.0, fixed_input=None, tile=2048)
    return RawSpec(face_min=float(min(sizes)), face_max=0.9 * float(max(sizes)), fixed_input=None, tile=2048)


class RetinaFaceDetector:
    """``model``: the built network (``facerest_cli.registry.Model``: eager torch, or compiled by a backend), which
    returns ``(loc, conf, landms)`` for a mean-subtracted BGR image; the anchor layout comes from its ArchSpec."""

    def __init__(self, model, name: str, device: str = "cpu", score_threshold: float = 0.5, nms_threshold: float = 0.4):
        self.name = name
        self._net = model
        anchors = model.spec.arch_spec.meta
        self._min_sizes, self._steps, self._variances = anchors["min_sizes"], anchors["steps"], anchors["variances"]
        self._device = device
        self._score = score_threshold
        self._nms = nms_threshold
        self.spec = spec_for(self._min_sizes)

    @property
    def model(self):
        """The built network (for summary.json's ``backend`` block)."""
        return self._net

    def candidates(self, bgr: np.ndarray) -> Candidates:
        import torch

        from facerest_cli.models.retinaface import decode_boxes, decode_landmarks, prior_boxes

        h, w = bgr.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(bgr)).to(self._device).float()
        x = (x - torch.tensor(_BGR_MEAN, device=self._device)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            loc, conf, landms = (t.float() for t in self._net(x))
            # The anchor layout belongs to the trained net (the 1MB variant uses smaller anchors).
            priors = prior_boxes(h, w, self._min_sizes, self._steps).to(loc.device)
            scale = torch.tensor([w, h, w, h], device=loc.device, dtype=loc.dtype)
            boxes = decode_boxes(loc[0], priors, self._variances) * scale
            lms = decode_landmarks(landms[0], priors, self._variances) * torch.tensor([w, h] * 5, device=loc.device, dtype=loc.dtype)
            scores = conf[0, :, 1]
            # NaN scores fail this test and are dropped with the rest; NaN boxes are counted just below.
            keep = scores > self._score
            boxes, lms, scores = boxes[keep].cpu().numpy(), lms[keep].cpu().numpy(), scores[keep].cpu().numpy()
        # The priors are laid out in pixel-edge units ((j + 0.5) * step is a pixel centre's edge coordinate):
        # shift to the pixel-centre origin every Detection uses.
        c = drop_non_finite(Candidates(boxes.astype(np.float32) - 0.5, scores.astype(np.float32),
                                       lms.reshape(-1, 5, 2).astype(np.float32) - 0.5))
        # Official landmark order is already ours (image-left eye first, then the other eye, nose, mouth corners).
        return c.take(nms(c.boxes, c.scores, self._nms))

    def detect(self, bgr: np.ndarray):
        return candidates_to_detections(self.candidates(bgr))
