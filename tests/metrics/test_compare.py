"""`facerest eval --restorers a,b,c SAMPLE` (issue 17, item 4): restore a sample with each setting, score every
setting with the eval metrics, one table plus an offline HTML page.

Two aligned 512 faces from ../shared (GFPGAN's cropped_faces, --aligned). `none` against itself must give the facts
any correct pipeline shows (identity cosine ~1, shape and LMD distance 0, PSNR inf); a setting with strength 0
must equal `none` exactly; the stand-in gfpgan-1.4 (make_checkpoint, imported --trust) at strength 0.5 must be a
blend of the input with something else, scored as OpenCV scores it. Bad settings and missing weights exit 2
before anything is written."""

from __future__ import annotations

import hashlib
import html.parser
import json
import math
import shutil
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from tests.conftest import WEIGHTS, run_cli, shared_file

FACES = ("Adele_crop.png", "Julia_Roberts_crop.png")
FACE_LABELS = [f"{n}#0" for n in FACES]
# What `none` vs the sample itself scores: no reference needed for *_in and niqe; --reference SAMPLE for the rest.
COLUMNS = ["psnr", "psnr_y", "ssim", "ssim_y", "id_cos_ref", "id_deg_ref", "lmd_ref", "niqe", "id_cos_in", "id_deg_in",
           "shape_in"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("compare_sample")
    for n in FACES:
        shutil.copy(shared_file("images", "gfpgan", "cropped_faces", n), d / n)
    return d


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _home(tmp_path_factory, name: str) -> Path:
    """A FACEREST_HOME with the real NIQE parameters (imported by hash). LPIPS is left missing on purpose."""
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    home = tmp_path_factory.mktemp(name)
    store = WeightsStore(WeightsConfig(home=home / "weights", extra_dirs=(WEIGHTS,)))
    res = store.import_paths([shared_file("checkpoint-formats", "metric-files", "basicsr", "niqe_pris_params.npz")])
    assert [(r.entry, r.action) for r in res] == [("niqe-params", "installed")]
    return home


@pytest.fixture(scope="module")
def niqe_home(tmp_path_factory) -> Path:
    return _home(tmp_path_factory, "compare_home")


class _Refs(html.parser.HTMLParser):
    """Every URL the page refers to (src, href, and any tag that could load something)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "action", "data", "poster") and v is not None:
                self.urls.append((tag, k, v))


def check_page(out: Path, n_images: int) -> _Refs:
    """compare.html exists, loads nothing from outside (no scheme, no absolute path, no script or stylesheet
    file), shows ``n_images`` thumbnails that all exist under compare_thumbs/, and every link opens a local file."""
    page = (out / "compare.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    p = _Refs()
    p.feed(page)
    assert "script" not in p.tags and "iframe" not in p.tags
    assert not [u for u in p.urls if u[0] == "link" and u[2] != "data:,"], "no stylesheet or other linked file"
    imgs = [v for tag, k, v in p.urls if tag == "img"]
    assert len(imgs) == n_images
    for tag, k, v in p.urls:
        if v == "data:,":
            continue
        assert "://" not in v and not v.startswith(("/", "//", "http")), f"external or absolute reference {v}"
        assert (out / unquote(v)).is_file(), f"{tag} {k}={v} points to nothing"
    for v in imgs:
        assert v.startswith("compare_thumbs/") and v.endswith(".jpg")
        assert cv2.imread(str(out / unquote(v))).shape == (224, 224, 3)
    return p


def test_setting_syntax():
    from facerest_cli.errors import UsageError
    from facerest_cli.metrics.compare import parse_settings
    from facerest_cli.registry import names
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    reg = WeightsStore(WeightsConfig.from_env()).registry
    got = parse_settings(["none, gfpgan-1.4@strength=0.50", "codeformer@strength=0.8@fidelity=.3,codeformer"], reg)
    assert [(s.label, s.restorer, s.strength, s.fidelity) for s in got] == [
        ("none", "none", 1.0, None),
        ("gfpgan-1.4@strength=0.5", "gfpgan-1.4", 0.5, None),
        ("codeformer@fidelity=0.3@strength=0.8", "codeformer", 0.8, 0.3),  # canonical order and spelling
        ("codeformer", "codeformer", 1.0, 0.5),  # CodeFormer's default w
    ]
    bad = {
        "": "give at least one setting",
        "gfpgan": "unknown restorer 'gfpgan' in 'gfpgan'; choose from: " + ", ".join(["none", *names("restorer", reg)]),
        "gfpgan-1.4@fidelity=0.3": "gfpgan-1.4 has no fidelity option (restorers with one: codeformer)",
        "codeformer@fidelity": "expected NAME@OPTION=VALUE (e.g. codeformer@fidelity=0.7), got '@fidelity'",
        "codeformer@w=0.3": "unknown option 'w'; options are strength and fidelity",
        "gfpgan-1.4@strength=1.5": "strength must be a number from 0 to 1, got '1.5'",
        "gfpgan-1.4@strength=nan": "strength must be a number from 0 to 1, got 'nan'",
        "none,,gfpgan-1.4": "an empty setting",
        "codeformer@fidelity=0.3@fidelity=0.4": "fidelity is given twice",
        "codeformer,codeformer@fidelity=0.5": "'codeformer@fidelity=0.5' is the same setting as 'codeformer'",
        "gfpgan-1.4@strength=1,gfpgan-1.4": "'gfpgan-1.4' is the same setting as 'gfpgan-1.4@strength=1'",
    }
    for spec, msg in bad.items():
        with pytest.raises(UsageError) as e:
            parse_settings([spec], reg)
        assert msg in str(e.value), (spec, str(e.value))
        assert e.value.exit_code == 2


def test_output_inside_the_sample_is_refused(sample, tmp_path):
    from facerest_cli.errors import UsageError
    from facerest_cli.metrics.compare import CompareOptions, Setting, check
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    store = WeightsStore(WeightsConfig.from_env(offline=True))
    none = (Setting("none", 1.0, None, "none"),)
    with pytest.raises(UsageError, match="is inside the sample folder"):
        check(CompareOptions(sample=sample, out_dir=sample / "cmp", settings=none, aligned=True), store)
    with pytest.raises(UsageError, match="--reference .* no such folder"):
        check(CompareOptions(sample=sample, out_dir=tmp_path / "o", settings=none, reference=tmp_path / "x"), store)
    assert not (sample / "cmp").exists() and not (tmp_path / "o").exists()


def test_bad_setting_exits_2_before_any_work(sample, tmp_path):
    before = _digest(sample)
    r = run_cli("eval", "--restorers", "none,codeformer@fidelity=2", sample, "-o", tmp_path / "out", "--aligned")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("facerest: --restorers: 'codeformer@fidelity=2': fidelity must be a number from 0 to 1, "
                                "got '2'")
    assert not (tmp_path / "out").exists() and _digest(sample) == before


def test_missing_restorer_exits_2_with_the_commands(sample, tmp_path):
    """Only ../shared/weights (no gfpgan-1.4): nothing is restored, not even `none`; the line names the fetch
    command and the exact import command (the file name weights.toml expects)."""
    r = run_cli("eval", "--restorers", "none,gfpgan-1.4@strength=0.5", sample, "-o", tmp_path / "out", "--aligned")
    assert r.returncode == 2, r.stderr
    assert "weights missing, nothing was restored" in r.stderr
    line = next(ln for ln in r.stderr.splitlines() if "gfpgan-1.4@strength=0.5:" in ln)
    assert "model 'gfpgan-1.4' (restorer) needs GFPGANv1.4.pth, which is not installed" in line
    assert "run: facerest weights fetch gfpgan-1.4" in line
    assert line.endswith("then run: facerest weights import GFPGANv1.4.pth")
    assert not (tmp_path / "out").exists()


def test_none_against_itself(sample, niqe_home, tmp_path):
    """One setting, `none`, with the sample as its own reference: every fact of a face against itself, each row
    and file present, the page offline and complete, the sample untouched."""
    from facerest_cli.metrics.evaluate import EvalOptions, evaluate
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    before = _digest(sample)
    out = tmp_path / "out"
    r = run_cli("eval", "--restorers", "none", sample, "-o", out, "--aligned", "--reference", sample, "--batch-size", 2,
                env={"FACEREST_HOME": str(niqe_home)})
    assert r.returncode == 0, r.stderr
    assert _digest(sample) == before and sorted(p.name for p in sample.iterdir()) == sorted(FACES)
    # LPIPS is not installed: its columns are skipped with the fetch command, everything else is computed.
    skipped = sorted(ln for ln in r.stderr.splitlines() if "skipped" in ln)
    assert len(skipped) == 2 and skipped[0].endswith("run: facerest weights fetch lpips-alex")
    assert skipped[1].endswith("run: facerest weights fetch lpips-vgg")
    table = r.stdout.splitlines()
    assert table[0].startswith("| setting | faces | PSNR ↑ | PSNR-Y ↑ | SSIM ↑ | SSIM-Y ↑ | ID cos vs ref ↑ |")
    assert table[2].startswith("| none | 2 | inf | inf | 1.0000 | 1.0000 | 1.0000 |")
    assert [ln for ln in table[2:] if ln.startswith("| ")] == [table[2]]  # one row per setting
    res = json.loads((out / "compare.json").read_text())
    assert res["columns"] == COLUMNS and res["faces"] == FACE_LABELS
    assert [s["setting"] for s in res["settings"]] == ["none"]
    row = res["settings"][0]
    assert row["scored_faces"] == 2 and row["faces"] == 2 and row["failed"] == []
    for face in FACE_LABELS:
        v = row["faces_scores"][face]
        assert v["psnr"] == "inf" and v["psnr_y"] == "inf" and v["ssim"] == 1.0 and v["ssim_y"] == 1.0
        assert v["id_cos_in"] > 0.9999 and v["id_cos_ref"] > 0.9999 and v["id_deg_in"] < 1.0
        assert v["shape_in"] == 0.0 and v["lmd_ref"] == 0.0
    # The faces scored are the sample's own pixels: NIQE is the sample's, as `facerest eval --restored` gives it.
    store = WeightsStore(WeightsConfig(home=niqe_home / "weights", extra_dirs=(WEIGHTS,), offline=True))
    direct = evaluate(EvalOptions(restored=sample, metrics=("niqe",)), store)
    assert row["means"]["niqe"] == pytest.approx(direct.means["niqe"], rel=1e-12)
    for n in FACES:
        crop = cv2.imread(str(out / "none" / "faces" / n.replace(".png", "_face00_restored.png")))
        assert np.array_equal(crop, cv2.imread(str(sample / n)))
    csv_lines = (out / "compare.csv").read_text().splitlines()
    assert csv_lines[0] == "setting,restorer,strength,fidelity,faces," + ",".join(COLUMNS) + ",restore_seconds"
    assert len(csv_lines) == 2 and csv_lines[1].startswith("none,none,1.0,,2,inf,inf,1.0,1.0,")
    assert len((out / "compare_faces.csv").read_text().splitlines()) == 1 + 2
    assert "| none | 2 |" in (out / "compare.md").read_text()
    # Per face: input, reference, none.
    check_page(out, n_images=2 * 3)


def test_whole_photos_cut_the_reference_with_each_faces_matrix(tmp_path):
    """Whole photos (detected, not --aligned): the reference face is cut from the reference photo with the face's
    own alignment matrix, scaled when the reference has another resolution. Same photo as reference: the very
    input crop (PSNR inf, LMD 0). A 2x bicubic upscale as reference: the same face up to resampling (measured
    40.8 dB; the same cut without the pixel-centre offset of the scaling, a quarter of a photo pixel, scores 32.5)."""
    src = shared_file("images", "codeformer", "whole_imgs", "04.jpg")
    sample, ref = tmp_path / "sample", tmp_path / "ref"
    sample.mkdir()
    ref.mkdir()
    img = cv2.imread(str(src))
    for n in ("a.jpg", "b.jpg"):
        shutil.copy(src, sample / n)
    cv2.imwrite(str(ref / "a.png"), img)  # matched by name across extensions, as `facerest eval` pairs
    cv2.imwrite(str(ref / "b.png"), cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC))
    out = tmp_path / "out"
    r = run_cli("eval", "--restorers", "none", sample, "-o", out, "--reference", ref, "--metrics", "psnr,lmd", "-q")
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "compare.json").read_text())
    assert res["columns"] == ["psnr", "psnr_y", "lmd_ref"] and res["faces"] == ["a.jpg#0", "b.jpg#0"]
    a, b = (res["settings"][0]["faces_scores"][f] for f in res["faces"])
    assert a["psnr"] == "inf" and a["lmd_ref"] == 0.0
    assert 38 < b["psnr"] < 60 and b["lmd_ref"] < 1.5
    assert len(list((out / "reference_faces").glob("*.png"))) == 2
    check_page(out, n_images=2 * 3)


# --------------------------------------------------------------------------------------- with a real restorer


@pytest.fixture(scope="module")
def gfpgan_compare(sample, tmp_path_factory):
    """none, gfpgan-1.4 at strength 0 and 0.5 (make_checkpoint stand-in, imported --trust), --reference SAMPLE."""
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from tests.models.golden import manifest, write_official_checkpoint

    home = _home(tmp_path_factory, "compare_gfpgan_home")
    tmp = tmp_path_factory.mktemp("compare_gfpgan")
    ckpt = write_official_checkpoint("gfpgan_v1.4", tmp / manifest("gfpgan_v1.4")["checkpoint_file"].split(" ")[0])
    store = WeightsStore(WeightsConfig(home=home / "weights", extra_dirs=(WEIGHTS,)))
    res = store.import_paths([ckpt], as_name="gfpgan-1.4", trust=True, warn=lambda msg: None)
    assert [r.action for r in res] == ["installed"], res
    ckpt.unlink()
    out = tmp / "out"
    r = run_cli("eval", "--restorers", "none,gfpgan-1.4@strength=0,gfpgan-1.4@strength=0.5", sample, "-o", out,
                "--aligned", "--reference", sample, "--prior", "off", "--precision", "bf16", "-q",
                env={"FACEREST_HOME": str(home)}, timeout=900)  # bf16: the table's logic, at a third of the CI time
    assert r.returncode == 0, r.stderr
    return out, r, json.loads((out / "compare.json").read_text())


@pytest.mark.slow
def test_one_row_per_setting_and_strength_zero_is_none(gfpgan_compare, sample):
    out, r, res = gfpgan_compare
    labels = ["none", "gfpgan-1.4@strength=0", "gfpgan-1.4@strength=0.5"]
    assert [s["setting"] for s in res["settings"]] == labels
    assert [ln.split(" | ")[0] for ln in r.stdout.splitlines()[2:5]] == [f"| {x}" for x in labels]
    none, zero, half = res["settings"]
    assert (zero["restorer"], zero["strength"], half["strength"]) == ("gfpgan-1.4", 0.0, 0.5)
    assert all(s["scored_faces"] == 2 for s in res["settings"]) and res["failed"] == []
    # Strength 0 gives the input crop back exactly: the same pixels, hence the very same scores.
    assert zero["means"] == none["means"] and zero["faces_scores"] == none["faces_scores"]
    for n in FACES:
        name = n.replace(".png", "_face00_restored.png")
        assert np.array_equal(cv2.imread(str(out / "gfpgan-1.4@strength=0" / "faces" / name)),
                              cv2.imread(str(out / "none" / "faces" / name)))


@pytest.mark.slow
def test_half_strength_is_scored_as_opencv_scores_it(gfpgan_compare, sample):
    out, _, res = gfpgan_compare
    none, _, half = res["settings"]
    for n, face in zip(FACES, FACE_LABELS):
        x8 = cv2.imread(str(sample / n))
        y8 = cv2.imread(str(out / "gfpgan-1.4@strength=0.5" / "faces" / n.replace(".png", "_face00_restored.png")))
        v = half["faces_scores"][face]
        assert abs(v["psnr"] - cv2.PSNR(y8, x8)) < 1e-9  # OpenCV's PSNR is BasicSR's RGB formula
        x, y = x8.astype(int), y8.astype(int)
        assert np.abs(y - x).mean() > 2, "the network did not change the face"
        # 0.5*net + 0.5*input, rounded: 2*y - x is the network's output +-1, so it lies in [-1, 256].
        assert (2 * y - x).min() >= -1 and (2 * y - x).max() <= 256
        assert v["ssim"] < 1 and v["lmd_ref"] > 0 and v["shape_in"] > 0
        assert v["id_cos_in"] < none["faces_scores"][face]["id_cos_in"]
        assert abs(math.degrees(math.acos(v["id_cos_ref"])) - v["id_deg_ref"]) < 1e-9
    for c in COLUMNS:  # the mean row is the mean of the face rows
        assert half["means"][c] == pytest.approx(np.mean([half["faces_scores"][f][c] for f in FACE_LABELS]), rel=1e-12)
    # Per face: input, reference and the three settings, each thumbnail a file of its own.
    page = check_page(out, n_images=2 * 5)
    assert len({v for tag, _, v in page.urls if tag == "img"}) == 10
