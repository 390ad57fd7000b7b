"""Detection time against the single pass detection used to be (for ``facerest bench``).

Before issue 12 every image was detected once by YuNet at most at 2048 pixels (longer side). ``compare`` times
that and the given detector on the same decoded images, in the same process, so the ratio is measured in one run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from facerest_cli.config import DetectConfig

if TYPE_CHECKING:
    from facerest_cli.weights.cache import WeightsConfig

LEGACY_MAX_SIDE = 2048


@dataclass(frozen=True)
class DetectTiming:
    """Seconds over ``images`` images (``megapixels`` in all): the configured detector and the legacy pass."""

    images: int
    megapixels: float
    seconds: float
    legacy_seconds: float
    detector: str

    @property
    def ratio(self) -> float:
        return self.seconds / self.legacy_seconds if self.legacy_seconds > 0 else float("nan")


def compare(paths: Sequence[Path], weights: "WeightsConfig", cfg: DetectConfig, device: str = "cpu",
            repeat: int = 1) -> DetectTiming:
    """Best of ``repeat`` timings of ``cfg``'s detector and of YuNet once at <= 2048 px, over the image files in
    ``paths`` (folders walked as ``facerest run`` does; videos are skipped). Models are built before timing."""
    from facerest_cli.detect.base import detect_bounded, to_detection_bgr
    from facerest_cli.detect.registry import build_detector, build_raw_detector
    from facerest_cli.errors import InputError
    from facerest_cli.io.decode import decode_image
    from facerest_cli.io.sources import discover
    from facerest_cli.weights.cache import WeightsStore

    store = WeightsStore(weights)
    det = build_detector(cfg, store, device)
    legacy = build_raw_detector("yunet", store, device, score_floor=0.5)
    items, _ = discover(paths)
    images = []
    for it in items:
        try:
            images.append(to_detection_bgr(decode_image(it.path).pixels))
        except InputError:  # videos and undecodable files are not part of the image benchmark
            continue
    best, best_legacy = float("inf"), float("inf")
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        for im in images:
            det.detect(im)
        best = min(best, time.perf_counter() - t)
        t = time.perf_counter()
        for im in images:
            detect_bounded(legacy, im, LEGACY_MAX_SIDE)
        best_legacy = min(best_legacy, time.perf_counter() - t)
    mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    return DetectTiming(len(images), mp, best, best_legacy, getattr(det, "description", det.name))
