"""SCRFD (insightface family) ONNX detectors on onnxruntime, decoded here.

insightface's own wrapper always resizes the image to fill its input (a 300-pixel photo is upsampled to 640),
which is exactly what scale-aware detection must control, so the session is run directly: the image is placed
unscaled in the top-left corner of the network input (padded with zeros, as insightface pads), and the
anchor-free outputs are decoded as in insightface ``SCRFD.forward``. Fixed-input exports (SCRFD-500M 640x640)
take images up to their input size (``spec.fixed_input``); dynamic ones (buffalo_l ``det_10g.onnx``) take any
size, padded to a multiple of 32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerest_cli.detect.base import Candidates, RawSpec, candidates_to_detections, drop_non_finite, nms
from facerest_cli.errors import WeightsError
from facerest_cli.types import Detection

# Reliable face sizes at the network input (longer box side, pixels), measured on ffhq-10 and Solvay faces
# (see /work/notes/detect_results.md): SCRFD-500M misses faces above ~400 px of its 640 input.
SPEC_500M = RawSpec(face_min=12.0, face_max=360.0, fixed_input=(640, 640), tile=640)
SPEC_10G = RawSpec(face_min=10.0, face_max=400.0, fixed_input=None, tile=2048)


class ScrfdDetector:
    """One SCRFD network. ``candidates(bgr)``: ``bgr`` ``(H, W, 3)`` uint8 BGR, at most ``spec.fixed_input``."""

    name = "scrfd"

    def __init__(self, model_path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 spec: RawSpec | None = None, providers=None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        # Detection shares the CPU with decoding and the restorer's threads: idle workers sleep instead of spinning.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = ort.InferenceSession(str(model_path), so, providers=providers or ["CPUExecutionProvider"])
        inp = self._sess.get_inputs()[0]
        self._input_name = inp.name
        outs = self._sess.get_outputs()
        self._output_names = [o.name for o in outs]
        # insightface's layout rule: 6/9 outputs = 3 strides (2 anchors each), 10/15 = 5 strides (1 anchor);
        # scores, then boxes, then keypoints, one output per stride each.
        n = len(outs)
        if n not in (6, 9, 10, 15):
            raise WeightsError(f"{model_path}: expected an SCRFD graph with 6, 9, 10 or 15 outputs, got {n}")
        self._fmc = 3 if n in (6, 9) else 5
        self._strides = (8, 16, 32) if self._fmc == 3 else (8, 16, 32, 64, 128)
        self._anchors = 2 if self._fmc == 3 else 1
        if n not in (9, 15):
            raise WeightsError(f"{model_path}: this SCRFD graph has no keypoint outputs; alignment needs 5 landmarks")
        self._batched = len(outs[0].shape) == 3
        h, w = inp.shape[2], inp.shape[3]
        fixed = (int(w), int(h)) if isinstance(w, int) and isinstance(h, int) else None
        base = spec or (SPEC_500M if fixed else SPEC_10G)
        self.spec = RawSpec(base.face_min, base.face_max, fixed, base.tile if fixed is None else max(fixed))
        self._score = float(score_threshold)
        self._nms = float(nms_threshold)

    def candidates(self, bgr: np.ndarray) -> Candidates:
        h, w = bgr.shape[:2]
        if self.spec.fixed_input is not None:
            iw, ih = self.spec.fixed_input
            if w > iw or h > ih:
                raise ValueError(f"{self.name}: image {w}x{h} exceeds the fixed network input {iw}x{ih}")
        else:
            iw, ih = -(-w // 32) * 32, -(-h // 32) * 32
        canvas = np.zeros((ih, iw, 3), np.float32)
        # RGB, (x - 127.5) / 128: insightface's blobFromImage(1/128, mean 127.5, swapRB=True)
        canvas[:h, :w] = (bgr[:, :, ::-1].astype(np.float32) - 127.5) / 128.0
        canvas[h:, :] = -127.5 / 128.0  # the zero padding insightface uses, normalised
        canvas[:h, w:] = -127.5 / 128.0
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
        outs = self._sess.run(self._output_names, {self._input_name: blob})
        boxes, scores, kps = [], [], []
        for i, stride in enumerate(self._strides):
            sc, bb = outs[i], outs[i + self._fmc]
            kp = outs[i + 2 * self._fmc]
            if self._batched:
                sc, bb, kp = sc[0], bb[0], kp[0]
            sc = sc.reshape(-1)
            fh, fw = ih // stride, iw // stride
            yy, xx = np.mgrid[:fh, :fw]
            centres = np.stack([xx, yy], -1).reshape(-1, 2).astype(np.float32) * stride
            centres = np.repeat(centres, self._anchors, axis=0)
            sel = np.nonzero(sc >= self._score)[0]
            if sel.size == 0:
                continue
            c = centres[sel]
            d = bb.reshape(-1, 4)[sel] * stride
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], 1))
            scores.append(sc[sel])
            kps.append(c[:, None, :] + kp.reshape(-1, 5, 2)[sel] * stride)
        if not boxes:
            return Candidates.empty()
        cand = Candidates(np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32),
                          np.concatenate(kps).astype(np.float32))
        cand = drop_non_finite(cand)
        # a box centred in the padding is a response to the padding's edge, not to the image
        cx, cy = (cand.boxes[:, 0] + cand.boxes[:, 2]) / 2, (cand.boxes[:, 1] + cand.boxes[:, 3]) / 2
        cand = cand.take(np.nonzero((cx < w) & (cy < h))[0])
        return cand.take(nms(cand.boxes, cand.scores, self._nms))

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        """One pass at the given size (pads up to a fixed input; larger images are resized down to fit)."""
        return candidates_to_detections(self.candidates_fitted(bgr))

    def candidates_fitted(self, bgr: np.ndarray) -> Candidates:
        if self.spec.fixed_input is None:
            return self.candidates(bgr)
        from facerest_cli.detect.base import run_resized

        iw, ih = self.spec.fixed_input
        return run_resized(self.candidates, bgr, min(1.0, iw / bgr.shape[1], ih / bgr.shape[0]))
