"""`facerest run` on videos: timing, sound, detection, report, batching, bad files (issue 7 acceptance 1, 2, 5)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import read_jsonl, run_cli, run_images, shared_file
from tests.doubles import CountingRestorer
from tests.video.conftest import describe, fast, stream_packets, video_frames


@pytest.fixture(scope="module")
def clip10(tmp_path_factory, face):
    """Acceptance 1's input: 10 s, 25 fps, 640x360, a face moving and scaling, a 440 Hz AAC track."""
    from facerest_cli.video.synth import make_clip

    d = tmp_path_factory.mktemp("clip10")
    info = make_clip(d / "film.mp4", face, size=(640, 360), fps=25, frames=250, audio_hz=440.0)
    assert info.audio_packets > 400
    return d / "film.mp4"


@pytest.fixture(scope="module")
def run10(clip10, tmp_path_factory):
    out = tmp_path_factory.mktemp("run10") / "out"
    proc = run_cli("run", clip10, "-o", out, "--restorer", "none", "--recognizer", "none", "--mask", "feather",
                   "--prior", "off", "--preset", "veryfast", "--quiet")
    return proc, out


def test_acceptance1_same_frames_fps_duration_resolution(clip10, run10):
    proc, out = run10
    assert proc.returncode == 0, proc.stderr
    src, dst = describe(clip10), describe(out / "film.mp4")
    assert (dst["width"], dst["height"]) == (src["width"], src["height"]) == (640, 360)
    assert dst["rate"] == src["rate"] == Fraction(25)
    assert dst["codec"] == "h264" and dst["pix_fmt"] == "yuv420p"
    assert abs(dst["duration"] - src["duration"]) <= 1 / 25 + 1e-6, (src["duration"], dst["duration"])
    fin, fout = video_frames(clip10), video_frames(out / "film.mp4")
    assert len(fout) == len(fin) == 250
    assert [t for _, t in fout] == [t for _, t in fin]


def test_acceptance1_audio_packets_are_byte_identical(clip10, run10):
    proc, out = run10
    assert proc.returncode == 0, proc.stderr
    a_in, a_out = stream_packets(clip10, "audio"), stream_packets(out / "film.mp4", "audio")
    assert len(a_in) > 400
    assert a_out == a_in
    assert describe(out / "film.mp4")["streams"] == [("video", "h264"), ("audio", "aac")]


def test_acceptance1_faces_in_95_percent_of_frames_with_frame_time_and_track(clip10, run10):
    proc, out = run10
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out / "report.jsonl")
    frames_with_face = {r["frame"] for r in recs}
    assert len(frames_with_face) >= 0.95 * 250, len(frames_with_face)
    times = dict(video_frames(clip10))
    by_frame = {r["frame"]: r for r in recs}
    pts = [p for p, _ in video_frames(clip10)]
    for i, r in by_frame.items():
        assert r["timestamp"] == pytest.approx(times[pts[i]], abs=1e-6)
        assert r["source"].endswith("film.mp4") and r["output"].endswith("film.mp4")
    assert {r["track_id"] for r in recs} == {1}  # one face, one track, never lost
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 1 and summary["failed"] == [] and summary["faces"] == len(recs)
    (v,) = summary["videos"]
    assert v["status"] == "completed" and v["frames_written"] == 250 and v["smoothing"] is True
    assert (v["width"], v["height"], v["fps"]) == (640, 360, 25.0)
    assert v["detection"]["scene_cuts"] == 0 and v["detection"]["whole_frame"] < 250 / 4
    (t,) = v["tracks"]
    assert t["track_id"] == 1 and t["frames"] == len(recs) and t["first_frame"] == 0
    assert 0 < v["jitter_px"] < 4.0  # measured 2.7 with YuNet on this moving face (5.1 unsmoothed)


def test_acceptance1_passthrough_keeps_the_picture(clip10, run10):
    """With --restorer none the output is the input re-encoded: no colour drift, faces pasted back in place."""
    import av

    proc, out = run10
    assert proc.returncode == 0, proc.stderr
    diffs = []
    with av.open(str(clip10)) as a, av.open(str(out / "film.mp4")) as b:
        for i, (fa, fb) in enumerate(zip(a.decode(video=0), b.decode(video=0))):
            if i % 25:
                continue
            x = fa.to_ndarray(format="rgb24").astype(np.float64)
            y = fb.to_ndarray(format="rgb24").astype(np.float64)
            diffs.append((np.mean(y - x), 10 * np.log10(255**2 / np.mean((y - x) ** 2))))
    bias = max(abs(d[0]) for d in diffs)
    psnr = min(d[1] for d in diffs)
    assert bias < 0.3, diffs  # swscale's default conversions would darken by ~2 levels per round trip
    assert psnr > 38, diffs


def test_acceptance2_vfr_keeps_every_timestamp(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    rng = np.random.default_rng(3)
    steps = rng.choice([20, 33, 40, 50, 67, 100], size=80)
    pts = [0, *np.cumsum(steps)[:-1].tolist()]
    clip = tmp_path / "vfr.mp4"
    make_clip(clip, face, frames=80, pts=pts, time_base=Fraction(1, 1000))
    fin = video_frames(clip)
    assert [t for _, t in fin] == pytest.approx([p / 1000 for p in pts], abs=1e-9)  # the input really is VFR
    res = run_images(clip, tmp_path / "out", **fast())
    assert res.failed == [] and res.frames == 80
    fout = video_frames(tmp_path / "out" / "vfr.mp4")
    assert [t for _, t in fout] == [t for _, t in fin]
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert all(r["timestamp"] == pytest.approx(pts[r["frame"]] / 1000, abs=1e-6) for r in recs)
    # the audio stays in sync: same packets, same times
    assert stream_packets(tmp_path / "out" / "vfr.mp4", "audio") == stream_packets(clip, "audio")


def test_faces_of_consecutive_frames_share_restorer_batches(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    clip = tmp_path / "b.mp4"
    make_clip(clip, face, frames=20, audio_hz=None, no_face=[(8, 11)])
    r = CountingRestorer(size=256)
    res = run_images(clip, tmp_path / "out", restorer=r, batch_size=8, **fast())
    assert res.faces == 17 and res.frames == 20
    assert r.calls == [8, 8, 1]


def test_identity_stats_per_track(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    shared_file("weights", "recognition", "arcface_mobilefacenet.pth")
    clip = tmp_path / "id.mp4"
    make_clip(clip, face, frames=12, audio_hz=None, motion="static")
    res = run_images(clip, tmp_path / "out", **fast(recognizer="arcface-mobilefacenet"))
    assert res.failed == []
    (t,) = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"][0]["tracks"]
    assert t["frames"] == 12
    assert 0.99 <= t["identity_min"] <= t["identity_mean"] <= 1.0001


def test_acceptance5_no_audio_truncated_and_image_in_one_folder(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    d = tmp_path / "in"
    d.mkdir()
    make_clip(d / "silent.mp4", face, frames=30, audio_hz=None)
    make_clip(tmp_path / "whole.mp4", face, frames=30)
    data = (tmp_path / "whole.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    (d / "photo.jpg").write_bytes(shared_file("images", "insightface", "t1.jpg").read_bytes())
    (d / "clip_without_extension").write_bytes(data)  # found by content, not by name
    out = tmp_path / "out"
    proc = run_cli("run", d, "-o", out, "--restorer", "none", "--recognizer", "none", "--mask", "feather", "--prior", "off", "--preset",
                   "ultrafast", "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    failed = {Path(f["path"]).name: f["error"] for f in summary["failed"]}
    assert list(failed) == ["cut.mp4"]
    assert "truncated" in failed["cut.mp4"] and "moov" in failed["cut.mp4"]
    assert len([ln for ln in proc.stderr.splitlines() if "cut.mp4" in ln]) == 1
    assert summary["processed"] == 3
    names = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith((".", "report", "summary", "manifest")))
    assert names == ["clip_without_extension.mkv", "photo.jpg", "silent.mp4"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert describe(out / "silent.mp4")["streams"] == [("video", "h264")]
    assert len(video_frames(out / "silent.mp4")) == 30
    assert stream_packets(out / "clip_without_extension.mkv", "audio") == stream_packets(tmp_path / "whole.mp4", "audio")
    videos = {Path(v["path"]).name: v for v in summary["videos"]}
    assert videos["silent.mp4"]["status"] == "completed" and videos["silent.mp4"]["frames_with_faces"] >= 29


def test_a_video_failing_mid_stream_fails_alone_and_leaves_nothing(tmp_path, face, monkeypatch):
    """One video's decoder breaks at its 6th frame, another's encoder at its 4th: both fail once, with a reason,
    no temp file is left, and the image and the third video in the folder are done."""
    import facerest_cli.video.decode as decode
    import facerest_cli.video.encode as encode
    from facerest_cli.errors import InputError
    from facerest_cli.video.synth import make_clip

    d = tmp_path / "in"
    d.mkdir()
    for name in ("a_dec.mp4", "b_enc.mp4", "c_ok.mp4"):
        make_clip(d / name, face, frames=20, audio_hz=None, motion="static")
    (d / "photo.jpg").write_bytes(shared_file("images", "insightface", "t1.jpg").read_bytes())
    real_to_bgr, real_write = decode.frame_to_bgr, encode.VideoSink.write
    calls = {"dec": 0}

    def flaky_to_bgr(frame, tags):
        if decode_target[0]:
            calls["dec"] += 1
            if calls["dec"] == 6:
                raise ValueError("simulated decoder fault")
        return real_to_bgr(frame, tags)

    def flaky_write(self, pixels, frame):
        if self.path.name == "b_enc.mp4" and frame.index == 3:
            raise InputError(self.info.path, "simulated encoder fault at frame 3")
        return real_write(self, pixels, frame)

    decode_target = [True]
    orig_init = decode.FrameReader.__init__

    def init(self, info, *a, **k):
        decode_target[0] = info.path.name == "a_dec.mp4"
        orig_init(self, info, *a, **k)

    monkeypatch.setattr(decode, "frame_to_bgr", flaky_to_bgr)
    monkeypatch.setattr(decode.FrameReader, "__init__", init)
    monkeypatch.setattr(encode.VideoSink, "write", flaky_write)
    res = run_images(d, tmp_path / "out", **fast())
    failed = {Path(f.path).name: f.error for f in res.failed}
    assert len(res.failed) == 2  # once each, though frames of theirs were still in flight
    assert failed == {"a_dec.mp4": "decoding failed: simulated decoder fault",
                      "b_enc.mp4": "simulated encoder fault at frame 3"}
    assert res.processed == 2 and sorted(Path(o).name for o in res.outputs) == ["c_ok.mp4", "photo.jpg"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp") or p.name.startswith(("a_", "b_"))]
    assert len(video_frames(tmp_path / "out" / "c_ok.mp4")) == 20
    statuses = {Path(v["path"]).name: v["status"] for v in json.loads((tmp_path / "out" / "summary.json").read_text())["videos"]}
    assert statuses == {"a_dec.mp4": "failed", "b_enc.mp4": "failed", "c_ok.mp4": "completed"}
