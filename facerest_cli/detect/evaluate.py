"""Score a face detector against the hand-labelled detection set (``tests/data/detect_labels.jsonl``).

How to call it::

    from facerest_cli.detect.evaluate import evaluate, load_labels, run_detect_fn

    labelled = load_labels("tests/data/detect_labels.jsonl", shared_dir)        # list[LabelledImage]
    detect = run_detect_fn(DetectConfig(detector="yunet"), store, "cpu")     # what `facerest run` applies
    result = evaluate(detect, labelled, ["1", "0.5", "mirror"], min_face=16, name="yunet")
    result.total.precision, result.total.recall, result.variant("0.5").ap, result.total.duplicates

``detect_fn`` is any callable ``(H, W, C) uint8/uint16 pixels as decoded -> list[Detection]`` in that image's
pixel coordinates; ``run_detect_fn`` builds the one ``facerest run`` uses (``build_detector`` +
``FacePreparer.detect``: bounded resolution, ``--faces``, ``--min-face``, and whatever the detect stage does), so
a change there is measured here without touching this module. ``facerest eval detect`` is the command around it.

Label file: one JSON object per line::

    {"image": "images/insightface/t1.jpg", "width": 1280, "height": 886,
     "faces": [{"box": [x1, y1, x2, y2], "landmarks": [[x, y] x 5] | null, "ignore": false, "note": ""}]}

``image`` is relative to the shared folder. Coordinates are in the upright image as ``decode_image`` returns it,
with the pixel-centre convention of ``facerest_cli.types`` (the centre of the top-left pixel is (0, 0)), and the
landmark order of ``types.LANDMARK_NAMES`` (image-left eye first).

Variants (generated, never stored): ``"1"`` (the image as decoded), any positive scale such as ``"0.25"``,
``"0.5"``, ``"2"``, ``"3"`` (``cv2.resize`` to ``round(w*s) x round(h*s)``; INTER_AREA down, INTER_CUBIC up), and
``"mirror"`` (left-right flip). Labels follow exactly: a point ``u`` maps to ``(u + 0.5) * s - 0.5`` with the
per-axis ratio ``s`` of the new to the old size (OpenCV's resize maps pixel centres this way); a mirror maps
``x -> w - 1 - x`` and swaps the left/right roles of eyes and mouth corners. Box corners are points in the same
convention, so they map the same way.

Scoring, per detector and variant (and pooled over variants as the total):

* A face whose longer box side is below ``min_face`` in that variant becomes an *ignore* face.
* Detections are matched greedily in descending score order: each takes the unmatched true face with the highest
  IoU >= 0.5 (a TP). Otherwise it is absorbed by an ignore face (IoU >= 0.3, or at least half of the detection
  inside it) and counted neither way; otherwise, if its own longer side is below ``min_face``, it is outside the
  scored size range and also not counted (``small``); otherwise it is a false positive.
* A false positive that overlaps a *matched* true face (IoU > 0.3, or at least half of it inside that face) is a
  *duplicate* (a second box on the same face, typically on a face part). A false positive overlapping only an
  *unmatched* true face the same way is *misplaced* (a wrong-size box, or parts of a missed face). Both are
  included in ``fp``.
* precision = TP / (TP + FP), recall = TP / true faces. AP@0.5 is the all-point interpolated average precision
  (PASCAL VOC 2010+ / COCO style without recall sampling): detections of all images sorted by score, the
  precision envelope made non-increasing from the right, summed over every recall step. It can only rank what
  the detector returns, so its recall stops at the detector's operating threshold.
* Landmark error: for every TP whose label has landmarks, the mean over the 5 points of the distance to the
  labelled point divided by the labelled inter-ocular distance (the distance between the two eye points); the
  mean over faces is reported.
* Time: wall seconds inside ``detect_fn`` over the megapixels it was given (``ms_per_mp``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    from facerest_cli.config import DetectConfig
    from facerest_cli.types import Detection
    from facerest_cli.weights.cache import WeightsStore

DetectFn = Callable[[np.ndarray], "list[Detection]"]

IOU_MATCH = 0.5  # a detection is a TP at IoU >= 0.5 with a true face (PASCAL VOC / WIDER FACE convention)
IOU_DUPLICATE = 0.3  # a false positive overlapping a true face more than this is a second box on that face
# An ignore face (ambiguous content: defocused, cut by the border, photo-in-photo) takes any detection that is
# loosely on it: detectors box such content sloppily, and a box there is neither right nor wrong.
IOU_IGNORE = 0.3
INSIDE_FRACTION = 0.5  # ... or when at least this fraction of its area lies inside the face ("face part")
DEFAULT_VARIANTS = ("1", "0.25", "0.5", "2", "3", "mirror")
# Mirroring swaps the person's left and right: the eye on the image's left becomes the one on its right.
_MIRROR_ORDER = (1, 0, 2, 4, 3)


@dataclass(frozen=True)
class LabelledFace:
    """One labelled face: ``box`` (4,) float64 x1, y1, x2, y2; ``landmarks`` (5, 2) float64 or None."""

    box: np.ndarray
    landmarks: np.ndarray | None
    ignore: bool = False
    note: str = ""

    @property
    def size(self) -> float:
        """Longer box side in pixels (the ``--min-face`` measure)."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(frozen=True)
class LabelledImage:
    """One line of the label file; ``path`` is the resolved image file."""

    image: str  # relative to the shared folder, as written in the file
    path: Path
    width: int
    height: int
    faces: tuple[LabelledFace, ...]

    def load(self) -> np.ndarray:
        """The upright pixels exactly as ``facerest run`` decodes them: (H, W, C) uint8/uint16, BGR(A) or gray."""
        from facerest_cli.io.decode import decode_image

        px = decode_image(self.path).pixels
        if px.shape[:2] != (self.height, self.width):
            raise UsageError(f"{self.path}: labelled as {self.width}x{self.height}, decodes as {px.shape[1]}x{px.shape[0]}")
        return px


@dataclass(frozen=True)
class Variant:
    """A generated variant of a labelled image: ``pixels`` as ``LabelledImage.load`` returns them, labels mapped."""

    name: str
    pixels: np.ndarray
    faces: tuple[LabelledFace, ...]


@dataclass(frozen=True)
class Scores:
    """One detector on one variant, or pooled over variants (``variant == "total"``)."""

    variant: str
    images: int
    faces: int  # true faces scored (not ignore, >= min_face)
    detections: int  # detections counted: tp + fp
    tp: int
    fp: int
    fn: int
    duplicates: int  # false positives on a matched face (see module docstring)
    misplaced: int  # false positives on an unmatched face
    absorbed: int  # detections taken by ignore faces (not counted)
    small: int  # unmatched detections below min_face (not counted)
    precision: float
    recall: float
    ap: float
    landmark_error: float | None  # mean inter-ocular-normalised error over landmark_faces, None if none
    landmark_faces: int
    seconds: float
    megapixels: float

    @property
    def ms_per_mp(self) -> float:
        return 1000.0 * self.seconds / self.megapixels if self.megapixels > 0 else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ms_per_mp"] = self.ms_per_mp
        return d


@dataclass(frozen=True)
class ImageScore:
    """Per image and variant: counts and the boxes that went wrong (for finding what to fix)."""

    image: str
    variant: str
    faces: int
    tp: int
    fp: int
    fn: int
    duplicates: int
    misplaced: int
    false_boxes: list[list[float]]  # x1, y1, x2, y2, score of each false positive, in variant coordinates
    missed_boxes: list[list[float]]  # labelled boxes of the missed faces, in variant coordinates


@dataclass(frozen=True)
class EvalResult:
    name: str
    min_face: float
    variants: list[Scores]  # in the order asked for
    total: Scores
    images: list[ImageScore] = field(default_factory=list)

    def variant(self, name: str) -> Scores:
        for s in self.variants:
            if s.variant == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "min_face": self.min_face,
            "variants": [s.to_dict() for s in self.variants],
            "total": self.total.to_dict(),
            "images": [asdict(i) for i in self.images],
        }


# ---------------------------------------------------------------------------------------------------------------
# Labels


def load_labels(path: Path | str, shared_dir: Path | str) -> list[LabelledImage]:
    """Read and check a label file; every image must exist under ``shared_dir``. Raises ``UsageError``."""
    path, shared_dir = Path(path), Path(shared_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{path}: cannot read the label file ({e.strerror or e})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
            out.append(_parse_image(rec, shared_dir, where))
        except json.JSONDecodeError as e:
            raise UsageError(f"{where}: not JSON ({e.msg})") from None
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{where}: expected image, width, height, faces[box, landmarks, ignore] ({e})") from None
    if not out:
        raise UsageError(f"{path}: no labelled images")
    return out


def _parse_image(rec: dict, shared_dir: Path, where: str) -> LabelledImage:
    rel = str(rec["image"])
    img_path = shared_dir / rel
    if not img_path.is_file():
        raise UsageError(f"{where}: image {img_path} does not exist (is --shared right?)")
    w, h = int(rec["width"]), int(rec["height"])
    faces = []
    for f in rec["faces"]:
        box = np.asarray(f["box"], np.float64)
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"bad box {f['box']}")
        lm = f.get("landmarks")
        lm = None if lm is None else np.asarray(lm, np.float64)
        if lm is not None and (lm.shape != (5, 2) or not np.all(np.isfinite(lm))):
            raise ValueError(f"landmarks must be 5 [x, y] pairs, got {f['landmarks']}")
        faces.append(LabelledFace(box=box, landmarks=lm, ignore=bool(f.get("ignore", False)), note=str(f.get("note", ""))))
    return LabelledImage(image=rel, path=img_path, width=w, height=h, faces=tuple(faces))


def face_to_json(f: LabelledFace) -> dict:
    """A face as written in the label file (coordinates rounded to 0.1 px)."""
    r = lambda v: round(float(v), 1)  # noqa: E731
    return {
        "box": [r(v) for v in f.box],
        "landmarks": None if f.landmarks is None else [[r(x), r(y)] for x, y in f.landmarks],
        "ignore": f.ignore,
        "note": f.note,
    }


# ---------------------------------------------------------------------------------------------------------------
# Variants


def parse_variant(name: str) -> float | None:
    """``"mirror"`` -> None; a scale ("0.25", "1", "3") -> that float. Raises ``UsageError`` otherwise."""
    if name == "mirror":
        return None
    try:
        s = float(name)
    except ValueError:
        s = float("nan")
    if not (math.isfinite(s) and s > 0):
        raise UsageError(f"unknown variant {name!r}: use a positive scale (0.25, 0.5, 1, 2, 3) or mirror")
    return s


def scale_faces(faces: Sequence[LabelledFace], sx: float, sy: float) -> tuple[LabelledFace, ...]:
    """Labels of an image resized by (sx, sy) = new size / old size per axis (pixel-centre convention)."""
    off = np.array([0.5, 0.5])
    out = []
    for f in faces:
        s = np.array([sx, sy])
        corners = (f.box.reshape(2, 2) + off) * s - off
        lm = None if f.landmarks is None else (f.landmarks + off) * s - off
        out.append(LabelledFace(box=corners.reshape(4), landmarks=lm, ignore=f.ignore, note=f.note))
    return tuple(out)


def mirror_faces(faces: Sequence[LabelledFace], width: int) -> tuple[LabelledFace, ...]:
    """Labels of an image flipped left-right (``cv2.flip(img, 1)``): x -> width - 1 - x, left/right roles swap."""
    out = []
    for f in faces:
        x1, y1, x2, y2 = f.box
        box = np.array([width - 1 - x2, y1, width - 1 - x1, y2])
        lm = None
        if f.landmarks is not None:
            lm = f.landmarks[list(_MIRROR_ORDER)].copy()
            lm[:, 0] = width - 1 - lm[:, 0]
        out.append(LabelledFace(box=box, landmarks=lm, ignore=f.ignore, note=f.note))
    return tuple(out)


def make_variant(pixels: np.ndarray, faces: Sequence[LabelledFace], name: str) -> Variant:
    """One variant of ``pixels`` ((H, W, C) as decoded) with its labels; see the module docstring."""
    import cv2

    scale = parse_variant(name)
    h, w = pixels.shape[:2]
    if scale is None:
        return Variant(name, np.ascontiguousarray(pixels[:, ::-1]), mirror_faces(faces, w))
    if scale == 1.0:
        return Variant(name, pixels, tuple(faces))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = cv2.resize(pixels, (nw, nh), interpolation=interp)
    if out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return Variant(name, out, scale_faces(faces, nw / w, nh / h))


def iter_variants(
    img: np.ndarray | LabelledImage, labels: LabelledImage | Sequence[LabelledFace], names: Sequence[str]
) -> Iterator[Variant]:
    """Yield each named variant of ``img`` (decoded pixels, or a ``LabelledImage`` to load) with ``labels`` mapped.

    One variant is alive at a time, so a x3 variant of a 13-megapixel photo costs its own memory only.
    """
    for n in names:
        parse_variant(n)  # fail on a bad name before any work
    pixels = img.load() if isinstance(img, LabelledImage) else img
    faces = labels.faces if isinstance(labels, LabelledImage) else tuple(labels)
    for n in names:
        yield make_variant(pixels, faces, n)


variants = iter_variants  # the public name; ``evaluate`` takes a parameter of that name, so it calls iter_variants


# ---------------------------------------------------------------------------------------------------------------
# Matching


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N, 4) and b (M, 4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter = _inter(a, b)
    area_a = np.prod(np.maximum(a[:, 2:] - a[:, :2], 0), axis=1)
    area_b = np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def _inter(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return iw * ih


def _inside_fraction(dets: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Fraction of each detection's area inside each face box -> (N, M)."""
    if len(dets) == 0 or len(faces) == 0:
        return np.zeros((len(dets), len(faces)))
    area = np.prod(np.maximum(dets[:, 2:] - dets[:, :2], 0), axis=1)
    return _inter(dets, faces) / np.maximum(area[:, None], 1e-12)


@dataclass
class _Match:
    """Matching of one image variant: per detection its score and outcome ("tp", "fp", "absorbed", "small")."""

    scores: list[float]
    outcome: list[str]
    duplicates: int
    misplaced: int
    fn: int
    faces: int
    lm_errors: list[float]
    false_boxes: list[list[float]]
    missed_boxes: list[list[float]]


def match(dets: Sequence["Detection"], faces: Sequence[LabelledFace], min_face: float) -> _Match:
    """Greedy matching of one image's detections against its labels (rules in the module docstring)."""
    true = [f for f in faces if not f.ignore and f.size >= min_face]
    ign = [f for f in faces if f.ignore or f.size < min_face]
    order = sorted(range(len(dets)), key=lambda i: -float(dets[i].score))  # stable: ties keep detector order
    boxes = np.array([np.asarray(dets[i].box, np.float64) for i in order]).reshape(-1, 4)
    tb = np.array([f.box for f in true]).reshape(-1, 4)
    ib = np.array([f.box for f in ign]).reshape(-1, 4)
    iou_t, iou_i, in_i = _iou_matrix(boxes, tb), _iou_matrix(boxes, ib), _inside_fraction(boxes, ib)
    matched = np.full(len(true), -1)
    outcome, lm_errors = [], []
    for k, i in enumerate(order):
        cand = np.where((matched < 0) & (iou_t[k] >= IOU_MATCH))[0] if len(true) else np.zeros(0, int)
        if len(cand):
            j = cand[np.argmax(iou_t[k, cand])]
            matched[j] = k
            outcome.append("tp")
            if true[j].landmarks is not None:
                lm_errors.append(landmark_error(np.asarray(dets[i].landmarks, np.float64), true[j].landmarks))
        elif len(ign) and (np.any(iou_i[k] >= IOU_IGNORE) or np.any(in_i[k] >= INSIDE_FRACTION)):
            outcome.append("absorbed")
        elif max(boxes[k, 2] - boxes[k, 0], boxes[k, 3] - boxes[k, 1]) < min_face:
            outcome.append("small")
        else:
            outcome.append("fp")
    fp_idx = [k for k, o in enumerate(outcome) if o == "fp"]
    dup = mis = 0
    if fp_idx and len(true):
        near = (iou_t[fp_idx] > IOU_DUPLICATE) | (_inside_fraction(boxes[fp_idx], tb) >= INSIDE_FRACTION)
        for row in near:
            if np.any(row & (matched >= 0)):
                dup += 1
            elif np.any(row):
                mis += 1
    return _Match(
        scores=[float(dets[i].score) for i in order],
        outcome=outcome,
        duplicates=dup,
        misplaced=mis,
        fn=int(np.sum(matched < 0)),
        faces=len(true),
        lm_errors=lm_errors,
        false_boxes=[[*(round(float(v), 1) for v in boxes[k]), round(float(dets[order[k]].score), 4)] for k in fp_idx],
        missed_boxes=[[round(float(v), 1) for v in true[j].box] for j in np.where(matched < 0)[0]],
    )


def landmark_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point distance over the 5 landmarks / the labelled inter-ocular distance (both (5, 2))."""
    iod = float(np.linalg.norm(truth[0] - truth[1]))
    return float(np.mean(np.linalg.norm(pred - truth, axis=1)) / max(iod, 1e-9))


def average_precision(scores: Sequence[float], is_tp: Sequence[bool], n_true: int) -> float:
    """All-point interpolated AP: area under the precision envelope over recall, detections ranked by score."""
    if n_true == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.asarray(is_tp, np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = ctp / n_true
    precision = ctp / (ctp + cfp)
    # The envelope: at each rank, the best precision reachable at this recall or beyond.
    env = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * env))


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class _Acc:
    images: int = 0
    faces: int = 0
    fn: int = 0
    duplicates: int = 0
    misplaced: int = 0
    seconds: float = 0.0
    megapixels: float = 0.0
    scores: list[float] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    lm: list[float] = field(default_factory=list)

    def add(self, m: _Match, seconds: float, mp: float) -> None:
        self.images += 1
        self.faces += m.faces
        self.fn += m.fn
        self.duplicates += m.duplicates
        self.misplaced += m.misplaced
        self.seconds += seconds
        self.megapixels += mp
        self.scores += m.scores
        self.outcome += m.outcome
        self.lm += m.lm_errors

    def merge(self, o: "_Acc") -> None:
        for k in ("images", "faces", "fn", "duplicates", "misplaced", "seconds", "megapixels"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        self.scores += o.scores
        self.outcome += o.outcome
        self.lm += o.lm

    def scores_for(self, variant: str) -> Scores:
        tp = self.outcome.count("tp")
        fp = self.outcome.count("fp")
        counted = [(s, o == "tp") for s, o in zip(self.scores, self.outcome) if o in ("tp", "fp")]
        return Scores(
            variant=variant,
            images=self.images,
            faces=self.faces,
            detections=tp + fp,
            tp=tp,
            fp=fp,
            fn=self.fn,
            duplicates=self.duplicates,
            misplaced=self.misplaced,
            absorbed=self.outcome.count("absorbed"),
            small=self.outcome.count("small"),
            precision=tp / (tp + fp) if tp + fp else 1.0,  # no detection claimed: nothing claimed wrongly
            recall=tp / self.faces if self.faces else float("nan"),
            ap=average_precision([s for s, _ in counted], [t for _, t in counted], self.faces),
            landmark_error=float(np.mean(self.lm)) if self.lm else None,
            landmark_faces=len(self.lm),
            seconds=self.seconds,
            megapixels=self.megapixels,
        )


def evaluate(
    detect_fn: DetectFn,
    labelled: Sequence[LabelledImage],
    variants: Sequence[str] = DEFAULT_VARIANTS,
    min_face: float = 16.0,
    *,
    name: str = "",
    progress: Callable[[LabelledImage], None] | None = None,
) -> EvalResult:
    """Run ``detect_fn`` on every variant of every labelled image and score it (rules: module docstring).

    ``progress`` is called once per image after all its variants are done.
    """
    names = list(variants)
    for n in names:
        parse_variant(n)
    acc = {n: _Acc() for n in names}
    per_image: list[ImageScore] = []
    for li in labelled:
        for v in iter_variants(li, li, names):
            t0 = time.perf_counter()
            dets = detect_fn(v.pixels)
            dt = time.perf_counter() - t0
            m = match(dets, v.faces, min_face)
            acc[v.name].add(m, dt, v.pixels.shape[0] * v.pixels.shape[1] / 1e6)
            per_image.append(
                ImageScore(
                    image=li.image,
                    variant=v.name,
                    faces=m.faces,
                    tp=m.outcome.count("tp"),
                    fp=m.outcome.count("fp"),
                    fn=m.fn,
                    duplicates=m.duplicates,
                    misplaced=m.misplaced,
                    false_boxes=m.false_boxes,
                    missed_boxes=m.missed_boxes,
                )
            )
        if progress is not None:
            progress(li)
    total = _Acc()
    for a in acc.values():
        total.merge(a)
    return EvalResult(
        name=name,
        min_face=min_face,
        variants=[acc[n].scores_for(n) for n in names],
        total=total.scores_for("total"),
        images=per_image,
    )


def run_detect_fn(cfg: "DetectConfig", store: "WeightsStore", device: str = "cpu") -> DetectFn:
    """The detection ``facerest run`` applies: ``build_detector`` and ``FacePreparer.detect`` with ``cfg``."""
    from facerest_cli.align.faces import FacePreparer
    from facerest_cli.config import RunConfig
    from facerest_cli.detect.registry import build_detector

    detector = build_detector(cfg, store, device)
    # Only the detect path is used: the restorer size and template do not influence it.
    preparer = FacePreparer(RunConfig(inputs=(Path("."),), detect=cfg), detector, 512, "ffhq512", "none")
    return preparer.detect
