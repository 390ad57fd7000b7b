"""Video containers and streams: ranges, rotation, subtitles, audio re-encoding, FFV1, probing, bad files."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from facerest_cli.errors import InputError, UsageError
from tests.conftest import read_jsonl, run_images, shared_file
from tests.video.conftest import describe, fast, stream_packets, video_frames


@pytest.fixture(scope="module")
def clip4(tmp_path_factory, face):
    """4 s, 25 fps, with a 440 Hz AAC track (the audio shows where a range was cut)."""
    from facerest_cli.video.synth import make_clip

    p = tmp_path_factory.mktemp("clip4") / "c.mp4"
    make_clip(p, face, frames=100, motion="static")
    return p


@pytest.mark.parametrize("start,end,first,count", [("1.0", "2.5", 25, 38), ("20f", "70f", 20, 50), ("0:03", None, 75, 25)])
def test_start_end_cut_video_and_audio_together(tmp_path, clip4, start, end, first, count):
    res = run_images(clip4, tmp_path / "out", **fast(start=start, end=end))
    assert res.failed == [] and res.frames == count
    out = tmp_path / "out" / "c.mp4"
    fout = video_frames(out)
    assert len(fout) == count
    assert fout[0][1] == 0.0 and fout[-1][1] == pytest.approx((count - 1) / 25, abs=1e-6)
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert sorted(r["frame"] for r in recs) == list(range(count))
    # the audio is cut at the same place: its packets are a contiguous run of the source's, starting near `first`
    a_in, a_out = stream_packets(clip4, "audio"), stream_packets(out, "audio")
    assert 0 < len(a_out) < len(a_in)
    i0 = a_in.index(a_out[0])
    assert a_in[i0:i0 + len(a_out)] == a_out
    per_frame = 48000 / 25 / 1024  # AAC packets per video frame
    assert abs(i0 - first * per_frame) <= 2 and abs(len(a_out) - count * per_frame) <= 3
    assert describe(out)["duration"] == pytest.approx(count / 25, abs=0.05)


def test_bad_ranges_are_usage_errors():
    from facerest_cli.config import VideoConfig

    for kw in ({"start": "abc"}, {"start": "5", "end": "2"}, {"start": "30f", "end": "10f"}, {"end": "-3"}):
        with pytest.raises(UsageError):
            VideoConfig(**kw)
    with pytest.raises(UsageError):
        VideoConfig(codec="vp9")
    with pytest.raises(UsageError):
        VideoConfig(crf=60)


def test_range_past_the_end_fails_that_video_only(tmp_path, clip4):
    res = run_images(clip4, tmp_path / "out", **fast(start="10.0"))
    assert [f.error for f in res.failed] == ["no decodable video frames in the range 10s .. end"]
    assert not list((tmp_path / "out").glob("*.mp4")) and not list((tmp_path / "out").glob(".*.tmp"))


def test_rotation_metadata_is_kept_and_faces_are_found_upright(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    clip = tmp_path / "phone.mp4"
    make_clip(clip, face, frames=20, rotation=-90, motion="static")
    res = run_images(clip, tmp_path / "out", **fast())
    assert res.failed == [] and res.faces == 20  # sideways as stored: found only because frames are turned upright
    import av

    with av.open(str(tmp_path / "out" / "phone.mp4")) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (360, 640)
        assert next(c.decode(v)).rotation == -90
    v = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"][0]
    assert (v["width"], v["height"], v["rotation"]) == (640, 360, -90)


def test_subtitles_copied_to_mkv_and_dropped_from_mov_with_warnings(tmp_path, face):
    """An MKV with Vorbis audio and SubRip subtitles, also saved under a .mov name (found by content): the MKV
    output copies both byte for byte; the MOV output cannot hold either, so the audio is re-encoded to AAC and the
    subtitles are dropped, each with a warning naming the stream."""
    from facerest_cli.video.synth import make_clip

    d = tmp_path / "in"
    d.mkdir()
    make_clip(d / "subs.mkv", face, frames=50, audio_codec="vorbis", subtitles=[(0.2, 0.5, "Hello"), (1.0, 0.5, "World")])
    (d / "as_mov.mov").write_bytes((d / "subs.mkv").read_bytes())
    res = run_images(d, tmp_path / "out", **fast())
    assert res.failed == [] and res.processed == 2
    mkv, mov = tmp_path / "out" / "subs.mkv", tmp_path / "out" / "as_mov.mov"
    assert describe(mkv)["streams"] == [("video", "h264"), ("audio", "vorbis"), ("subtitle", "srt")]
    assert stream_packets(mkv, "subtitle") == [b"Hello", b"World"]
    assert stream_packets(mkv, "audio") == stream_packets(d / "subs.mkv", "audio")
    assert describe(mov)["streams"] == [("video", "h264"), ("audio", "aac")]
    warnings = [w["warning"] for w in res.warnings if w["path"].endswith("as_mov.mov")]
    assert any("audio stream #1 (vorbis) re-encoded to AAC" in w for w in warnings), warnings
    assert any("subtitle stream #2" in w and "dropped" in w for w in warnings), warnings
    assert not [w for w in res.warnings if w["path"].endswith("subs.mkv")]
    # the re-encoded audio still lasts as long as the video
    import av

    with av.open(str(mov)) as c:
        a = c.streams.audio[0]
        assert float(a.duration * a.time_base) == pytest.approx(2.0, abs=0.1)


def test_ffv1_master_is_lossless_outside_the_faces(tmp_path, face):
    """--codec ffv1 writes exactly the frames the pipeline produced: with --restorer none, every pixel outside
    the pasted face regions equals the decoded input."""
    import av

    from facerest_cli.video.synth import make_clip

    clip = tmp_path / "m.mp4"
    make_clip(clip, face, frames=10, audio_hz=None, motion="static")
    res = run_images(clip, tmp_path / "out", **fast(codec="ffv1"))
    assert res.failed == [] and res.outputs == [str(tmp_path / "out" / "m.mkv")]
    assert describe(tmp_path / "out" / "m.mkv")["codec"] == "ffv1"
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    with av.open(str(clip)) as a, av.open(str(tmp_path / "out" / "m.mkv")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0)))
    assert len(pairs) == 10
    from facerest_cli.video.color import ColorTags, frame_to_bgr

    for (fa, fb), r in zip(pairs, recs):
        x = frame_to_bgr(fa, ColorTags.of(fa))
        y = fb.to_ndarray(format="bgr24")
        changed = np.any(x != y, axis=2)
        x1, y1, x2, y2 = r["bbox"]
        m = max(x2 - x1, y2 - y1)
        inside = np.zeros_like(changed)
        inside[max(0, int(y1 - m)):int(y2 + m) + 1, max(0, int(x1 - m)):int(x2 + m) + 1] = True
        assert changed.any() and not (changed & ~inside).any()


def test_color_conversions_do_not_drift():
    """Five decode/encode round trips: the mean stays within 0.1 level (swscale's default drifts by -9.7)."""
    import cv2

    from facerest_cli.video.color import ColorTags, bgr_to_frame, frame_to_bgr

    img = cv2.imread(str(shared_file("images", "gfpgan", "whole_imgs", "Blake_Lively.jpg")))[:464, :700].copy()
    for tags, fmt in [(ColorTags(), "yuv420p"), (ColorTags(1, 1, 1, 1), "yuv420p"), (ColorTags(), "yuv444p"),
                      (ColorTags(1, 1, 1, 1), "yuv420p10le")]:
        x = img
        for _ in range(5):
            f = bgr_to_frame(x, fmt, tags)
            x = frame_to_bgr(f, ColorTags.of(f))
        d = x.astype(np.float64) - img
        assert abs(d.mean()) < 0.1 and np.abs(d).mean() < 2.0, (tags, fmt, d.mean(), np.abs(d).mean())


def test_sniffing_finds_videos_by_content(tmp_path):
    from facerest_cli.io.sources import classify
    from facerest_cli.video.probe import sniff

    assert sniff(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00") == "video"
    assert sniff(b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00") == "image"
    assert sniff(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81") == "video"
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "video"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image"
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image"
    assert sniff(b"hello world, this is text") is None
    jpg = shared_file("images", "insightface", "t1.jpg").read_bytes()
    for name, data, kind in [("a.jpg", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "video"),
                             ("b.mp4", jpg[:64], "image"), ("c.bin", b"\x1a\x45\xdf\xa3" + b"\x00" * 12, "video"),
                             ("d.bin", b"plain text file!", None), ("e.mp4", b"plain text file!", "video")]:
        (tmp_path / name).write_bytes(data)
        assert classify(tmp_path / name) == kind, name


def test_truncated_faststart_mp4_and_corrupt_files_fail_with_clear_reasons(tmp_path, face):
    import av

    from facerest_cli.video.decode import FrameReader
    from facerest_cli.video.probe import probe_video
    from facerest_cli.video.ranges import FrameRange
    from facerest_cli.video.synth import make_clip

    make_clip(tmp_path / "src.mkv", face, frames=100, motion="static")
    # remux with the index first (like a "web optimised" file), then cut it: it opens, but frames stop early
    with av.open(str(tmp_path / "src.mkv")) as i, av.open(str(tmp_path / "fs.mp4"), "w", options={"movflags": "faststart"}) as o:
        m = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is not None:
                p.stream = m[p.stream.index]
                o.mux(p)
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    info = probe_video(tmp_path / "cut.mp4")
    with pytest.raises(InputError, match=r"truncated or corrupt video: frames stop at [\d.]+s of 4.00s"):
        list(FrameReader(info, FrameRange()))
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mkv").write_text("not a video at all\n")
    with pytest.raises(InputError, match="empty file"):
        probe_video(tmp_path / "zero.mp4")
    with pytest.raises(InputError, match="not a readable video"):
        probe_video(tmp_path / "text.mkv")
    # a cut Matroska file has no index to compare with: it is processed, with a warning
    data = (tmp_path / "src.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    r = FrameReader(probe_video(tmp_path / "cut.mkv"), FrameRange())
    n = sum(1 for _ in r)
    assert 40 < n < 100 and any("may be truncated" in w for w in r.warnings)


def test_unavailable_encoder_is_a_usage_error(tmp_path, monkeypatch, face):
    import facerest_cli.video.encode as enc
    from facerest_cli.video.synth import make_clip

    make_clip(tmp_path / "v.mp4", face, frames=3, audio_hz=None)
    monkeypatch.setattr(enc, "encoder_available", lambda codec: False)
    with pytest.raises(UsageError, match="--codec x265"):
        run_images(tmp_path / "v.mp4", tmp_path / "out", **fast(codec="x265"))


def test_x265_when_available(tmp_path, face):
    from facerest_cli.video.encode import encoder_available
    from facerest_cli.video.synth import make_clip

    if not encoder_available("x265"):
        pytest.skip("this PyAV build has no libx265")
    make_clip(tmp_path / "v.mp4", face, frames=10, audio_hz=None, size=(320, 180))
    res = run_images(tmp_path / "v.mp4", tmp_path / "out", **fast(codec="x265"))
    assert res.failed == []
    assert describe(tmp_path / "out" / "v.mp4")["codec"] == "hevc"
    assert len(video_frames(tmp_path / "out" / "v.mp4")) == 10


def test_vfr_time_base_survives_in_mkv(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    pts = [0, 40, 90, 100, 180, 200, 260, 333, 400, 470]
    make_clip(tmp_path / "v.mkv", face, frames=10, pts=pts, time_base=Fraction(1, 1000), audio_hz=None)
    res = run_images(tmp_path / "v.mkv", tmp_path / "out", **fast())
    assert res.failed == []
    assert [t for _, t in video_frames(tmp_path / "out" / "v.mkv")] == pytest.approx([p / 1000 for p in pts])


def test_odd_sizes_keep_their_resolution_and_upscale_scales_the_video(tmp_path, face):
    """4:2:0 needs even sizes: an odd-sized source is written 4:4:4 (same size, with a warning); --upscale 2
    doubles the frame (and then 4:2:0 fits again)."""
    import av

    from facerest_cli.video.synth import _background, render_frame

    w, h = 321, 181
    with av.open(str(tmp_path / "odd.mkv"), "w") as o:
        s = o.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        bg = _background(w, h, 0)
        for i in range(5):
            img, _ = render_frame(bg, face, w / 2, h / 2, 90)
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = i
            for p in s.encode(f):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)
    res = run_images(tmp_path / "odd.mkv", tmp_path / "out", **fast())
    assert res.failed == [] and res.faces == 5
    d = describe(tmp_path / "out" / "odd.mkv")
    assert (d["width"], d["height"], d["pix_fmt"], d["codec"]) == (321, 181, "yuv444p", "h264")
    assert [w["warning"] for w in res.warnings] == ["odd frame size 321x181: encoded as yuv444p (4:2:0 needs even sizes)"]
    res = run_images(tmp_path / "odd.mkv", tmp_path / "up", upscale=2, **fast())
    d = describe(tmp_path / "up" / "odd.mkv")
    assert res.failed == [] and (d["width"], d["height"], d["pix_fmt"]) == (642, 362, "yuv420p")
    assert len(video_frames(tmp_path / "up" / "odd.mkv")) == 5


def test_timecode_track_and_tags_are_carried_over(tmp_path):
    """A camera-style MOV: container title and a QuickTime timecode track (a data stream PyAV cannot remux):
    the title is copied and the timecode track is rebuilt from the start timecode, with no warning."""
    import av

    with av.open(str(tmp_path / "cam.mov"), "w") as o:
        o.metadata["title"] = "Reel 7"
        s = o.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.metadata["timecode"] = "01:02:03:04"
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="bgr24")
            f.pts = i
            for p in s.encode(f):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)
    assert describe(tmp_path / "cam.mov")["streams"] == [("video", "h264"), ("data", None)]
    res = run_images(tmp_path / "cam.mov", tmp_path / "out", **fast())
    assert res.failed == [] and res.warnings == []
    with av.open(str(tmp_path / "out" / "cam.mov")) as c:
        assert [s.type for s in c.streams] == ["video", "data"]
        assert c.streams.video[0].metadata.get("timecode") == "01:02:03:04"
        assert c.metadata.get("title") == "Reel 7"


def test_a_range_with_no_frame_in_it_is_a_clear_failure(tmp_path, clip4):
    res = run_images(clip4, tmp_path / "out", **fast(start="1.01", end="1.02"))  # frames are at 1.00 and 1.04
    assert [f.error for f in res.failed] == ["no video frames in the range 1.01s .. 1.02s"]
    assert res.processed == 0
