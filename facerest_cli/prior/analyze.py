"""``facerest prior IMAGE``: per-face pose, landmarks and shape coefficients, and the overlay render.

Library code (no printing): ``analyze_image`` returns plain dicts; ``render_overlay`` returns the overlay image;
``write_png`` writes it atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from facerest_cli.config import DetectConfig
    from facerest_cli.prior.morphable import DenseBfm
    from facerest_cli.prior.render import Renderer
    from facerest_cli.prior.tddfa import Tddfa, TddfaFit
    from facerest_cli.types import DecodedImage, Detection
    from facerest_cli.weights.cache import WeightsStore

MESH_TINT = np.array([0.55, 0.85, 1.0], np.float32)  # RGB: a pale cyan that reads on any skin tone
MESH_ALPHA = 0.6
MAX_RENDER_SIDE = 1024  # faces larger than this are rendered at this size and scaled up


@dataclass
class Analysis:
    image: "DecodedImage"
    detections: list["Detection"]
    fits: list["TddfaFit"]
    regressor: str

    def faces(self) -> list[dict[str, Any]]:
        out = []
        for i, (d, f) in enumerate(zip(self.detections, self.fits)):
            yaw, pitch, roll = f.angles
            out.append({
                "face_index": i,
                "bbox": [round(float(v), 2) for v in d.box],
                "score": round(float(d.score), 4),
                "yaw": round(yaw, 2),
                "pitch": round(pitch, 2),
                "roll": round(roll, 2),
                "landmarks68": [[round(float(x), 2), round(float(y), 2)] for x, y in f.landmarks[:, :2]],
                "shape": [round(float(v), 2) for v in f.alpha],
                "expression": [round(float(v), 4) for v in f.beta],
                "roi": [int(v) for v in f.roi],
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.image.path), "width": self.image.width, "height": self.image.height,
                "regressor": self.regressor, "faces": self.faces()}


def analyze_image(path: Path, detect: "DetectConfig", store: "WeightsStore", tddfa: "Tddfa", device: str = "cpu") -> Analysis:
    from facerest_cli.detect.base import detect_bounded, select_faces, to_detection_bgr
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.io.decode import decode_image
    from facerest_cli.prior.tddfa import roi_from_box

    img = decode_image(Path(path))
    bgr = to_detection_bgr(img.pixels)
    detector = build_detector(detect, store, device)
    dets = select_faces(detect_bounded(detector, bgr, detect.max_side), bgr.shape[:2], detect)
    fits = tddfa.fit(img.pixels, [roi_from_box(d.box) for d in dets])
    return Analysis(img, dets, fits, tddfa.name)


def render_overlay(pixels: np.ndarray, fits: Sequence["TddfaFit"], tddfa: "Tddfa", dense: "DenseBfm",
                   renderer: "Renderer") -> np.ndarray:
    """The image (8-bit BGR) with each face's posed dense mesh, shaded and tinted, blended over it, and the 68
    landmarks as green dots."""
    import cv2
    import torch

    from facerest_cli.detect.base import to_detection_bgr
    from facerest_cli.prior.render import Cameras, Meshes

    out = to_detection_bgr(pixels).astype(np.float32)
    h, w = out.shape[:2]
    verts = tddfa.dense_vertices(dense, fits)
    tri = torch.from_numpy(dense.tri)
    for v in verts:
        x0, y0 = max(int(np.floor(v[:, 0].min())) - 2, 0), max(int(np.floor(v[:, 1].min())) - 2, 0)
        x1, y1 = min(int(np.ceil(v[:, 0].max())) + 3, w), min(int(np.ceil(v[:, 1].max())) + 3, h)
        if x1 <= x0 or y1 <= y0:
            continue
        scale = min(1.0, MAX_RENDER_SIDE / max(x1 - x0, y1 - y0))
        rh, rw = max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale))
        # Window pixel (x - x0) -> render pixel: centre-aligned scaling.
        sx, sy = rw / (x1 - x0), rh / (y1 - y0)
        screen = np.stack([(v[:, 0] - x0 + 0.5) * sx - 0.5, (v[:, 1] - y0 + 0.5) * sy - 0.5, v[:, 2].max() - v[:, 2] + 1.0], 1)
        colors = torch.from_numpy(np.broadcast_to(MESH_TINT, screen.shape).copy())[None]
        res = renderer.render(Meshes(torch.from_numpy(screen).float()[None], tri, colors=colors), Cameras.identity(1),
                              (rh, rw), shade=True)
        rgb = res.images[0].numpy()[:, :, ::-1] * 255.0
        mask = res.mask[0].numpy().astype(np.float32)
        if scale < 1.0:
            rgb = cv2.resize(rgb, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        a = (MESH_ALPHA * mask)[:, :, None]
        win = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = win * (1 - a) + rgb * a
    img = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    for f in fits:
        r = max(1, round(max(f.roi[2] - f.roi[0], 1) / 150))
        for x, y in f.landmarks[:, :2]:
            cv2.circle(img, (int(round(x)), int(round(y))), r, (0, 255, 0), -1, cv2.LINE_AA)
    return img


def write_png(path: Path, bgr: np.ndarray) -> None:
    import cv2

    from facerest_cli.errors import FacerestError
    from facerest_cli.io.sinks import atomic_write_bytes

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise FacerestError(f"could not encode {path} as PNG")
    atomic_write_bytes(Path(path), buf.tobytes())
