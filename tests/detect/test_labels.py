"""The hand-labelled detection set (tests/data/detect_labels.jsonl): every line is well formed and matches its
photo in ../shared, every listed folder is covered, the known face counts hold, and the default detector's
measured x1 scores are the ones published (tests/data/detect_eval_x1.json), so that table cannot drift silently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED, shared_file

LABELS = Path(__file__).resolve().parents[1] / "data" / "detect_labels.jsonl"
EXPECTED_X1 = Path(__file__).resolve().parents[1] / "data" / "detect_eval_x1.json"
# Every whole photo in ../shared/images (the aligned 512 gray_faces count: one face filling the frame, the
# close-up case). cropped_faces folders are aligned inputs, not photos to detect in.
FOLDERS = (
    "images/gpen/imgs",
    "images/insightface",
    "images/deepface",
    "images/gfpgan/whole_imgs",
    "images/codeformer/whole_imgs",
    "images/gpen/ffhq-10",
    "images/gpen/grays",
    "images/codeformer/gray_faces",
)
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


def _records() -> list[dict]:
    return [json.loads(line) for line in LABELS.read_text().splitlines() if line.strip()]


def _upright_size(path: Path) -> tuple[int, int]:
    """Width, height after EXIF orientation, from the header (as facerest_cli.io.decode orients pixels)."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def test_every_label_line_is_well_formed_and_matches_its_photo():
    recs = _records()
    assert len({r["image"] for r in recs}) == len(recs), "an image is labelled twice"
    for r in recs:
        assert set(r) == {"image", "width", "height", "faces"}, r["image"]
        path = shared_file(*r["image"].split("/"))  # a missing photo fails, never skips
        assert _upright_size(path) == (r["width"], r["height"]), r["image"]
        for f in r["faces"]:
            where = f"{r['image']} {f['box']}"
            assert set(f) == {"box", "landmarks", "ignore", "note"}, where
            assert isinstance(f["ignore"], bool) and isinstance(f["note"], str), where
            x1, y1, x2, y2 = f["box"]
            # Pixel-centre convention: the image spans [-0.5, w - 0.5] x [-0.5, h - 0.5].
            assert -0.5 <= x1 < x2 <= r["width"] - 0.5 and -0.5 <= y1 < y2 <= r["height"] - 0.5, where
            if f["ignore"]:
                assert f["note"], f"{where}: an ignore face says why"
            if f["landmarks"] is not None:
                lm = np.asarray(f["landmarks"], np.float64)
                assert lm.shape == (5, 2), where
                assert np.all((lm[:, 0] >= x1) & (lm[:, 0] <= x2) & (lm[:, 1] >= y1) & (lm[:, 1] <= y2)), where
                # Image-left eye first, and the eyes above the mouth corners (upright photos).
                assert lm[0, 0] < lm[1, 0] and max(lm[0, 1], lm[1, 1]) < min(lm[3, 1], lm[4, 1]), where


def test_every_listed_folder_is_fully_covered():
    labelled = {r["image"] for r in _records()}
    for folder in FOLDERS:
        d = SHARED / folder
        assert d.is_dir(), f"missing shared folder {d}"
        photos = {f"{folder}/{p.name}" for p in d.iterdir() if p.suffix.lower() in IMAGE_EXT}
        assert photos, folder
        assert photos <= labelled, f"not labelled: {sorted(photos - labelled)}"
    assert all(any(r.startswith(f + "/") for f in FOLDERS) for r in labelled)


def _count(image: str) -> int:
    (rec,) = [r for r in _records() if r["image"] == image]
    return sum(not f["ignore"] for f in rec["faces"])


def test_known_face_counts():
    assert _count("images/gpen/imgs/Solvay_conference_1927.png") == 29
    assert _count("images/insightface/t1.jpg") == 6
    assert _count("images/insightface/mask_white.jpg") == 0  # a surgical mask, no face
    for i in range(10):
        assert _count(f"images/gpen/ffhq-10/{i:05d}.png") == 1
    for rec in _records():
        if rec["image"].startswith(("images/codeformer/gray_faces/", "images/gpen/grays/")):
            assert _count(rec["image"]) == 1, rec["image"]


def test_load_labels_reads_the_whole_set():
    from facerest_cli.detect.evaluate import load_labels

    labelled = load_labels(LABELS, SHARED)
    assert len(labelled) == len(_records())
    assert sum(len(li.faces) for li in labelled) == sum(len(r["faces"]) for r in _records())


@pytest.mark.slow
def test_default_detector_x1_scores_are_the_published_ones():
    """`facerest run`'s default detector on the x1 photos scores exactly what tests/data/detect_eval_x1.json
    (written by the command that makes the README / BENCHMARKS tables) says, in total and per image:
    `facerest eval detect tests/data/detect_labels.jsonl --detectors DEFAULT --variants 1 --json
    tests/data/detect_eval_x1.json`. A detector change that moves any count fails here until both are redone."""
    from facerest_cli.config import DetectConfig
    from facerest_cli.detect.evaluate import evaluate, load_labels, run_detect_fn
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    doc = json.loads(EXPECTED_X1.read_text())
    (expected,) = doc["results"]
    assert doc["variants"] == ["1"] and doc["options"] == {}
    assert expected["name"] == DetectConfig().detector, "the default detector changed: regenerate the table"
    store = WeightsStore(WeightsConfig.from_env(offline=True))
    fn = run_detect_fn(DetectConfig(), store, "cpu")
    r = evaluate(fn, load_labels(LABELS, SHARED), ["1"], min_face=doc["min_face"])
    keys = ("faces", "tp", "fp", "fn", "duplicates", "misplaced", "absorbed", "small")
    assert {k: getattr(r.total, k) for k in keys} == {k: expected["total"][k] for k in keys}
    assert r.total.ap == pytest.approx(expected["total"]["ap"], abs=1e-6)
    assert r.total.landmark_error == pytest.approx(expected["total"]["landmark_error"], abs=1e-3)
    per_image = {i["image"]: (i["tp"], i["fp"], i["fn"], i["duplicates"]) for i in expected["images"]}
    assert {i.image: (i.tp, i.fp, i.fn, i.duplicates) for i in r.images} == per_image
