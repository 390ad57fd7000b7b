"""The streaming pipeline over images: decode -> detect -> align -> restore (batched) -> paste -> write.

Three threads, joined by bounded queues so memory is bounded by ``queue_size`` and ``batch_size``, never by the
number of inputs:

* **prepare** (decode, detect, align) produces ``PreparedImage``s;
* **main** gathers the faces of *several* images into restorer calls of up to ``batch_size`` crops;
* **write** pastes the restored faces back, encodes, writes atomically and streams the report.

No CLI and no globals here: the CLI builds a ``RunConfig`` and the stages, and calls ``Pipeline.run``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from facerest_cli.align.templates import template_points
from facerest_cli.align.warp import estimate_similarity, warp_to_crop
from facerest_cli.blend.color import is_gray, is_near_gray
from facerest_cli.blend.mask import feather_mask
from facerest_cli.blend.paste import PasteItem, paste_faces, scale_matrix
from facerest_cli.config import RunConfig
from facerest_cli.detect.base import Detector, detect_bounded, select_faces, to_detection_bgr
from facerest_cli.errors import FacerestError, InputError, Interrupted, UsageError
from facerest_cli.io.decode import decode_image
from facerest_cli.io.sinks import atomic_write_bytes, encode_image, output_format, output_path
from facerest_cli.io.sources import InputItem, Skipped
from facerest_cli.report.jsonl import ReportWriter
from facerest_cli.restore.runtime import RestoreRuntime
from facerest_cli.types import AlignedFace, DecodedImage, Detection, FaceRecord, ImageMeta

STAGES = ("decode", "detect", "align", "restore", "paste", "write")


class StageClock:
    """Seconds spent per stage, summed over threads (for ``facerest bench`` and the summary)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}

    def add(self, stage: str, dt: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def timed(self, stage: str):
        clock = self

        class _T:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                clock.add(stage, time.perf_counter() - self.t)

        return _T()


@dataclass
class PreparedImage:
    item: InputItem
    out_path: Path
    image: DecodedImage
    faces: list[AlignedFace]
    records: list[FaceRecord]
    strengths: list[float]
    restored: list[np.ndarray | None] = field(default_factory=list)
    gray_faces: list[bool] = field(default_factory=list)  # faces restored as grayscale (no invented colour)

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.restored)


@dataclass
class Failure:
    path: str
    error: str


@dataclass
class RunResult:
    seen: int = 0
    processed: int = 0
    faces: int = 0
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    status: str = "completed"
    wall_time_s: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    restore_calls: int = 0

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return 130
        return 1 if self.failed else 0


class Events(Protocol):
    """Progress callbacks (called from worker threads)."""

    def start(self, total: int) -> None: ...

    def image_done(self, path: Path, n_faces: int) -> None: ...

    def image_failed(self, path: Path, error: str) -> None: ...


class _NoEvents:
    def start(self, total: int) -> None:
        pass

    def image_done(self, path: Path, n_faces: int) -> None:
        pass

    def image_failed(self, path: Path, error: str) -> None:
        pass


_END = object()


class Pipeline:
    def __init__(
        self,
        cfg: RunConfig,
        detector: Detector | None,
        runtime: RestoreRuntime,
        *,
        events: Events | None = None,
        error_log: Callable[[str], None] | None = None,
    ):
        if detector is None and not cfg.aligned:
            raise UsageError("a detector is needed unless --aligned is given")
        self.cfg = cfg
        self.detector = detector
        self.runtime = runtime
        self.events = events or _NoEvents()
        self.clock = StageClock()
        self._error_log = error_log
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._size = runtime.restorer.size
        self._template = template_points(runtime.restorer.template, self._size)
        self._mask = feather_mask(self._size)

    # ------------------------------------------------------------------------------------------ prepare stage

    def _prepare(self, item: InputItem, out_path: Path) -> PreparedImage:
        with self.clock.timed("decode"):
            img = decode_image(item.path, item.rel_path)
            img, gray = _normalise_channels(img)
        if self.cfg.aligned:
            with self.clock.timed("align"):
                faces = [self._aligned_face(img)]
        else:
            with self.clock.timed("detect"):
                bgr = to_detection_bgr(img.pixels)
                dets = detect_bounded(self.detector, bgr, self.cfg.detect.max_side)
                dets = select_faces(dets, bgr.shape[:2], self.cfg.detect)
            with self.clock.timed("align"):
                faces = [self._align(img.pixels, i, d) for i, d in enumerate(dets)]
        det_name = "aligned-input" if self.cfg.aligned else self.detector.name
        records = [self._record(img, f, det_name) for f in faces]
        strengths = [self.cfg.restore.strength] * len(faces)
        gray_faces = [gray or is_near_gray(f.crop) for f in faces]
        return PreparedImage(item, out_path, img, faces, records, strengths, [None] * len(faces), gray_faces)

    def _align(self, pixels: np.ndarray, index: int, det: Detection) -> AlignedFace:
        m = estimate_similarity(det.landmarks, self._template)
        crop = warp_to_crop(pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, :1], m, self._size)
        return AlignedFace(index=index, detection=det, crop=_as_bgr(crop), matrix=m)

    def _aligned_face(self, img: DecodedImage) -> AlignedFace:
        import cv2

        h, w = img.pixels.shape[:2]
        if abs(h - w) > max(2, 0.02 * max(h, w)):
            raise InputError(img.path, f"--aligned expects a square aligned face crop, got {w}x{h}")
        s = self._size
        px = img.pixels[:, :, :3] if img.pixels.shape[2] >= 3 else img.pixels[:, :, :1]
        crop = px if (h, w) == (s, s) else cv2.resize(px, (s, s), interpolation=cv2.INTER_AREA if w > s else cv2.INTER_CUBIC)
        if crop.ndim == 2:
            crop = crop[:, :, None]
        # image pixel p -> crop pixel (p + 0.5) * s / w - 0.5
        m = np.array([[s / w, 0, 0.5 * s / w - 0.5], [0, s / h, 0.5 * s / h - 0.5]], np.float64)
        lm = (self._template + 0.5) * np.array([w / s, h / s]) - 0.5
        det = Detection(box=np.array([0, 0, w, h], np.float32), score=1.0, landmarks=lm.astype(np.float32))
        return AlignedFace(index=0, detection=det, crop=_as_bgr(crop), matrix=m)

    def _record(self, img: DecodedImage, f: AlignedFace, det_name: str) -> FaceRecord:
        d = f.detection
        return FaceRecord(
            source=str(img.path),
            face_index=f.index,
            bbox=[round(float(v), 2) for v in d.box],
            score=round(float(d.score), 4),
            landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in d.landmarks],
            face_size=round(d.size, 2),
            detector=det_name,
            restorer=self.runtime.restorer.name,
            strength=self.cfg.restore.strength,
            matrix=[[float(v) for v in row] for row in f.matrix],
        )

    # -------------------------------------------------------------------------------------------- write stage

    def _write(self, p: PreparedImage, report: ReportWriter) -> str:
        cfg = self.cfg
        with self.clock.timed("paste"):
            if cfg.aligned and p.faces:
                out = _aligned_output(p)
            else:
                frame = p.image.pixels
                n = cfg.blend.upscale
                if n > 1:
                    frame = _upscale(frame, n)
                items = [
                    PasteItem(restored=r, matrix=scale_matrix(f.matrix, n) if n > 1 else f.matrix, mask=self._mask, gray=g)
                    for f, r, g in zip(p.faces, p.restored, p.gray_faces)
                ]
                out = paste_faces(frame, items)
        with self.clock.timed("write"):
            fmt = output_format(p.image.meta.format, cfg.output.ext)
            data, warns = encode_image(out, fmt, p.image.meta, cfg.output.jpeg_quality)
            atomic_write_bytes(p.out_path, data)
            if cfg.output.save_crops:
                self._save_crops(p)
            for r in p.records:
                r.output = str(p.out_path)
            report.write(p.records)
        with self._lock:
            for w in (*p.image.meta.warnings, *warns):
                self.result.warnings.append({"path": str(p.item.path), "warning": w})
        return str(p.out_path)

    def _save_crops(self, p: PreparedImage) -> None:
        import cv2

        faces_dir = self.cfg.output.out_dir / "faces" / p.item.rel_path.parent
        stem = p.item.rel_path.stem
        for f, r, rec in zip(p.faces, p.restored, p.records):
            crop_in = _to_uint8(f.crop)
            crop_out = np.clip(np.rint(r * 255.0), 0, 255).astype(np.uint8)
            for tag, arr in (("input", crop_in), ("restored", crop_out)):
                path = faces_dir / f"{stem}_face{f.index:02d}_{tag}.png"
                ok, buf = cv2.imencode(".png", arr)
                if not ok:
                    raise FacerestError(f"could not encode crop {path}")
                atomic_write_bytes(path, buf.tobytes())
                setattr(rec, f"{tag}_crop" if tag == "input" else "restored_crop", str(path))

    # ------------------------------------------------------------------------------------------------- driver

    def run(self, items: Sequence[InputItem], skipped: Sequence[Skipped] = ()) -> RunResult:
        t0 = time.perf_counter()
        self.result = result = RunResult(seen=len(items))
        result.skipped = [Failure(str(s.path), s.reason) for s in skipped]
        out_paths = self._plan_outputs(items)
        self.events.start(len(items))
        cfg = self.cfg
        cfg.output.out_dir.mkdir(parents=True, exist_ok=True)
        q_prep: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        q_write: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        report = ReportWriter(cfg.output.out_dir / "report.jsonl")

        def fail(path: Path, err: BaseException) -> None:
            if isinstance(err, InputError):
                reason = err.reason
            else:
                lines = str(err).strip().splitlines()
                reason = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
                if not isinstance(err, FacerestError) and self._error_log:
                    self._error_log(f"{path}\n{''.join(traceback.format_exception(err))}")
            with self._lock:
                result.failed.append(Failure(str(path), reason))
            self.events.image_failed(path, f"{path}: {reason}")

        def producer() -> None:
            try:
                for item in items:
                    if self._stop.is_set():
                        break
                    target = out_paths.get(item.path)
                    if isinstance(target, InputError):
                        fail(item.path, target)
                        continue
                    if item.kind != "image":
                        fail(item.path, InputError(item.path, "video input is not supported by this pipeline"))
                        continue
                    try:
                        prepared = self._prepare(item, target)
                    except Exception as e:  # noqa: BLE001 - one bad input never stops the run
                        fail(item.path, e)
                        continue
                    self._put(q_prep, prepared)
            except BaseException as e:  # noqa: BLE001
                self._set_fatal(e)
            finally:
                self._put(q_prep, _END, force=True)

        def writer() -> None:
            try:
                while True:
                    p = q_write.get()
                    if p is _END:
                        return
                    if self._stop.is_set() and self._fatal is not None:
                        continue
                    try:
                        out = self._write(p, report)
                    except (InputError, ValueError, OSError) as e:
                        if isinstance(e, OSError) and getattr(e, "errno", None) == 28:
                            raise
                        fail(p.item.path, e if isinstance(e, InputError) else InputError(p.item.path, f"cannot write output: {e}"))
                        continue
                    with self._lock:
                        result.processed += 1
                        result.faces += len(p.faces)
                        result.outputs.append(out)
                    self.events.image_done(p.item.path, len(p.faces))
            except BaseException as e:  # noqa: BLE001
                self._set_fatal(e)

        threads = [threading.Thread(target=producer, name="facerest-prepare", daemon=True),
                   threading.Thread(target=writer, name="facerest-write", daemon=True)]
        for t in threads:
            t.start()
        try:
            self._restore_loop(q_prep, q_write)
        except KeyboardInterrupt:
            result.status = "interrupted"
            self._stop.set()
        except BaseException as e:  # noqa: BLE001
            self._set_fatal(e)
        finally:
            # The writer finishes what is already restored (a few images at most), then stops.
            self._put(q_write, _END, force=True)
            threads[1].join()
            self._stop.set()
            while threads[0].is_alive():
                self._drain(q_prep)
                threads[0].join(timeout=0.1)
            report.close()
        result.wall_time_s = time.perf_counter() - t0
        result.stage_seconds = dict(self.clock.seconds)
        result.restore_calls = self.runtime.calls
        if self._fatal is not None:
            if isinstance(self._fatal, KeyboardInterrupt):
                result.status = "interrupted"
            else:
                raise self._fatal
        return result

    def _restore_loop(self, q_prep: queue.Queue, q_write: queue.Queue) -> None:
        """Gather faces across images into batches; hand finished images to the writer in input order."""
        pending: deque[PreparedImage] = deque()
        todo: deque[tuple[PreparedImage, int]] = deque()  # faces not yet restored
        bs = self.cfg.restore.batch_size
        ended = False
        while True:
            # Fill until a full batch is waiting, or the input is exhausted.
            while not ended and len(todo) < bs:
                p = self._get(q_prep)
                if p is _END:
                    ended = True
                    break
                pending.append(p)
                todo.extend((p, i) for i in range(len(p.faces)))
            if self._stop.is_set():
                return
            if todo:
                batch = [todo.popleft() for _ in range(min(bs, len(todo)))]
                with self.clock.timed("restore"):
                    out = self.runtime.restore([p.faces[i].crop for p, i in batch], [p.strengths[i] for p, i in batch])
                for (p, i), r in zip(batch, out):
                    p.restored[i] = r
            while pending and pending[0].done:
                self._put(q_write, pending.popleft())
            if ended and not todo and not pending:
                return

    # --------------------------------------------------------------------------------------------- plumbing

    def _plan_outputs(self, items: Sequence[InputItem]) -> dict[Path, Path | InputError]:
        """Output path per input; collisions and outputs that would overwrite an input are refused up front."""
        cfg = self.cfg.output
        inputs_resolved = {os.path.realpath(i.path) for i in items}
        inputs_folded = {p.casefold() for p in inputs_resolved}
        plan: dict[Path, Path | InputError] = {}
        taken: dict[str, Path] = {}
        for it in items:
            fmt = output_format(_guess_format(it.path), cfg.ext)
            try:
                out = output_path(cfg.out_dir, it.rel_path, fmt, cfg.ext, cfg.suffix)
            except FacerestError as e:
                plan[it.path] = InputError(it.path, str(e))
                continue
            real = os.path.realpath(out)
            if real in inputs_resolved or real.casefold() in inputs_folded:
                raise UsageError(f"output {out} would overwrite the input file {it.path}; choose another -o/--suffix")
            key = real.casefold()
            if key in taken:
                plan[it.path] = InputError(it.path, f"output {out} collides with the output of {taken[key]}")
                continue
            taken[key] = it.path
            plan[it.path] = out
        return plan

    def _set_fatal(self, e: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = e
        self._stop.set()

    def _put(self, q: queue.Queue, obj, force: bool = False) -> None:
        while True:
            if self._stop.is_set() and not force:
                return
            try:
                q.put(obj, timeout=0.1)
                return
            except queue.Full:
                if force and self._stop.is_set():
                    self._drain(q)

    def _get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    @staticmethod
    def _drain(q: queue.Queue) -> None:
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass


# ------------------------------------------------------------------------------------------------- helpers


def _guess_format(path: Path) -> str:
    from facerest_cli.config import OUTPUT_FORMATS

    return OUTPUT_FORMATS.get(path.suffix.lower().lstrip("."), "PNG")


def _normalise_channels(img: DecodedImage) -> tuple[DecodedImage, bool]:
    """Detect grayscale photos stored as RGB(A) (all channels equal). Returns the image to process and whether it
    is grayscale; restored faces on a grayscale image are made grayscale, so no colour is ever invented.

    Such an image is written single-channel, unless it carries an RGB ICC profile, which a grayscale file cannot
    hold: then it keeps its channels (with R = G = B) so the profile survives.
    """
    px = img.pixels
    if px.shape[2] in (1, 2):
        return img, True
    if not is_gray(px[:, :, :3]):
        return img, False
    icc = img.meta.icc_profile
    if icc and icc[16:20] != b"GRAY":
        return img, True
    new = px[:, :, [0, 3]] if px.shape[2] == 4 else px[:, :, :1]
    meta = ImageMeta(**{**img.meta.__dict__, "warnings": (*img.meta.warnings, "RGB with identical channels: written as grayscale")})
    return DecodedImage(img.path, img.rel_path, np.ascontiguousarray(new), meta), True


def _as_bgr(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(crop, 3, axis=2)) if crop.shape[2] == 1 else crop


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return a


def _upscale(frame: np.ndarray, n: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    up = cv2.resize(frame, (w * n, h * n), interpolation=cv2.INTER_LANCZOS4)
    return up[:, :, None] if up.ndim == 2 else up


def _aligned_output(p: PreparedImage) -> np.ndarray:
    """--aligned: the output is the restored crop itself, at the input's size, channels and depth."""
    import cv2

    from facerest_cli.blend.color import to_gray

    px = p.image.pixels
    h, w = px.shape[:2]
    r = p.restored[0]
    if r.shape[:2] != (h, w):
        r = cv2.resize(r, (w, h), interpolation=cv2.INTER_AREA if r.shape[0] > h else cv2.INTER_CUBIC)
    maxval = 65535.0 if px.dtype == np.uint16 else 255.0
    color = to_gray(r) if px.shape[2] in (1, 2) else (np.repeat(to_gray(r), 3, axis=2) if p.gray_faces[0] else r)
    vals = np.clip(np.rint(color * maxval), 0, maxval).astype(px.dtype)
    out = px.copy()
    out[:, :, : vals.shape[2]] = vals
    return out
