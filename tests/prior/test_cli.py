"""``facerest prior``, ``facerest doctor`` and ``facerest bench --stage prior`` through the real CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facerest_cli.prior.render import pytorch3d_available
from tests.conftest import run_cli, shared_file


@pytest.fixture(scope="module")
def t1_prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "t1_mesh.png"
    proc = run_cli("prior", shared_file("images", "insightface", "t1.jpg"), "--json", "--render", out)
    return proc, out


def test_prior_json(t1_prior):
    proc, _ = t1_prior
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["regressor"] == "3ddfa-mb05" and len(data["faces"]) == 6
    for f in data["faces"]:
        assert len(f["landmarks68"]) == 68 and len(f["shape"]) == 40 and len(f["expression"]) == 10
        assert -90 <= f["yaw"] <= 90
    yaws = sorted(abs(f["yaw"]) for f in data["faces"])
    assert yaws[-1] > 45 and yaws[0] < 10  # one man turned away, the others mostly frontal


def test_prior_render_sits_on_the_faces(t1_prior):
    """Acceptance 6 (the automated part; the PNG was also looked at): the mesh changes the pixels of every face
    box and nothing far from the faces."""
    proc, out = t1_prior
    data = json.loads(proc.stdout)
    src = cv2.imread(str(shared_file("images", "insightface", "t1.jpg")))
    ov = cv2.imread(str(out))
    assert ov is not None and ov.shape == src.shape
    changed = np.abs(ov.astype(int) - src.astype(int)).max(2) > 12
    near = np.zeros(changed.shape, bool)
    for f in data["faces"]:
        x1, y1, x2, y2 = f["bbox"]
        w, h = x2 - x1, y2 - y1
        box = changed[int(y1 + 0.25 * h) : int(y2 - 0.1 * h), int(x1 + 0.2 * w) : int(x2 - 0.2 * w)]
        assert box.mean() > 0.8, f  # the face's centre is covered by the mesh
        near[max(0, int(y1 - 0.4 * h)) : int(y2 + 0.4 * h), max(0, int(x1 - 0.4 * w)) : int(x2 + 0.4 * w)] = True
    assert changed[~near].mean() < 0.001
    # Text output: one line per face with its pose.
    text = run_cli("prior", shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png"))
    assert text.returncode == 0 and "yaw" in text.stdout and "landmarks68:" in text.stdout and "shape (40):" in text.stdout


def test_prior_bad_input(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"hello")
    proc = run_cli("prior", bad)
    assert proc.returncode != 0 and "not_an_image.jpg" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("prior", shared_file("images", "insightface", "t1.jpg"), "--prior", "3ddfa-mb7")
    assert proc.returncode == 2 and "--prior" in proc.stderr


def test_doctor_shows_the_renderer():
    proc = run_cli("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["renderer"]["active"] == ("pytorch3d" if pytorch3d_available() else "torch")
    assert info["weights"]["3ddfa-mb05"]["state"] == "verified"
    assert info["torch"]["version"] and "cuda_available" in info["torch"]
    text = run_cli("doctor")
    assert "3D renderer: " in text.stdout and "3ddfa-mb05" in text.stdout


@pytest.mark.slow
def test_bench_prior_reports_the_render_of_32_meshes(tmp_path):
    """Acceptance 4 is measured with this command (timings are reported, not asserted: they depend on the host)."""
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--stage", "prior", "--iters", "1", "--batch", "1,4", "--device", "cpu", "--json", out)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    render = [r for r in rows if r["stage"] == "render torch"][0]
    assert render["config"].startswith("32 meshes x 76073 tris @ 512px") and render["seconds"] > 0
    assert [r["config"] for r in rows if r["stage"].startswith("regress")] == ["batch 1", "batch 4"]
