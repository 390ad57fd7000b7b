"""`facerest bench` on video (acceptance 6, issue 7) and the video progress line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli, shared_file
from tests.video.conftest import FACE


def test_bench_video_stage_reports_frames_per_second(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, face, size=(320, 180), frames=20)
    js = tmp_path / "bench.json"
    proc = run_cli("bench", clip, "--stage", "video", "--json", js)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    assert result["bench"] == "video" and result["size"] == "320x180"
    assert [r["config"] for r in result["rows"]] == ["run defaults", "restorer only"]
    for r in result["rows"]:
        assert r["frames"] == 20 and r["faces"] >= 19
        assert r["frames/s"] > 0 and r["seconds"] > 0
        assert abs(r["frames/s"] * r["seconds"] - 20) < 0.5
    assert "frames/s" in proc.stdout


def test_bench_pipeline_on_a_video_adds_frames_per_second(tmp_path, face):
    from facerest_cli.video.synth import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, face, size=(320, 180), frames=15, audio_hz=None)
    js = tmp_path / "bench.json"
    proc = run_cli("bench", clip, "--json", js)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    assert result["frames"] == 15 and result["images"] == 1
    end = result["rows"][-1]
    assert end["stage"] == "end to end" and end["frames/s"] > 0


def test_bench_video_generates_a_clip_from_a_face_picture(tmp_path):
    from facerest_cli import bench
    from facerest_cli.weights.cache import WeightsConfig

    result = bench.bench_video(WeightsConfig.from_env(), restorer="none", batches=[8], precisions=["fp32"],
                               device="cpu", path=shared_file(*FACE), size=(320, 180), frames=12)
    assert result["size"] == "320x180" and result["clip"].endswith(FACE[-1])
    assert all(r["frames"] == 12 and r["frames/s"] > 0 for r in result["rows"])


def test_progress_shows_the_current_video_with_frames_per_second():
    from facerest_cli.cli._progress import RichEvents

    ev = RichEvents(total=None, quiet=True)
    ev.start(2)
    p = Path("film.mp4")
    for i in range(5):
        ev.frame_done(p, i, 100)
    video = [t for t in ev._progress.tasks if t.fields.get("unit") == "frames"]
    assert len(video) == 1 and video[0].completed == 5 and video[0].total == 100
    assert video[0].fields["rate"].endswith("frames/s")
    ev.image_done(p, 1)
    assert [t.fields["unit"] for t in ev._progress.tasks] == ["images"]
    ev.__exit__(None, None, None)
