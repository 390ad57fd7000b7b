"""`facerest eval` end to end (issue acceptance 3 and 4): ffhq-10 at 512, degraded with --recipe gfpgan --seed 0,
scored against the clean faces with every metric whose weights are installed; identity and LMD with the real
ArcFace-MobileFaceNet and 3DDFA weights from ../shared; a missing metric network skips only its column."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import WEIGHTS, run_cli, shared_file


@pytest.fixture(scope="module")
def ffhq512(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ffhq512")
    for p in sorted(shared_file("images", "gpen", "ffhq-10").glob("*.png")):
        cv2.imwrite(str(d / p.name), cv2.resize(cv2.imread(str(p)), (512, 512), interpolation=cv2.INTER_AREA))
    assert len(list(d.glob("*.png"))) == 10
    return d


@pytest.fixture(scope="module")
def degraded(ffhq512, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ffhq512_gfpgan_s0")
    r = run_cli("degrade", ffhq512, "-o", out, "--recipe", "gfpgan", "--seed", 0, "-q")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def store(metric_home):
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    return WeightsStore(WeightsConfig(home=metric_home / "weights", extra_dirs=(WEIGHTS,), offline=True))


@pytest.fixture(scope="module")
def networks(store, ffhq512):
    """Every metric network installed in metric_home, loaded once for the in-process tests of this module."""
    from facerest_cli.metrics.evaluate import EvalOptions, prepare

    return prepare(EvalOptions(restored=ffhq512, reference=ffhq512), store)


def only(prep, *groups):
    """The loaded networks, restricted to ``groups`` (evaluate runs the groups its Prepared lists as active)."""
    from facerest_cli.metrics.evaluate import Prepared

    return Prepared([g for g in prep.active if g in groups], {}, prep.models,
                    {k: v for k, v in prep.names.items() if k in groups})


@pytest.mark.slow  # a whole run or a full-size network: CI runs it, `make test-fast` skips it
def test_eval_table_for_the_degraded_input(ffhq512, degraded, use_metric_home, tmp_path):
    env = {"FACEREST_HOME": str(use_metric_home), "FACEREST_WEIGHTS_DIR": str(WEIGHTS)}
    j, c, m = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.md"
    r = run_cli("eval", "--restored", degraded, "--reference", ffhq512, "--json", j, "--csv", c, "--md", m,
                "--batch-size", 4, env=env)
    assert r.returncode == 0, r.stderr
    # lpips-vgg's backbone is the one metric file not installed: only its column is skipped, with the command.
    skipped = [ln for ln in r.stderr.splitlines() if "skipped" in ln]
    assert skipped == ["facerest: lpips-vgg: skipped, lpips-vgg/vgg16-397923af.pth is not installed; "
                       "run: facerest weights fetch lpips-vgg"]
    res = json.loads(j.read_text())
    assert res["images"] == 10 and res["failed"] == []
    assert res["columns"] == ["psnr", "psnr_y", "ssim", "ssim_y", "lpips_alex", "niqe", "id_cos", "id_deg", "lmd", "shape"]
    assert res["models"]["identity"].startswith("arcface-mobilefacenet") and res["models"]["lmd"].startswith("3ddfa-mb05")
    rows = {row["path"]: row for row in res["rows"]}
    assert sorted(rows) == [f"{i:05d}.png" for i in range(10)]
    for name, row in rows.items():
        deg = cv2.imread(str(degraded / name))
        ref = cv2.imread(str(ffhq512 / name))
        assert abs(row["psnr"] - cv2.PSNR(deg, ref)) < 1e-9  # OpenCV's PSNR is the RGB formula
        assert 0 <= row["id_deg"] <= 180 and abs(math.degrees(math.acos(row["id_cos"])) - row["id_deg"]) < 1e-9
        assert row["lpips_alex"] > 0 and row["lmd"] > 0 and row["shape"] > 0 and row["ssim"] < 1
    for col in res["columns"]:
        assert res["means"][col] == pytest.approx(np.mean([row[col] for row in res["rows"]]), rel=1e-12)
    assert res["fid"] is not None and res["fid"] > 0
    assert any("FID on 10 images" in n for n in res["notes"])
    # GFPGAN's training degradation is strong: well below the clean faces (PSNR > 30 dB vs themselves is inf).
    assert 15 < res["means"]["psnr"] < 30 and res["means"]["niqe"] > 6
    with c.open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["path", *res["columns"]] and table[-2][0] == "mean" and table[-1][0] == "fid"
    md = m.read_text()
    assert "| images | PSNR ↑ | PSNR-Y ↑ | SSIM ↑ | SSIM-Y ↑ | LPIPS-alex ↓ | NIQE ↓ | ID cos ↑ | Deg ↓ | LMD ↓ | Shape ↓ | FID ↓ |" in md
    assert "run: facerest weights fetch lpips-vgg" in md
    assert r.stdout.startswith("| images |")


def test_references_scored_against_themselves(ffhq512, store, networks):
    """Facts any correct pipeline shows: a face against itself has PSNR inf, SSIM 1, LPIPS 0, cosine 1, LMD 0,
    shape 0 and FID 0 (same statistics); NIQE of clean FFHQ faces is low (natural images: 3-5)."""
    from facerest_cli.metrics.evaluate import EvalOptions, evaluate

    subset = ffhq512.parent / "ffhq512_subset"
    subset.mkdir(exist_ok=True)
    for name in ("00000.png", "00005.png", "00009.png"):
        shutil.copy(ffhq512 / name, subset / name)
    res = evaluate(EvalOptions(restored=subset, reference=subset, metrics=("all",)), store, prepared=networks)
    assert set(res.skipped) == {"lpips-vgg"} and res.failed == []
    assert res.columns == ["psnr", "psnr_y", "ssim", "ssim_y", "lpips_alex", "niqe", "id_cos", "id_deg", "lmd", "shape"]
    for row in res.rows:
        assert row["psnr"] == math.inf and row["ssim"] == 1.0 and row["lpips_alex"] == 0.0
        assert row["id_cos"] > 0.9999 and row["lmd"] == 0.0 and row["shape"] == 0.0
        assert 2.5 < row["niqe"] < 6
    # Rank-2 covariances: the square roots of ~2000 round-off eigenvalues add ~1e-3; distinct sets give tens.
    assert abs(res.fid) < 1e-2


@pytest.mark.slow  # a whole run or a full-size network: CI runs it, `make test-fast` skips it
def test_fid_stats_file_gives_the_folder_result(ffhq512, degraded, store, networks, tmp_path):
    from facerest_cli.metrics.evaluate import EvalOptions, evaluate

    res, ref = tmp_path / "res", tmp_path / "ref"
    for d, src in ((res, degraded), (ref, ffhq512)):
        d.mkdir()
        for name in ("00001.png", "00004.png", "00008.png"):
            shutil.copy(src / name, d / name)
    stats = tmp_path / "ffhq512.npz"
    fid = only(networks, "fid")
    a = evaluate(EvalOptions(restored=res, reference=ref, metrics=("fid",), save_fid_stats=stats, batch_size=2),
                 store, prepared=fid)
    # Same batches, so the same restored statistics: the stored reference statistics give the same FID.
    b = evaluate(EvalOptions(restored=res, fid_stats=stats, metrics=("fid",), batch_size=2), store, prepared=fid)
    assert a.fid is not None and a.fid > 1 and a.fid == b.fid
    # Without a reference only the no-reference metrics run; the others say what they need.
    c = evaluate(EvalOptions(restored=res, metrics=("psnr", "niqe", "fid")), store)
    assert c.columns == ["niqe"] and len(c.rows) == 3
    assert c.skipped["psnr"].endswith("it needs --reference DIR (a clean image per restored image)")
    assert c.skipped["fid"] == "fid: skipped, it needs --reference DIR or --fid-stats FILE"


def test_missing_metric_weights_skip_only_their_columns(ffhq512, degraded, tmp_path):
    """Acceptance 4: a fresh cache (only ../shared/weights): LPIPS, NIQE and FID are skipped, each with its fetch
    command, exit code 0, and PSNR/SSIM/identity/LMD/shape are still computed for every image."""
    sub = tmp_path / "deg"
    sub.mkdir()
    for name in ("00001.png", "00002.png"):
        shutil.copy(degraded / name, sub / name)
    j = tmp_path / "r.json"
    r = run_cli("eval", "--restored", sub, "--reference", ffhq512, "--json", j, "-q",
                env={"FACEREST_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    cmds = sorted(ln.rsplit("run: ", 1)[1] for ln in r.stderr.splitlines() if "skipped" in ln)
    assert cmds == ["facerest weights fetch fid-inception", "facerest weights fetch lpips-alex",
                    "facerest weights fetch lpips-vgg", "facerest weights fetch niqe-params"]
    res = json.loads(j.read_text())
    assert res["columns"] == ["psnr", "psnr_y", "ssim", "ssim_y", "id_cos", "id_deg", "lmd", "shape"]
    assert res["fid"] is None and len(res["rows"]) == 2
    assert all(row[c] is not None for row in res["rows"] for c in res["columns"])
    assert not (tmp_path / "home" / "weights" / "lpips-vgg").exists()  # nothing was downloaded


def test_unpaired_and_mismatched_inputs_are_reported(ffhq512, degraded, store, tmp_path):
    from facerest_cli.metrics.evaluate import EvalOptions, evaluate

    d = tmp_path / "res"
    d.mkdir()
    shutil.copy(degraded / "00003.png", d / "00003.png")
    cv2.imwrite(str(d / "00004.png"), cv2.resize(cv2.imread(str(degraded / "00004.png")), (256, 256)))
    cv2.imwrite(str(d / "orphan.png"), np.zeros((512, 512, 3), np.uint8))
    failures: list[str] = []
    res = evaluate(EvalOptions(restored=d, reference=ffhq512, metrics=("psnr",)), store, on_failure=failures.append)
    assert [row["path"] for row in res.rows] == ["00003.png"]
    assert len(failures) == 2 and any("orphan.png: no reference" in f for f in failures)
    assert any("00004.png: size 256x256 differs from its reference" in f for f in failures)
    r = run_cli("eval", "--restored", d, "--reference", ffhq512, "--metrics", "psnr", "-q")
    assert r.returncode == 1 and "not scored" in r.stderr


@pytest.mark.slow
def test_gfpgan_restoration_scored_end_to_end(ffhq512, degraded, store, networks, tmp_path):
    """Two degraded faces restored by `facerest run --aligned --restorer gfpgan-1.4` (make_checkpoint stand-in,
    imported with --trust as in tests/restore), then scored: the table is complete for the restored faces."""
    from facerest_cli.metrics.evaluate import EvalOptions, evaluate
    from tests.conftest import run_images
    from tests.restore.test_restorers_e2e import install_standin

    install_standin("gfpgan-1.4", "gfpgan_v1.4", tmp_path)
    inputs = [degraded / "00006.png", degraded / "00007.png"]
    out = tmp_path / "restored"
    res = run_images(inputs, out, restorer_name="gfpgan-1.4", aligned=True, batch_size=2)
    assert res.failed == [] and res.processed == 2
    scored = tmp_path / "scored"
    scored.mkdir()
    for p in inputs:
        shutil.copy(out / p.name, scored / p.name)
    groups = ("psnr", "ssim", "lpips-alex", "identity", "lmd", "shape")
    ev = evaluate(EvalOptions(restored=scored, reference=ffhq512, metrics=groups), store,
                  prepared=only(networks, *groups))
    assert len(ev.rows) == 2 and ev.failed == []
    for row in ev.rows:
        assert all(row[c] is not None and np.isfinite(row[c]) for c in ev.columns)
        assert row["psnr"] < 40  # the stand-in network changed the faces


def test_eval_detect_forwards_every_argument(monkeypatch):
    """`facerest eval detect ...` hands its arguments, untouched, to eval_detect.main and exits with its code --
    even options that `eval` itself has (--json, --batch-size, --help)."""
    from typer.testing import CliRunner

    from facerest_cli.cli import app

    seen: list[list[str]] = []
    fake = types.ModuleType("facerest_cli.cli.eval_detect")
    fake.main = lambda argv: seen.append(list(argv)) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "facerest_cli.cli.eval_detect", fake)
    import facerest_cli.cli as cli_pkg

    # `from facerest_cli.cli import eval_detect` reads the package attribute first when an earlier test imported it.
    monkeypatch.setattr(cli_pkg, "eval_detect", fake, raising=False)
    argv = ["labels.jsonl", "--json", "out.json", "--batch-size", "2", "--iou", "0.5", "--help"]
    r = CliRunner().invoke(app, ["eval", "detect", *argv])
    assert r.exit_code == 3, r.output
    assert seen == [argv]
