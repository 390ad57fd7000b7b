"""``--engine ray`` against ``--engine local`` (issue 14): the same bytes, report lines and summary counts on a mixed
folder; the same per-file failures on the archival bad-input corpus; a killed worker or driver costs time only.

One local Ray (2 CPUs on 127.0.0.1) serves the whole module (``conftest.ray_cluster``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.archival._data import RUN_ARGS, cli_cmd, cli_env, fast_options, forty_images, temp_files
from tests.conftest import run_images, shared_file
from tests.engines.conftest import engine, moved, output_files, report_lines, summary, summary_counts

# Each test starts a local Ray and runs whole folders through both engines: CI runs them, test-fast skips them.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Solvay (29 faces, RGBA), t1, gfpgan's whole images, a grayscale photo stored as RGB, a 16-bit RGB PNG and a
    6-frame video with an AAC track."""
    from facerest_cli.video.synth import load_face, make_clip

    d = tmp_path_factory.mktemp("engines") / "in"
    d.mkdir()
    for parts in (("gpen", "imgs", "Solvay_conference_1927.png"), ("insightface", "t1.jpg")):
        shutil.copy(shared_file("images", *parts), d / parts[-1])
    for p in sorted(shared_file("images", "gfpgan", "whole_imgs").iterdir()):
        shutil.copy(p, d / p.name)
    shutil.copy(shared_file("images", "gpen", "grays", "106000_gray.png"), d / "gray.png")
    im = cv2.imread(str(shared_file("images", "deepface", "img3.jpg")))
    im = cv2.resize(im, (400, int(400 * im.shape[0] / im.shape[1])), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(5)
    cv2.imwrite(str(d / "sixteen.png"), (im.astype(np.uint16) * 257 + rng.integers(0, 200, im.shape)).astype(np.uint16))
    face = load_face(shared_file("images", "gfpgan", "cropped_faces", "Julia_Roberts_crop.png"))
    make_clip(d / "clip.mp4", face, size=(320, 240), frames=6)
    return d


def _both(folder: Path, work: Path, **opts):
    """The same run with each engine, into the same output path (records then name the same files)."""
    out = work / "out"
    local = run_images(folder, out, engine=engine("local"), **opts)
    moved(out, work / "local")
    ray = run_images(folder, out, engine=engine("ray"), **opts)
    moved(out, work / "ray")
    return local, ray


def _assert_same(work: Path, local, ray, min_faces: int) -> None:
    assert local.exit_code == ray.exit_code == 0, (local.failed, ray.failed)
    assert local.faces == ray.faces >= min_faces and local.processed == ray.processed == 8
    a, b = output_files(work / "local"), output_files(work / "ray")
    assert sorted(a) == sorted(b)
    assert any(k.endswith("clip.mp4") for k in a) and any(k.startswith("report_thumbs/") for k in a)
    different = [k for k in a if a[k] != b[k]]
    assert different == [], different
    la, lb = report_lines(work / "local"), report_lines(work / "ray")
    assert len(la) == local.faces and sorted(la) == sorted(lb)
    assert summary_counts(work / "local") == summary_counts(work / "ray")
    s = summary(work / "ray")["ray"]
    assert s["object_store"]["images"] == 7 and s["object_store"]["prepared_bytes_per_face"] > 0


def test_same_bytes_reports_and_counts_with_no_restorer(ray_cluster, mixed_folder, tmp_path):
    """Default stages (3D prior, identity report with arcface-mobilefacenet, feather masks), --restorer none,
    --save-crops: every output, thumbnail and crop the same bytes."""
    from facerest_cli.config import VideoConfig

    local, ray = _both(mixed_folder, tmp_path, restorer_name="none", save_crops=True, video=VideoConfig(preset="ultrafast"))
    _assert_same(tmp_path, local, ray, min_faces=45)
    s = summary(tmp_path / "ray")
    assert s["prior"]["faces"] == s["identity"]["faces"] == local.faces and len(s["videos"]) == 1


def test_same_bytes_with_a_gfpgan_checkpoint(ray_cluster, mixed_folder, tmp_path):
    """A make_checkpoint gfpgan-1.4 (the official file layout, imported as a user would), the largest face per
    picture: the network runs one face per call on CPU, so the engines' different batches give the same bytes.
    In bf16 (torch autocast, as `--precision auto` runs it on this CPU): 3x less CI time than fp32, and the same
    determinism holds (same kernels, same thread counts in every actor)."""
    from facerest_cli.config import VideoConfig
    from tests.restore.test_restorers_e2e import install_standin

    install_standin("gfpgan-1.4", "gfpgan_v1.4", tmp_path)
    local, ray = _both(mixed_folder, tmp_path, restorer_name="gfpgan-1.4", faces="largest", precision="bf16",
                       video=VideoConfig(preset="ultrafast"))
    _assert_same(tmp_path, local, ray, min_faces=13)


def test_bad_input_corpus_fails_the_same_files_the_same_way(ray_cluster, tmp_path):
    from PIL import Image

    from tests.archival.test_bad_inputs import _bad_files, _good_files
    from tests.archival._data import small_photo

    d = tmp_path / "mixed"
    d.mkdir()
    photo = small_photo(320)
    _good_files(d, photo)
    _bad_files(d, photo)
    try:
        local, ray = _both(d, tmp_path, **fast_options())
    finally:
        os.chmod(d / "unreadable.jpg", 0o644)
    assert local.exit_code == ray.exit_code == 1
    assert {f.path: f.error for f in ray.failed} == {f.path: f.error for f in local.failed}
    assert len(ray.failed) >= 7 and all("\n" not in f.error for f in ray.failed)
    assert [(s.path, s.error) for s in ray.skipped] == [(s.path, s.error) for s in local.skipped]
    assert ray.processed == local.processed
    a, b = output_files(tmp_path / "local"), output_files(tmp_path / "ray")
    assert a == b and len(a) >= 9
    assert summary_counts(tmp_path / "local") == summary_counts(tmp_path / "ray")
    assert isinstance(Image, type(Image))  # (Pillow builds the corpus)


# ------------------------------------------------------------------------------------------------------- faults


@pytest.fixture(scope="module")
def forty(tmp_path_factory):
    """40 one-face photos and a clean local run of them (the reference bytes)."""
    root = tmp_path_factory.mktemp("forty")
    forty_images(root / "in")
    clean = run_images(root / "in", root / "clean", **fast_options())
    assert clean.exit_code == 0 and clean.processed == 40
    return root


def _restore_workers() -> list:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "MapBatches(_Restore)" in cmd:
            out.append(p)
    return out


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _assert_like_clean(clean: Path, out: Path) -> None:
    """Outputs byte-identical to the clean run's, exactly one report line per face, the same lines (the output
    folder's name aside), no temp file left."""
    assert output_files(out) == output_files(clean)
    lines = report_lines(out)
    faces = summary(clean)["faces"]  # 43: a few of the 40 photos hold two faces
    assert len(lines) == len(set(lines)) == faces, "exactly one report line per face"
    assert sorted(x.replace(str(out), "OUT") for x in lines) == sorted(
        x.replace(str(clean), "OUT") for x in report_lines(clean))
    assert temp_files(out) == []


@pytest.mark.slow
def test_a_killed_restorer_worker_is_retried(ray_cluster, forty, tmp_path):
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_when_busy() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            if _lines(out / "report.jsonl") >= 3:
                for p in _restore_workers():
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
                    break
            time.sleep(0.05)

    t = threading.Thread(target=kill_when_busy, daemon=True)
    t.start()
    res = run_images(forty / "in", out, engine=engine("ray", ray_batch_images=2), **fast_options())
    t.join(timeout=1)
    assert killed, "the restorer worker was not found while the run was going on"
    assert res.exit_code == 0 and res.processed == 40 and res.failed == []
    _assert_like_clean(forty / "clean", out)


@pytest.mark.slow
@pytest.mark.parametrize("resume_engine", ["ray", "local"])
def test_a_killed_driver_resumes_with_either_engine(ray_cluster, forty, tmp_path, resume_engine):
    out = tmp_path / "out"
    proc = subprocess.Popen(cli_cmd("run", forty / "in", "-o", out, *RUN_ARGS, "--engine", "ray", "--ray-address",
                                    ray_cluster, "--ray-batch-images", "2"), env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _lines(out / "manifest.jsonl") < 6:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _lines(out / "manifest.jsonl") - 1
    assert 5 <= done_before < 40
    res = run_images(forty / "in", out, resume=True, engine=engine(resume_engine), **fast_options())
    assert res.exit_code == 0 and res.processed == 40 and res.failed == []
    assert summary(out)["resume"]["already_done"] >= done_before
    _assert_like_clean(forty / "clean", out)
