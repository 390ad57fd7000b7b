"""Run by test_memory.py in a fresh interpreter: one long 720p video through `run_job`, RSS sampled inside this
process (psutil). A fresh process, because the test session's own RSS (models loaded by earlier tests) would
swamp what the pipeline uses. Prints one JSON line."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def main(face: str, tmp: str, frames: int) -> None:
    import psutil

    from facerest_cli.config import (BlendConfig, DetectConfig, IdentityConfig, OutputConfig, PriorConfig, RestoreConfig,
                                     RunConfig, VideoConfig)
    from facerest_cli.job import run_job
    from facerest_cli.video.synth import load_face, make_clip
    from facerest_cli.weights.cache import WeightsConfig

    tmp_path = Path(tmp)
    clip = tmp_path / "long.mp4"
    # A face moving and scaling for 2 minutes, with a 12-second stretch without any face (frames that need no
    # restoration must not pile up behind the ones that do), and a 440 Hz AAC track to copy along.
    make_clip(clip, load_face(Path(face)), size=(1280, 720), frames=frames, no_face=[(1500, 1800)])
    proc = psutil.Process()
    at_frame: dict[int, int] = {}
    peak = [0]
    errors: list[str] = []

    class Events:
        def start(self, total):
            pass

        def image_done(self, path, n_faces):
            pass

        def image_failed(self, path, error):
            errors.append(error)

        def frame_done(self, path, index, total):
            if index % 100 == 0:
                at_frame[index] = proc.memory_info().rss

    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cfg = RunConfig(
        inputs=(clip,),
        # Small crops and detection at 320 px keep this test inside CI's budget; the frames stay 1280x720.
        detect=DetectConfig(detector="yunet", max_side=320),  # one network: this measures memory, not detection
        restore=RestoreConfig(restorer="none", size=128),
        blend=BlendConfig(mask="feather"),
        identity=IdentityConfig(recognizer="none"),
        prior=PriorConfig(prior="off"),
        output=OutputConfig(out_dir=tmp_path / "out"),
        video=VideoConfig(preset="ultrafast"),
        quiet=True,
    )
    try:
        res = run_job(cfg, WeightsConfig.from_env(), events=Events())
    finally:
        stop.set()
        sampler.join()
    out = tmp_path / "out" / "long.mp4"
    print(json.dumps({
        "failed": [f.error for f in res.failed] + errors,
        "frames": res.frames,
        "faces": res.faces,
        "wall_time_s": res.wall_time_s,
        "rss_at_frame": {str(k): v for k, v in sorted(at_frame.items())},
        "peak_rss": peak[0],
        "output_bytes": out.stat().st_size if out.exists() else 0,
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
