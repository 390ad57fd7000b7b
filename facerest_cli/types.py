"""The typed contracts between pipeline stages. Conventions are written here once.

Pixel arrays (numpy)
    ``(H, W, C)``, C-contiguous, ``uint8`` or ``uint16``; C is 1 (gray), 3 (BGR) or 4 (BGRA). Channel order is
    OpenCV's BGR everywhere a numpy image appears, because decoders, detectors and warps are OpenCV.
Points and boxes
    Image pixel coordinates, float, origin at the *centre* of the top-left pixel (OpenCV's convention):
    ``x`` to the right, ``y`` down. Boxes are ``(x1, y1, x2, y2)``.
Five landmarks
    ``(5, 2)`` float32 in this order, as the person faces the camera: the eye on the image's left, the eye on
    the image's right, nose tip, left mouth corner, right mouth corner (insightface's ``arcface_dst`` order).
Affine matrices
    ``(2, 3)`` float64 mapping **image -> crop** coordinates (``cv2.warpAffine(img, M, ...)`` produces the crop).
    ``invert_affine(M)`` maps crop -> image, for paste-back.
Face crops handed to restorers (torch)
    ``(N, 3, S, S)`` float32 (or the autocast dtype), **RGB**, range ``[0, 1]``, on the restorer's device.
    Restorers return the same shape, range and order. A network's own normalisation (``[-1, 1]``, ImageNet...)
    comes from its weights.toml entry (``facerest_cli.registry.normalise``).
Integer <-> float pixel values
    ``facerest_cli.pixels``: float images are ``[0, 1]``; uint8 scales by 255, uint16 by 65535; back with rounding
    to nearest and clipping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True)
class ImageMeta:
    """Metadata carried from input to output (archival: nothing is dropped silently)."""

    format: str  # "JPEG", "PNG", "TIFF", "BMP", "WEBP"
    bit_depth: int  # 8 or 16
    channels: int  # 1, 3 or 4 as decoded (before any conversion for processing)
    orientation: int = 1  # EXIF orientation of the source; pixels are already upright
    exif: bytes | None = None  # raw EXIF (orientation reset to 1 when written)
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    n_frames: int = 1
    warnings: tuple[str, ...] = ()
    sha256: str = ""  # of the input file's bytes (images): names its faces stably (seeded restorers)


@dataclass(frozen=True)
class DecodedImage:
    """An upright image and where it came from."""

    path: Path  # the input file
    rel_path: Path  # path relative to its input root: decides the output location
    pixels: np.ndarray  # (H, W, C) uint8/uint16, BGR(A) or gray, see module docstring
    meta: ImageMeta

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@dataclass(frozen=True)
class Detection:
    """One face found by a detector, in image coordinates of the frame it was run on."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2) float32, LANDMARK_NAMES order

    @property
    def size(self) -> float:
        """Face size in pixels: the longer box side."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to the restorer's template, with the matrix paste-back needs."""

    index: int  # face index within its image, in detection order after selection
    detection: Detection
    crop: np.ndarray  # (S, S, 3) same dtype as the image, BGR
    matrix: np.ndarray  # (2, 3) float64, image -> crop


# ------------------------------------------------------------------------------------ per-face typed results
# Each stage's result for a face is a small frozen dataclass; ``report.jsonl`` serialises them with ``to_json``
# (keys in field order, unset optional fields left out), and nothing reads them back by string key.


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Pose:
    """3D prior: head pose in degrees, the 68 projected landmarks in image coordinates, the regressor's name, and
    the pose-adaptive strength factor when it applied."""

    yaw: float
    pitch: float
    roll: float
    landmarks68: list[list[float]]
    regressor: str
    strength_factor: float | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact(asdict(self))


@dataclass(frozen=True)
class ShapeCheck:
    """3D shape consistency of input vs restored face (``prior.stage``)."""

    distance: float
    flag: bool
    threshold: float
    metric: str
    attempt: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Attempt:
    """One try of the identity guard: the strength used and the cosine it gave."""

    strength: float
    cosine: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Identity:
    """ArcFace identity of the restored face against the input face (``identity.stage``). Without a recognizer
    only ``thumbs`` is set."""

    model: str | None = None
    cosine: float | None = None
    flag: bool | None = None
    threshold: float | None = None
    min_identity: float | None = None
    decision: str | None = None
    thumbs: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact(asdict(self))


@dataclass(frozen=True)
class Paste:
    """How a face was pasted back (``blend.compose``). ``detail``: what ``--detail`` did to this face, ``keep``
    (the frame's own detail above the crop's resolution was kept: only a face larger than the crop) or
    ``restored`` (the restored crop alone); ``compat``: the official path that pasted it (``gfpgan``) or None."""

    detail: str
    compat: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact(asdict(self))


@dataclass
class FaceRecord:
    """One line of ``report.jsonl``. Stages fill their typed results (pose, shape, identity...)."""

    source: str
    face_index: int
    bbox: list[float]
    score: float
    landmarks: list[list[float]]
    face_size: float
    detector: str
    restorer: str
    strength: float
    matrix: list[list[float]]
    output: str | None = None
    input_crop: str | None = None
    restored_crop: str | None = None
    identity: Identity | None = None
    pose: Pose | None = None
    shape: ShapeCheck | None = None
    attempts: list[Attempt] | None = None
    diffusion: Any = None  # restore.diffusion.DiffusionInfo for the seeded diffusion restorers
    paste: Paste | None = None  # set by the write step (blend.compose): --detail / --compat as applied
    frame: int | None = None
    timestamp: float | None = None
    track_id: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report line as a dict: unset fields (None, empty lists) left out, typed results serialised."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or v == []:
                continue
            if hasattr(v, "to_json"):
                v = v.to_json()
            elif isinstance(v, list) and v and hasattr(v[0], "to_json"):
                v = [x.to_json() for x in v]
            out[f.name] = v
        return out


# ------------------------------------------------------------------------------------------ stage contract


@dataclass(frozen=True)
class FrameRef:
    """Where a face comes from: its frame's pixels (``(H, W, C)`` as decoded) and the frame's identity.

    ``input_id`` numbers the inputs of one run (unique per input file, never reused), ``index`` is the frame's
    index within a video (0 for an image)."""

    pixels: np.ndarray
    source: str
    input_id: int
    index: int = 0
    kind: str = "image"  # "image" | "video"
    content_id: str = ""  # the input file's sha256 (images); video frames are named by their pixels instead


@dataclass(eq=False)
class FaceState:
    """One face on its way through the batch stages around the restorer. Stages read and write these typed fields
    (each stage declares which, see ``BatchStage``); nothing is kept in parallel lists.

    ``restored`` is ``(S, S, 3)`` float32 BGR [0, 1] once the restorer ran; ``mask`` a crop-space ``(S, S)`` float32
    blend mask (None: the crop-border feather mask); ``prior`` what the restorer needs from the 3D prior (e.g.
    ``prior.types.SgpnPrior``); ``attempt`` counts identity-guard retries."""

    face: AlignedFace
    record: FaceRecord
    frame: FrameRef
    strength: float
    gray: bool
    prior: Any = None
    restored: np.ndarray | None = None
    mask: np.ndarray | None = None
    attempt: int = 0

    @property
    def crop(self) -> np.ndarray:
        """The aligned input crop, ``(S, S, 3)`` BGR, the image's dtype."""
        return self.face.crop

    @property
    def key(self) -> str:
        """A stable name for this face: its input's content (the file's sha256; a video frame's pixels), frame and
        face index. Seeded restorers derive the face's noise from it, so a face restores to the same pixels alone,
        in any batch and on a resumed run."""
        import hashlib

        content = self.frame.content_id or hashlib.sha256(np.ascontiguousarray(self.frame.pixels).data).hexdigest()
        return f"{content}:{self.frame.index}:{self.face.index}"

    def set_strength(self, s: float) -> None:
        self.strength = s
        self.record.strength = round(float(s), 4)


# Field names of ``FaceState`` a stage may declare in ``needs`` / ``provides`` / ``finalizes``.
FACE_FIELDS = frozenset({"crop", "strength", "gray", "prior", "restored", "mask", "record"})


class BatchStage(Protocol):
    """Work on each batch of faces around the restorer call (3D prior, colour, parsing masks, identity...).

    A stage is built once with its models and then called on batches of ``FaceState``, from any thread or
    process (the local scheduler, or a Ray actor). It declares the fields it reads (``needs``) and writes
    (``provides``), and those it decides on for good (``finalizes``: no later stage may change them). The
    scheduler checks the order from these declarations (``facerest_cli.stages.check_order``).

    ``before_restore`` may set strength and prior; ``after_restore`` sees the restored crops and returns the faces
    to restore again (the identity guard's retries), which rejoin the queue with ``attempt`` increased.
    ``summary`` returns the stage's typed summary for summary.json (or None).

    Two optional declarations let the local scheduler overlap a stage's work with the restorer (issue 13: on a
    CPU the restorer is most of the run, and the other networks should not wait for it):

    * ``on_input = True``: ``before_restore`` reads only the frame and its prepared faces and does nothing on a
      retry (``attempt > 0``), so it may run when a frame is prepared, in the prepare thread (the 3D prior);
    * ``retries = False``: ``after_restore`` never returns faces to restore again, so it may run when a frame's
      faces are all restored, in the write thread, frame by frame in input order.

    Undeclared means no (the stage runs around the restorer call). Only a leading run of ``on_input`` stages and
    a trailing run of non-retrying stages move, so every hook still runs in the declared stage order.
    """

    name: str
    needs: frozenset[str]
    provides: frozenset[str]
    finalizes: frozenset[str]

    def before_restore(self, faces: list[FaceState]) -> None: ...

    def after_restore(self, faces: list[FaceState]) -> list[FaceState]: ...

    def summary(self) -> "StageSummary | None": ...


class Events(Protocol):
    """Progress callbacks (called from worker threads)."""

    def start(self, total: int) -> None: ...

    def image_done(self, path: Path, n_faces: int) -> None: ...

    def image_failed(self, path: Path, error: str) -> None: ...

    def frame_done(self, path: Path, index: int, total: int | None) -> None: ...


class StageSummary(Protocol):
    """A stage's (or the run's) typed contribution to summary.json, under ``key``."""

    key: ClassVar[str]

    def to_json(self) -> Any: ...


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    a = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]
