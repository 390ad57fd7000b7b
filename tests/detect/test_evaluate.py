"""The detection scorer (facerest_cli.detect.evaluate) on hand-made cases whose scores are known by hand, the
variant label transforms against OpenCV's own resize/flip, and `facerest eval detect` argument handling."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facerest_cli.detect.evaluate import (
    LabelledFace,
    LabelledImage,
    average_precision,
    evaluate,
    load_labels,
    match,
    variants,
)
from facerest_cli.types import Detection


def _face(box, lm=None, ignore=False) -> LabelledFace:
    return LabelledFace(box=np.asarray(box, np.float64), landmarks=None if lm is None else np.asarray(lm, np.float64), ignore=ignore)


def _det(box, score, lm=None) -> Detection:
    lm = np.zeros((5, 2)) if lm is None else lm
    return Detection(box=np.asarray(box, np.float32), score=score, landmarks=np.asarray(lm, np.float32))


# --- A synthetic labelled set: white squares on black, and a detector that finds them exactly -----------------

SQUARES = [(10, 12, 50, 52), (70, 30, 130, 90), (150, 8, 190, 48)]  # inclusive pixel ranges x0, y0, x1, y1


def _blob_detector(pixels: np.ndarray) -> list[Detection]:
    """Connected bright regions -> boxes whose edges are the region's outer pixel edges (centre convention)."""
    g = pixels[:, :, 0] if pixels.ndim == 3 else pixels
    n, _, stats, _ = cv2.connectedComponentsWithStats((g > 127).astype(np.uint8))
    out = []
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        out.append(_det([x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5], 0.9 - 0.01 * i))
    return out


@pytest.fixture()
def square_set(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)
    faces = []
    for x0, y0, x1, y1 in SQUARES:
        img[y0 : y1 + 1, x0 : x1 + 1] = 255
        faces.append({"box": [x0 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5], "landmarks": None, "ignore": False, "note": ""})
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "sq.png"), img)
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"image": "img/sq.png", "width": 200, "height": 100, "faces": faces}) + "\n")
    return labels, tmp_path


def test_a_perfect_detector_scores_one_on_every_variant(square_set):
    labels, shared = square_set
    labelled = load_labels(labels, shared)
    r = evaluate(_blob_detector, labelled, ["1", "0.5", "2", "3", "mirror"], min_face=16)
    for s in r.variants:
        assert (s.faces, s.tp, s.fp, s.fn, s.duplicates) == (3, 3, 0, 0, 0), s
        assert s.precision == 1.0 and s.recall == 1.0 and s.ap == 1.0
    assert (r.total.faces, r.total.tp, r.total.fp, r.total.ap) == (15, 15, 0, 1.0)
    # x0.25 shrinks the 41 px squares to ~10 px: below --min-face 16 they are ignore faces, and absorb the boxes.
    q = evaluate(_blob_detector, labelled, ["0.25"], min_face=16).total
    assert (q.faces, q.tp, q.fp, q.absorbed) == (0, 0, 0, 3)


def test_a_box_on_a_face_part_is_a_duplicate_and_halves_precision():
    face = _face([100, 100, 200, 220])
    dets = [_det([100, 100, 200, 220], 0.90), _det([120, 110, 180, 150], 0.95)]  # the eyes region, scored higher
    m = match(dets, [face], min_face=16)
    assert m.outcome == ["fp", "tp"] and (m.duplicates, m.misplaced, m.fn) == (1, 0, 0)
    # Ranked: FP first (P=0 at R=0), then the TP (P=1/2 at R=1): the envelope is 1/2 over the whole recall range.
    assert average_precision(m.scores, [o == "tp" for o in m.outcome], 1) == pytest.approx(0.5)


def test_a_part_of_a_missed_face_is_misplaced_not_duplicate():
    m = match([_det([120, 110, 180, 150], 0.95)], [_face([100, 100, 200, 220])], min_face=16)
    assert m.outcome == ["fp"] and (m.duplicates, m.misplaced, m.fn) == (0, 1, 1)


def test_ignore_faces_absorb_detections_and_small_ones_are_not_counted():
    faces = [_face([0, 0, 60, 70], ignore=True), _face([100, 100, 112, 112]), _face([200, 200, 260, 270])]
    dets = [
        _det([2, 1, 61, 68], 0.9),  # on the ignore face (IoU >= 0.5)
        _det([10, 10, 30, 30], 0.8),  # inside the ignore face (a part of it)
        _det([0, 0, 120, 100], 0.75),  # a sloppy box loosely on it: IoU 0.35, 35 % inside
        _det([100, 101, 112, 113], 0.7),  # on the 12 px face: below min_face, so that face is an ignore face
        _det([300, 300, 310, 310], 0.6),  # a 10 px false box: outside the scored size range
        _det([200, 200, 260, 270], 0.5),  # the one scored face
    ]
    m = match(dets, faces, min_face=16)
    assert m.outcome == ["absorbed", "absorbed", "absorbed", "absorbed", "small", "tp"]
    assert (m.faces, m.fn) == (1, 0)


def test_matching_is_greedy_by_score_and_one_detection_per_face():
    faces = [_face([0, 0, 100, 100]), _face([60, 0, 160, 100])]
    # The best-scored box overlaps both faces: it takes the one with the higher IoU; the second box takes the other.
    dets = [_det([50, 0, 150, 100], 0.9), _det([0, 0, 95, 100], 0.8), _det([0, 0, 100, 100], 0.7)]
    m = match(dets, faces, min_face=16)
    assert m.outcome == ["tp", "tp", "fp"] and m.duplicates == 1 and m.fn == 0


def test_average_precision_all_point_interpolation_by_hand():
    # Ranked TP, FP, TP with 3 true faces: P = 1, 1/2, 2/3 at R = 1/3, 1/3, 2/3. Envelope 1 then 2/3: AP = 1/3 + 2/9.
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(5 / 9)
    assert average_precision([], [], 3) == 0.0
    assert average_precision([0.5, 0.9], [True, True], 2) == 1.0


def test_landmark_error_is_normalised_by_the_labelled_eye_distance():
    lm = np.array([[130, 140], [170, 140], [150, 165], [135, 190], [165, 190]], np.float64)  # eyes 40 px apart
    face = _face([100, 100, 200, 220], lm)
    shifted = lm + np.array([4.0, 0.0])  # every point 4 px off = 0.1 of the eye distance
    m = match([_det([101, 100, 200, 221], 0.9, shifted)], [face], min_face=16)
    assert m.lm_errors == [pytest.approx(0.1)]


# --- Variant transforms, checked against OpenCV's own resize and flip ------------------------------------------

# Five dots at sub-pixel positions, one per landmark role; the eyes and mouth corners are left/right pairs.
DOTS = np.array([[38.3, 40.6], [70.8, 41.2], [55.4, 60.1], [41.7, 80.9], [68.2, 79.5]])
SIGMA = 2.5


def _dot_image(w=111, h=121) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for x, y in DOTS:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA**2))
    return np.repeat(np.clip(img * 250, 0, 255).round().astype(np.uint8)[:, :, None], 3, axis=2)


def _centroid(img: np.ndarray, x: float, y: float, r: float) -> np.ndarray:
    g = img[:, :, 0].astype(np.float64)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    wgt = g * (((xx - x) ** 2 + (yy - y) ** 2) <= r * r)
    return np.array([(wgt * xx).sum(), (wgt * yy).sum()]) / wgt.sum()


@pytest.mark.parametrize("name,scale", [("0.25", 0.25), ("0.5", 0.5), ("2", 2.0), ("3", 3.0), ("mirror", None)])
def test_variant_labels_follow_the_pixels_exactly(name, scale):
    img = _dot_image()
    h, w = img.shape[:2]
    face = _face([30, 30, 80, 92], DOTS)
    (v,) = variants(img, [face], [name])
    if scale is None:
        assert np.array_equal(v.pixels, cv2.flip(img, 1))
        s = 1.0
    else:
        size = (round(w * scale), round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        assert np.array_equal(v.pixels, cv2.resize(img, size, interpolation=interp))
        s = scale
    lm = v.faces[0].landmarks
    # Each labelled point sits on the centroid of its dot in the variant's pixels. A 0.5 px convention slip moves
    # points by 0.5 * |s - 1| (0.375 px at x0.25, 1 px at x3), a mirror by x -> w - x by 1 px.
    for p in lm:
        c = _centroid(v.pixels, p[0], p[1], 3 * SIGMA * s + 1)
        assert np.abs(c - p).max() < 0.06 * max(s, 1.0), (p, c)
    # Image-left eye first, image-left mouth corner first: mirroring swaps the roles.
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    b = v.faces[0].box
    if scale is None:
        assert b.tolist() == pytest.approx([w - 1 - 80, 30, w - 1 - 30, 92])
    else:
        sx, sy = v.pixels.shape[1] / w, v.pixels.shape[0] / h
        assert b.tolist() == pytest.approx([30.5 * sx - 0.5, 30.5 * sy - 0.5, 80.5 * sx - 0.5, 92.5 * sy - 0.5])


def test_variant_names_are_checked():
    from facerest_cli.errors import UsageError

    with pytest.raises(UsageError, match="mirror"):
        list(variants(_dot_image(), [], ["flip"]))


# --- Label file and CLI -----------------------------------------------------------------------------------------


def test_load_labels_rejects_a_missing_image_and_a_bad_box(tmp_path):
    from facerest_cli.errors import UsageError

    p = tmp_path / "l.jsonl"
    p.write_text(json.dumps({"image": "nope.png", "width": 4, "height": 4, "faces": []}) + "\n")
    with pytest.raises(UsageError, match="nope.png"):
        load_labels(p, tmp_path)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    p.write_text(json.dumps({"image": "a.png", "width": 4, "height": 4, "faces": [{"box": [3, 0, 1, 2]}]}) + "\n")
    with pytest.raises(UsageError, match=r"l.jsonl:1"):
        load_labels(p, tmp_path)


def test_labelled_image_decodes_as_run_does(square_set):
    labels, shared = square_set
    (li,) = load_labels(labels, shared)
    assert isinstance(li, LabelledImage) and li.load().shape == (100, 200, 3)


def test_cli_unknown_detector_exits_2_with_the_choices(square_set, capsys):
    from facerest_cli.cli.eval_detect import main

    labels, shared = square_set
    rc = main([str(labels), "--shared", str(shared), "--detectors", "nosuch", "-q", "--offline"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "yunet" in err and "scrfd" in err


def test_cli_passes_detector_options_through_to_detect_config():
    import dataclasses

    from facerest_cli.cli.eval_detect import detect_options
    from facerest_cli.config import DetectConfig
    from facerest_cli.errors import UsageError

    fields = {f.name for f in dataclasses.fields(DetectConfig)}
    thr = "det_threshold" if "det_threshold" in fields else "score_threshold"
    size = "det_size" if "det_size" in fields else "max_side"
    opts, dets = detect_options(["--det-threshold", "0.7", "--det-size=1024", "--nms-threshold", "0.3", "--detector", "scrfd"])
    assert opts == {thr: 0.7, size: 1024, "nms_threshold": 0.3} and dets == ["scrfd"]
    cfg = DetectConfig(**opts)
    assert getattr(cfg, thr) == 0.7 and getattr(cfg, size) == 1024
    flags = [f for f in fields if isinstance(getattr(DetectConfig(), f), bool)]
    for f in flags:  # e.g. --keep-all-detections: a bare flag sets True, --no-FLAG sets False
        assert detect_options([f"--{f.replace('_', '-')}"])[0] == {f: True}
        assert detect_options([f"--no-{f.replace('_', '-')}"])[0] == {f: False}
    with pytest.raises(UsageError, match="--no-such-option"):
        detect_options(["--no-such-option", "1"])
    with pytest.raises(UsageError, match="float"):
        detect_options(["--det-threshold", "high"])
