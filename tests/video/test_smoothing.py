"""Temporal stability: One-Euro smoothing, IoU tracks, the jitter metric, and acceptance 4 (issue 7)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from facerest_cli.video.jitter import WINDOW_K, JitterMeter
from facerest_cli.video.smooth import OneEuroFilter
from facerest_cli.video.track import IoUTracker, iou_matrix
from tests.conftest import read_jsonl, run_images
from tests.video.conftest import fast

FPS = 25.0


def test_one_euro_removes_most_noise_on_a_still_face():
    rng = np.random.default_rng(0)
    truth = np.array([[100.0, 100.0], [160.0, 100.0], [130.0, 135.0], [105.0, 165.0], [155.0, 165.0]])
    f = OneEuroFilter()
    raw, out = [], []
    for i in range(300):
        x = truth + rng.normal(0, 2.0, truth.shape)
        raw.append(x)
        out.append(f(x, i / FPS, scale=150.0))
    raw, out = np.stack(raw[50:]), np.stack(out[50:])
    step_raw = np.linalg.norm(np.diff(raw, axis=0), axis=2).mean()
    step_out = np.linalg.norm(np.diff(out, axis=0), axis=2).mean()
    assert step_out < 0.35 * step_raw, (step_out, step_raw)
    # and it is not biased: the filtered points stay on the face
    assert np.abs(out.mean(axis=0) - truth).max() < 0.5


def test_one_euro_follows_a_moving_face_with_small_lag():
    """A face of 150 px crossing at 0.5 face sizes per second: after settling, the lag is < 3 % of the face."""
    f = OneEuroFilter()
    v = 75.0  # px/s
    pts = np.array([[0.0, 0.0], [60.0, 0.0]])
    lags = []
    for i in range(100):
        t = i / FPS
        x = pts + [v * t, 0.0]
        y = f(x, t, scale=150.0)
        if i > 50:
            lags.append(float((x - y)[:, 0].mean()))
    assert 0 < np.mean(lags) < 0.03 * 150, np.mean(lags)
    # without noise, a steady motion is followed smoothly: constant lag, no jitter
    assert np.ptp(lags) < 0.1


def test_one_euro_uses_timestamps_so_vfr_is_filtered_by_time():
    """The same motion sampled at irregular times ends at the same place as when sampled regularly."""
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.choice([0.02, 0.04, 0.08], 200))
    reg = np.arange(1, 201) * times[-1] / 200
    ends = []
    for ts in (times, reg):
        f = OneEuroFilter()
        for t in ts:
            y = f(np.array([[50.0 * t, 0.0], [50.0 * t + 60, 0.0]]), float(t), scale=150.0)
        ends.append(y[0, 0])
    assert abs(ends[0] - ends[1]) < 0.5, ends


def test_tracker_keeps_ids_through_motion_and_a_missed_frame():
    tr = IoUTracker(max_missed=3)
    a, b = np.array([10.0, 10, 110, 110]), np.array([300.0, 50, 380, 130])
    ids = []
    for i in range(10):
        boxes = [a + [4 * i, 0, 4 * i, 0], b + [0, 3 * i, 0, 3 * i]]
        if i == 5:
            boxes = boxes[:1]  # the detector misses face b once
        ids.append([t.id for t in tr.update(np.array(boxes))])
    assert ids[0] == [1, 2]
    assert all(x == [1, 2] for i, x in enumerate(ids) if i != 5) and ids[5] == [1]
    # a scene cut: the face jumps across the frame -> a new track, and the old ones end after max_missed frames
    for _ in range(5):
        out = tr.update(np.array([[500.0, 300, 560, 360]]))
    assert out[0].id == 3
    assert [t.id for t in tr.tracks] == [3]


def test_iou_matrix():
    m = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert np.allclose(m, [[1.0, 1 / 3, 0.0]])


def _matrix(tx: float, ty: float, s: float) -> np.ndarray:
    return np.array([[s, 0, -s * tx], [0, s, -s * ty]], np.float64)  # image -> crop, crop origin at (tx, ty)


def test_jitter_metric_ignores_global_motion_and_measures_shake():
    tmpl = np.array([[190.0, 240], [320, 240], [256, 320], [200, 380], [310, 380]])
    steady, shaky, still = JitterMeter(tmpl), JitterMeter(tmpl), JitterMeter(tmpl)
    d, s = 1.5, 4.0  # image px of shake, crop px per image px
    for i in range(60):
        steady.add(1, i, _matrix(100 + 3.0 * i, 50 + 1.0 * i, s))  # constant-velocity pan: no jitter
        shaky.add(1, i, _matrix(100 + 3.0 * i + (d if i % 2 else -d), 50, s))
        still.add(7, i, _matrix(100, 50, s))
    assert steady.value()[0] == pytest.approx(0.0, abs=1e-9)
    assert still.value() == (pytest.approx(0.0, abs=1e-9), 60 - 2 * WINDOW_K - 1)
    # alternating +-d: the centred mean of 9 frames is -+d/9, so each residual step is 2 * (8/9) * d image px
    assert shaky.value()[0] == pytest.approx(16 / 9 * d * s, rel=1e-6)
    assert still.track_value(7) == pytest.approx(0.0, abs=1e-9)


def test_jitter_metric_does_not_measure_across_gaps():
    tmpl = np.array([[190.0, 240], [320, 240], [256, 320], [200, 380], [310, 380]])
    m = JitterMeter(tmpl)
    for i in list(range(0, 12)) + list(range(20, 32)):  # a track missing frames 12..19
        m.add(1, i, _matrix(100 + (50 if i >= 20 else 0), 50, 4.0))
    assert m.value()[0] == pytest.approx(0.0, abs=1e-9)


class NoisyDetector:
    """Wraps the real detector and perturbs its landmarks and box with seeded noise (per frame)."""

    def __init__(self, det, sigma_frac: float, seed: int = 7):
        self.det, self.name, self.sigma, self.seed, self.n = det, det.name, sigma_frac, seed, 0

    def detect(self, bgr):
        rng = np.random.default_rng(self.seed + self.n)
        self.n += 1
        out = []
        for d in self.det.detect(bgr):
            s = self.sigma * d.size
            out.append(replace(d, landmarks=(d.landmarks + rng.normal(0, s, (5, 2))).astype(np.float32),
                               box=(d.box + rng.normal(0, s, 4)).astype(np.float32)))
        return out


def test_acceptance4_smoothing_halves_jitter_on_a_still_face_with_noisy_landmarks(tmp_path, face, monkeypatch):
    import facerest_cli.detect.registry as registry
    from facerest_cli.video.synth import make_clip

    clip = tmp_path / "still.mp4"
    make_clip(clip, face, frames=100, motion="static", audio_hz=None)
    real = registry.build_detector
    monkeypatch.setattr(registry, "build_detector", lambda *a, **k: NoisyDetector(real(*a, **k), 0.015))
    jit = {}
    for smooth in (False, True):
        out = tmp_path / f"out_{smooth}"
        res = run_images(clip, out, **fast(smooth=smooth))
        assert res.failed == [] and res.faces == 100
        v = json.loads((out / "summary.json").read_text())["videos"][0]
        assert v["smoothing"] is smooth and len(v["tracks"]) == 1 and v["tracks"][0]["frames"] == 100
        jit[smooth] = v["jitter_px"]
        recs = read_jsonl(out / "report.jsonl")
        assert {r["track_id"] for r in recs} == {1}
    print(f"jitter without smoothing {jit[False]:.3f} crop px, with {jit[True]:.3f} ({jit[True] / jit[False]:.0%})")
    assert jit[False] > 1.0  # the noise is really there
    assert jit[True] <= 0.5 * jit[False]


def test_temporal_stage_steadies_each_tracks_parsing_mask():
    """Masks set by a parsing stage are averaged with the same track's previous mask (in crop space); a retried
    face is blended with the mask before it, not with its own first attempt; other tracks are independent."""

    from facerest_cli.video.source import TemporalStage
    from facerest_cli.video.stats import VideoReport

    st = TemporalStage(VideoReport())
    f0, f1, f2 = _faces(0, [1.0, 0.2], [1, 2]), _faces(1, [0.0, 0.2], [1, 2]), _faces(2, [1.0, 0.6], [1, 2])
    assert st.after_restore(f0 + f1) == []
    assert f0[0].mask[0, 0] == 1.0 and f1[0].mask[0, 0] == 0.5  # 0.5 * 0 + 0.5 * 1
    assert f1[1].mask[0, 0] == pytest.approx(0.2)  # track 2 is steady already
    st.after_restore(f2[:1])
    assert f2[0].mask[0, 0] == 0.75
    f2[0].mask = np.full((8, 8), 0.0, np.float32)  # the same face again (identity guard retry)
    f2[0].attempt = 1
    st.after_restore(f2[:1])
    assert f2[0].mask[0, 0] == 0.25  # blended with frame 1's mask, not with the first attempt
    (feather,) = _faces(3, [0.0], [1])
    feather.mask = None
    st.after_restore([feather])
    assert feather.mask is None  # feathered faces need nothing: the mask is the same every frame


def _faces(index: int, masks: list[float], tracks: list[int], input_id: int = 0) -> list:
    """Face states of one video frame, with parsing masks of the given constant values and these track ids."""
    from facerest_cli.types import AlignedFace, Detection, FaceRecord, FaceState, FrameRef

    ref = FrameRef(np.zeros((4, 4, 3), np.uint8), f"v{input_id}.mp4", input_id, index, "video")
    det = Detection(np.zeros(4, np.float32), 1.0, np.zeros((5, 2), np.float32))
    out = []
    for i, (m, t) in enumerate(zip(masks, tracks)):
        face = AlignedFace(i, det, np.zeros((8, 8, 3), np.uint8), np.eye(2, 3))
        rec = FaceRecord(ref.source, i, [], 1.0, [], 1.0, "d", "r", 1.0, [], track_id=t)
        out.append(FaceState(face, rec, ref, 1.0, False, mask=np.full((8, 8), m, np.float32)))
    return out


def test_temporal_masks_never_cross_videos_or_go_back_in_time():
    """Two videos in one run share track ids (each starts at 1) and frame numbers: a mask of one video must never
    be blended into the other, and a mask from a later frame never into an earlier one."""
    from facerest_cli.video.source import TemporalStage
    from facerest_cli.video.stats import VideoReport

    st = TemporalStage(VideoReport())
    a = _faces(5, [1.0], [1], input_id=0)
    st.after_restore(a)
    b = _faces(6, [0.0], [1], input_id=1)  # the next frame number, same track id, but another video
    st.after_restore(b)
    assert b[0].mask[0, 0] == 0.0  # not blended with video 0's mask (that would give 0.5)
    later = _faces(7, [1.0], [1], input_id=1)
    st.after_restore(later)
    assert later[0].mask[0, 0] == 0.5  # same video, next frame: blended
    earlier = _faces(2, [0.0], [1], input_id=1)  # an earlier frame of video 1 arriving after frame 7
    st.after_restore(earlier)
    assert earlier[0].mask[0, 0] == 0.0


def test_scene_cut_ends_tracks_so_faces_are_not_smoothed_across_shots(tmp_path, face):
    """Two shots with the face at nearly the same place (boxes overlap): IoU alone would continue the track across
    the cut; the cut detector ends it, so the second shot starts a new track (and new smoothing)."""
    import av

    from facerest_cli.video.synth import make_clip

    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    make_clip(a, face, frames=15, motion="static", audio_hz=None, seed=1)
    make_clip(b, face[:, ::-1].copy(), frames=15, motion="static", audio_hz=None, seed=2, face_side=(0.45, 0.45))
    cut = tmp_path / "cut.mp4"
    with av.open(str(cut), "w") as out:
        vs = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 640, 360, "yuv420p"
        n = 0
        for src in (a, b):
            with av.open(str(src)) as c:
                for f in c.decode(video=0):
                    px = f.to_ndarray(format="bgr24")
                    if src == b:  # the second shot is a darker scene
                        px = (px * 0.45).astype(np.uint8)
                    g = av.VideoFrame.from_ndarray(px, format="bgr24")
                    g.pts = n
                    n += 1
                    for p in vs.encode(g):
                        out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    res = run_images(cut, tmp_path / "out", **fast())
    v = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"][0]
    assert res.faces == 30
    assert v["detection"]["scene_cuts"] == 1
    assert [(t["track_id"], t["first_frame"], t["last_frame"]) for t in v["tracks"]] == [(1, 0, 14), (2, 15, 29)]
    # between whole-frame searches the tracked face was re-detected in a window around it
    assert v["detection"]["windows"] > 0 and v["detection"]["whole_frame"] < 30
