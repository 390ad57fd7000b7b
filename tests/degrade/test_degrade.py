"""`facerest degrade`: reproducible, every drawn parameter recorded, and the outputs consistent with them
(checked on the written files: JPEG quantisation tables, stage sizes, noise level, a full replay)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import run_cli, shared_file

# ITU-T T.81 Annex K.1 / K.2: the example quantisation tables libjpeg scales (natural row-major order).
LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29,
        51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121,
        120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99,
          99, 99, 99, 99, 99] + [99] * 32


def ijg_table(base: list[int], quality: int) -> list[int]:
    """libjpeg's jpeg_quality_scaling + jpeg_add_quant_table(force_baseline=TRUE)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((b * scale + 50) // 100, 1), 255) for b in base]


def read_quality_tables(data: bytes) -> tuple[list[int], list[int]]:
    from PIL import Image

    q = Image.open(io.BytesIO(data)).quantization
    return list(q[0]), list(q[1])


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """Three ffhq-10 faces resized to 512 (INTER_AREA), in a subfolder to exercise relative paths."""
    d = tmp_path_factory.mktemp("faces")
    (d / "sub").mkdir()
    for i, rel in enumerate(("00000.png", "sub/00001.png", "00002.png")):
        im = cv2.imread(str(shared_file("images", "gpen", "ffhq-10", f"{i:05d}.png")))
        cv2.imwrite(str(d / rel), cv2.resize(im, (512, 512), interpolation=cv2.INTER_AREA))
    return d


def _tree(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_and_another_seed_differs(faces, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        r = run_cli("degrade", faces, "-o", out, "--recipe", "gfpgan", "--seed", seed, "-q")
        assert r.returncode == 0, r.stderr
        assert "3 degraded with --recipe gfpgan --seed" in r.stdout
    ta, tb, tc = _tree(a), _tree(b), _tree(c)
    assert sorted(ta) == ["00000.json", "00000.png", "00002.json", "00002.png", "sub/00001.json", "sub/00001.png"]
    assert ta == tb
    assert all(ta[k] != tc[k] for k in ta)
    # An image's draw depends on the seed and its own relative path, not on the other inputs.
    solo = tmp_path / "solo"
    assert run_cli("degrade", faces / "00002.png", "-o", solo, "--recipe", "gfpgan", "--seed", 0, "-q").returncode == 0
    assert (solo / "00002.png").read_bytes() == (a / "00002.png").read_bytes()


@pytest.mark.parametrize("recipe", ["gfpgan", "codeformer-large", "sgpn", "frex"])
def test_outputs_are_consistent_with_recorded_parameters(faces, tmp_path, recipe):
    from facerest_cli.degrade.run import DegradeOptions, degrade_files, replay

    opts = DegradeOptions(recipe=recipe, seed=7, out_dir=tmp_path / "out", keep_stages=True)
    res = degrade_files([faces], opts)
    assert res.failed == [] and len(res.written) == 3
    for png in res.written:
        meta = json.loads(png.with_suffix(".json").read_text())
        rel = Path(meta["input"])
        clean = cv2.imread(str(faces / rel))
        assert meta["input_sha256"] == hashlib.sha256((faces / rel).read_bytes()).hexdigest()
        assert meta["recipe"] == recipe and meta["seed"] == 7 and meta["size"] == [512, 512]
        out = cv2.imread(str(png))
        assert out.shape == clean.shape
        # The sidecar holds the complete draw: replaying it gives the written pixels exactly.
        assert np.array_equal(replay(meta, clean), out)
        stages = sorted((tmp_path / "out" / ".stages" / rel.with_suffix("")).iterdir())
        assert len(stages) == len(meta["steps"])
        prev = clean.astype(np.float64) / 255.0
        for step, f in zip(meta["steps"], stages):
            assert f.name.startswith(f"{meta['steps'].index(step):02d}_{step['op']}") or step["op"] in f.name
            if step["op"] == "jpeg":
                # The bitstream that was decoded carries libjpeg's tables for exactly the recorded quality.
                luma, chroma = read_quality_tables(f.read_bytes())
                assert luma == ijg_table(LUMA, step["quality"]) and chroma == ijg_table(CHROMA, step["quality"])
                cur = cv2.imdecode(np.frombuffer(f.read_bytes(), np.uint8), cv2.IMREAD_COLOR).astype(np.float64) / 255.0
            else:
                cur = cv2.imread(str(f), cv2.IMREAD_UNCHANGED).astype(np.float64) / 65535.0
            if step["op"] == "resize":
                assert [cur.shape[1], cur.shape[0]] == step["size"]  # the downscale factor is visible
            if step["op"] == "noise" and step["sigma"] >= 3:
                resid = cur - prev
                inside = (prev > 0.1) & (prev < 0.9)  # away from the clip at 0 and 1
                measured = resid[inside].std() * 255.0
                assert abs(measured - step["sigma"]) <= 0.08 * step["sigma"] + 0.05, (measured, step["sigma"])
            if step["op"] == "blur" and step["sigma_x"] >= 2:
                # A Gaussian blur removes high frequencies: the Laplacian energy drops.
                lap = lambda x: cv2.Laplacian(x.astype(np.float32), cv2.CV_32F).var()  # noqa: E731
                assert lap(cur) < 0.5 * lap(prev)
            prev = cur


def test_jpeg_quality_30_is_encoded_at_30():
    from facerest_cli.degrade.ops import jpeg_bytes

    img = cv2.resize(cv2.imread(str(shared_file("images", "gpen", "ffhq-10", "00004.png"))), (128, 128)) / 255.0
    for q in (30, 60, 99):
        luma, chroma = read_quality_tables(jpeg_bytes(img.astype(np.float32), q))
        assert luma == ijg_table(LUMA, q) and chroma == ijg_table(CHROMA, q)
    assert ijg_table(LUMA, 30)[0] == 27 and ijg_table(LUMA, 50) == LUMA  # the scaling rule itself


def test_bicubic_factor_is_visible_in_the_spectrum(faces, tmp_path):
    """Energy above the x4 Nyquist frequency (|f_y| > 80 of 256 cycles) falls with the factor: x4 removes most of
    it, x2 (whose Nyquist is 128) keeps more; the size is kept."""
    from facerest_cli.degrade.run import DegradeOptions, degrade_files

    clean = cv2.imread(str(faces / "00000.png")).astype(np.float64)
    hi = np.zeros((512, 512), bool)
    hi[80 : 512 - 80, :] = True

    def high(x):
        return np.abs(np.fft.fft2(x[..., 1]))[hi].mean()

    ratio = {}
    for n in (2, 4):
        res = degrade_files([faces / "00000.png"], DegradeOptions(recipe=f"bicubic-x{n}", seed=0, out_dir=tmp_path / str(n)))
        out = cv2.imread(str(res.written[0])).astype(np.float64)
        assert out.shape == clean.shape
        ratio[n] = high(out) / high(clean)
    assert ratio[4] < 0.25 and ratio[4] < 0.8 * ratio[2] and ratio[2] < 0.5  # measured 0.17, 0.27


def test_bad_inputs_are_reported_and_the_run_goes_on(faces, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(faces, src)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cv2.imwrite(str(src / "wide.png"), np.zeros((100, 200, 3), np.uint8))
    before = _tree(src)
    r = run_cli("degrade", src, "-o", tmp_path / "out", "--recipe", "codeformer", "--seed", 3)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(lines) == 2
    assert any("broken.png" in ln for ln in lines) and any("wide.png" in ln and "--whole" in ln for ln in lines)
    assert (tmp_path / "out" / "00000.png").is_file() and (tmp_path / "out" / "sub" / "00001.png").is_file()
    assert "3 degraded" in r.stdout and "2 failed" in r.stdout
    # --whole takes the non-square photo at its own size.
    r2 = run_cli("degrade", src / "wide.png", "-o", tmp_path / "whole", "--recipe", "codeformer", "--seed", 3, "--whole", "-q")
    assert r2.returncode == 0 and cv2.imread(str(tmp_path / "whole" / "wide.png")).shape == (100, 200, 3)
    assert _tree(src) == before


def test_inputs_are_never_overwritten(faces, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(faces, src)
    before = _tree(src)
    r = run_cli("degrade", src, "-o", src, "--recipe", "gfpgan", "--seed", 0, "-q")
    assert r.returncode == 1
    # The two top-level faces are refused by name; sub/ lies inside the output folder, which is never walked.
    assert r.stderr.count("would overwrite an input file") == 2
    assert _tree(src) == before
