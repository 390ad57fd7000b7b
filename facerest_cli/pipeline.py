"""The streaming pipeline: decode -> detect -> align -> [batch stages] -> restore (batched) -> paste -> write.

Three threads joined by bounded queues, so memory is bounded by ``queue_size`` and ``batch_size``, never by the
number of inputs or the length of a film:

* **prepare** turns each input into ``Frame``s (one per image; many per video) with their aligned faces;
* **main** gathers the faces of *several* frames into restorer calls of up to ``batch_size`` crops, running the
  optional ``BatchStage``s (3D prior, parsing masks, identity) around each call;
* **write** pastes the restored faces back, hands each frame to its ``FrameSink`` and streams the report.

No CLI and no globals here: ``facerest_cli.job`` builds the stages from a ``RunConfig`` and calls ``run``.
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
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from facerest_cli.align.faces import FacePreparer
from facerest_cli.blend.color import is_gray, is_near_gray, to_gray
from facerest_cli.blend.mask import feather_mask
from facerest_cli.blend.paste import PasteItem, paste_faces, scale_matrix
from facerest_cli.config import OUTPUT_FORMATS, RunConfig
from facerest_cli.errors import FacerestError, InputError, UsageError
from facerest_cli.io.decode import decode_image
from facerest_cli.io.sinks import ImageSink, atomic_write_bytes, file_identity, is_inside, output_format, output_path
from facerest_cli.io.sources import InputItem, Skipped
from facerest_cli.report.jsonl import ReportWriter
from facerest_cli.restore.runtime import RestoreRuntime
from facerest_cli.types import AlignedFace, DecodedImage, FaceRecord, ImageMeta

STAGES = ("decode", "detect", "align", "restore", "paste", "write")


# ------------------------------------------------------------------------------------------------ contracts


@dataclass
class Frame:
    """One picture in flight (an image file, or one frame of a video) with its faces."""

    item: InputItem
    sink: "FrameSink"
    image: DecodedImage
    faces: list[AlignedFace]
    records: list[FaceRecord]
    strengths: list[float]
    gray_faces: list[bool]  # faces restored as grayscale: no invented colour
    restored: list[np.ndarray | None] = field(default_factory=list)  # (S, S, 3) float32 BGR [0, 1]
    masks: list[np.ndarray | None] = field(default_factory=list)  # crop-space blend masks; None = feather
    priors: list[Any] = field(default_factory=list)  # per-face 3D prior (restorers that need one)
    index: int = 0  # frame index within its input
    last: bool = True  # last frame of its input: the sink is finished after it
    timing: Any = None  # video: presentation timestamp etc., for the sink
    error: InputError | None = None  # the input failed here (video: mid-stream); earlier frames stay ordered

    def __post_init__(self) -> None:
        n = len(self.faces)
        self.restored = self.restored or [None] * n
        self.masks = self.masks or [None] * n
        self.priors = self.priors or [None] * n

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.restored)


@dataclass
class FaceJob:
    """One face of one frame, as it moves through the restore batches."""

    frame: Frame
    i: int
    attempt: int = 0

    @property
    def crop(self) -> np.ndarray:
        return self.frame.faces[self.i].crop

    @property
    def face(self) -> AlignedFace:
        return self.frame.faces[self.i]

    @property
    def record(self) -> FaceRecord:
        return self.frame.records[self.i]

    @property
    def strength(self) -> float:
        return self.frame.strengths[self.i]

    @strength.setter
    def strength(self, s: float) -> None:
        self.frame.strengths[self.i] = s
        self.record.strength = round(float(s), 4)

    @property
    def restored(self) -> np.ndarray | None:
        return self.frame.restored[self.i]


class BatchStage(Protocol):
    """Optional work on each restore batch, in the main thread (where the GPU work is batched).

    ``before_restore`` may set per-face strength, prior or mask; ``after_restore`` sees the restored crops and
    returns the jobs to restore again (e.g. the identity guard retrying at lower strength): they rejoin the queue
    and are batched with the next faces.
    """

    name: str

    def before_restore(self, jobs: list[FaceJob]) -> None: ...

    def after_restore(self, jobs: list[FaceJob]) -> list[FaceJob]: ...


class FrameSink(Protocol):
    """Where pasted frames of one input go: one image file, or one video being encoded."""

    warnings: list[str]

    def write(self, pixels: np.ndarray, frame: Frame) -> None: ...

    def finish(self) -> list[str]: ...

    def abort(self) -> None: ...


class FrameSource(Protocol):
    """Turns one video input into frames, and opens the sink its frames go to. Images are handled by the pipeline.

    ``frames`` runs in the prepare thread; it uses ``pipeline.prep`` (detect/align), ``pipeline.make_frame`` and
    ``pipeline.clock``, and should stop early when ``pipeline.stopping`` is true.
    """

    def open_sink(self, item: InputItem, target: Path) -> FrameSink: ...

    def frames(self, item: InputItem, sink: FrameSink, pipeline: "Pipeline") -> Iterator[Frame]: ...


class Events(Protocol):
    """Progress callbacks (called from worker threads)."""

    def start(self, total: int) -> None: ...

    def image_done(self, path: Path, n_faces: int) -> None: ...

    def image_failed(self, path: Path, error: str) -> None: ...

    def frame_done(self, path: Path, index: int, total: int | None) -> None: ...


class _NoEvents:
    def start(self, total: int) -> None:
        pass

    def image_done(self, path: Path, n_faces: int) -> None:
        pass

    def image_failed(self, path: Path, error: str) -> None:
        pass

    def frame_done(self, path: Path, index: int, total: int | None) -> None:
        pass


# ------------------------------------------------------------------------------------------------- results


class StageClock:
    """Seconds spent per stage, summed over threads (for ``facerest bench`` and the summary)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}

    def add(self, stage: str, dt: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def timed(self, stage: str):
        return _Timer(self, stage)


class _Timer:
    def __init__(self, clock: StageClock, stage: str):
        self.clock, self.stage = clock, stage

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.clock.add(self.stage, time.perf_counter() - self.t)


@dataclass
class Failure:
    path: str
    error: str


@dataclass
class RunResult:
    seen: int = 0
    processed: int = 0
    faces: int = 0
    frames: int = 0
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    status: str = "completed"
    wall_time_s: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    restore_calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # summaries contributed by batch stages

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return 130
        return 1 if self.failed else 0


_END = object()


# -------------------------------------------------------------------------------------------------- driver


class Pipeline:
    def __init__(
        self,
        cfg: RunConfig,
        preparer: FacePreparer,
        runtime: RestoreRuntime,
        *,
        stages: Sequence[BatchStage] = (),
        video: FrameSource | None = None,
        events: Events | None = None,
        error_log: Callable[[str], None] | None = None,
        on_input_done: Callable[[Frame, list[str]], None] | None = None,
    ):
        if preparer.detector is None and not cfg.aligned:
            raise UsageError("a detector is needed unless --aligned is given")
        self.cfg = cfg
        self.prep = preparer
        self.runtime = runtime
        self.stages = list(stages)
        self.video = video
        self.events = events or _NoEvents()
        self.clock = StageClock()
        self.result = RunResult()
        self._error_log = error_log
        self._on_input_done = on_input_done  # e.g. the run manifest; called once an input's outputs are complete
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._feather = feather_mask(runtime.restorer.size)

    # ----------------------------------------------------------------------------------------- image frames

    def image_frame(self, item: InputItem, sink: FrameSink) -> Frame:
        """Decode, detect and align one image file."""
        with self.clock.timed("decode"):
            img, gray = normalise_channels(decode_image(item.path, item.rel_path, self.cfg.max_pixels))
        if self.cfg.aligned:
            with self.clock.timed("align"):
                faces = [self.prep.aligned_input(img)]
        else:
            with self.clock.timed("detect"):
                dets = self.prep.detect(img.pixels)
            with self.clock.timed("align"):
                faces = self.prep.align(img.pixels, dets)
        return self.make_frame(item, sink, img, faces, gray)

    def make_frame(self, item: InputItem, sink: FrameSink, img: DecodedImage, faces: list[AlignedFace],
                   gray: bool, **kw: Any) -> Frame:
        records = [self.prep.record(str(item.path), f) for f in faces]
        return Frame(
            item=item,
            sink=sink,
            image=img,
            faces=faces,
            records=records,
            strengths=[self.cfg.restore.strength] * len(faces),
            gray_faces=[gray or is_near_gray(f.crop) for f in faces],
            **kw,
        )

    # -------------------------------------------------------------------------------------------- write stage

    def _paste(self, fr: Frame) -> np.ndarray:
        if self.cfg.aligned and fr.faces:
            return _aligned_output(fr)
        frame = fr.image.pixels
        n = self.cfg.blend.upscale
        if n > 1:
            frame = _upscale(frame, n)
        items = [
            PasteItem(
                restored=r,
                matrix=scale_matrix(f.matrix, n) if n > 1 else f.matrix,
                mask=self._feather if m is None else m,
                gray=g,
            )
            for f, r, m, g in zip(fr.faces, fr.restored, fr.masks, fr.gray_faces)
        ]
        return paste_faces(frame, items)

    def _write(self, fr: Frame, report: ReportWriter) -> None:
        with self.clock.timed("paste"):
            out = self._paste(fr)
        with self.clock.timed("write"):
            fr.sink.write(out, fr)
            if self.cfg.output.save_crops:
                self._save_crops(fr)
            out_name = str(getattr(fr.sink, "path", ""))
            for r in fr.records:
                r.output = out_name or None
            report.write(fr.records)

    def _save_crops(self, fr: Frame) -> None:
        import cv2

        faces_dir = self.cfg.output.out_dir / "faces" / fr.item.rel_path.parent
        stem = fr.item.rel_path.stem + (f"_f{fr.index:06d}" if fr.item.kind == "video" else "")
        for f, r, rec in zip(fr.faces, fr.restored, fr.records):
            pairs = (("input", _to_uint8(f.crop)), ("restored", np.clip(np.rint(r * 255.0), 0, 255).astype(np.uint8)))
            for tag, arr in pairs:
                path = faces_dir / f"{stem}_face{f.index:02d}_{tag}.png"
                ok, buf = cv2.imencode(".png", arr)
                if not ok:
                    raise FacerestError(f"could not encode crop {path}")
                atomic_write_bytes(path, buf.tobytes())
                setattr(rec, f"{tag}_crop", str(path))

    # ------------------------------------------------------------------------------------------------- run

    def run(self, items: Sequence[InputItem], skipped: Sequence[Skipped] = (),
            plan: dict[Path, Path | InputError] | None = None) -> RunResult:
        """Process ``items``; ``plan`` is ``plan_outputs`` of them (or of a superset) when the caller made it."""
        t0 = time.perf_counter()
        result = self.result = RunResult(seen=len(items))
        result.skipped = [Failure(str(s.path), s.reason) for s in skipped]
        plan = self.plan_outputs(items) if plan is None else plan
        cfg = self.cfg
        cfg.output.out_dir.mkdir(parents=True, exist_ok=True)
        self.events.start(len(items))
        q_prep: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        q_write: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        report = ReportWriter(cfg.output.out_dir / "report.jsonl", append=cfg.output.incremental)

        threads = [
            threading.Thread(target=self._producer, args=(items, plan, q_prep), name="facerest-prepare", daemon=True),
            threading.Thread(target=self._writer, args=(q_write, report), name="facerest-write", daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            self._restore_loop(q_prep, q_write)
        except KeyboardInterrupt:
            result.status = "interrupted"
            self._stop.set()
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the threads are down
            self._set_fatal(e)
        finally:
            # The writer finishes what is already restored (a few frames at most), then stops.
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
        for st in self.stages:
            summarise = getattr(st, "summary", None)
            if summarise is not None:
                result.extra.update(summarise())
        if self._fatal is not None:
            raise self._fatal
        return result

    def fail(self, path: Path, err: BaseException) -> None:
        """Record one failed input: a one-line reason (internal errors keep their traceback in the log)."""
        if isinstance(err, InputError):
            reason = err.reason
        else:
            lines = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
            if not isinstance(err, FacerestError) and self._error_log:
                self._error_log(f"{path}\n{''.join(traceback.format_exception(err))}")
        with self._lock:
            self.result.failed.append(Failure(str(path), reason))
        self.events.image_failed(path, f"{path}: {reason}")

    def _producer(self, items: Sequence[InputItem], plan: dict, q_prep: queue.Queue) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    break
                target = plan.get(item.path)
                if isinstance(target, InputError):
                    self.fail(item.path, target)
                    continue
                if item.kind == "video":
                    self._produce_video(item, target, q_prep)
                    continue
                sink = ImageSink(target, output_format(_guess_format(item.path), self.cfg.output.ext), self.cfg.output.jpeg_quality)
                try:
                    fr = self.image_frame(item, sink)
                except Exception as e:  # noqa: BLE001 - one bad input never stops the run
                    self.fail(item.path, e)
                    continue
                self._put(q_prep, fr)
        except BaseException as e:  # noqa: BLE001
            self._set_fatal(e)
        finally:
            self._put(q_prep, _END, force=True)

    def _produce_video(self, item: InputItem, target: Path, q_prep: queue.Queue) -> None:
        if self.video is None:
            self.fail(item.path, InputError(item.path, "video input is not supported in this configuration"))
            return
        sink = None
        last: Frame | None = None
        try:
            sink = self.video.open_sink(item, target)
            for fr in self.video.frames(item, sink, self):
                if self._stop.is_set():
                    return
                self._put(q_prep, fr)
                last = fr
        except Exception as e:  # noqa: BLE001
            err = e if isinstance(e, InputError) else InputError(item.path, f"{type(e).__name__}: {e}")
            if sink is None:
                self.fail(item.path, err)
                return
            # Frames already queued stay in order; this marker makes the writer abort the sink after them.
            marker = Frame(item=item, sink=sink, image=last.image if last else _EMPTY_IMAGE, faces=[], records=[],
                           strengths=[], gray_faces=[], index=(last.index + 1) if last else 0, last=True, error=err)
            self._put(q_prep, marker)

    def _writer(self, q_write: queue.Queue, report: ReportWriter) -> None:
        result = self.result
        unfinished: FrameSink | None = None  # written to but not finished (a video): aborted if the run stops
        dead: set = set()  # sinks whose input failed mid-way (a video): the rest of its frames are dropped
        item_faces = 0  # faces written for the current input (all frames of a video)
        try:
            while True:
                fr = q_write.get()
                if fr is _END:
                    return
                if self._fatal is not None or fr.sink in dead:
                    continue
                if fr.error is not None:
                    fr.sink.abort()
                    unfinished = None
                    item_faces = 0
                    self.fail(fr.item.path, fr.error)
                    continue
                try:
                    unfinished = fr.sink
                    self._write(fr, report)
                except InputError as e:
                    fr.sink.abort()
                    dead.add(fr.sink)
                    unfinished = None
                    item_faces = 0
                    self.fail(fr.item.path, e)
                    continue
                item_faces += len(fr.faces)
                with self._lock:
                    result.faces += len(fr.faces)
                    result.frames += 1
                if fr.item.kind == "video":
                    self.events.frame_done(fr.item.path, fr.index, getattr(fr.timing, "total", None))
                if fr.last:
                    try:
                        outs = fr.sink.finish()
                    except InputError as e:  # e.g. a video's encoder failing at its final flush
                        unfinished = None
                        item_faces = 0
                        self.fail(fr.item.path, e)
                        continue
                    unfinished = None
                    if self._on_input_done is not None:
                        self._on_input_done(fr, outs)
                    with self._lock:
                        result.processed += 1
                        result.outputs.extend(outs)
                        for w in (*fr.image.meta.warnings, *fr.sink.warnings):
                            result.warnings.append({"path": str(fr.item.path), "warning": w})
                    self.events.image_done(fr.item.path, item_faces)
                    item_faces = 0
        except BaseException as e:  # noqa: BLE001
            self._set_fatal(e)
        finally:
            if unfinished is not None:  # interrupted or disk full mid-input: leave no partial output
                unfinished.abort()

    def _restore_loop(self, q_prep: queue.Queue, q_write: queue.Queue) -> None:
        """Gather faces across frames into batches; hand finished frames to the writer in input order."""
        pending: deque[Frame] = deque()
        todo: deque[FaceJob] = deque()  # faces not yet restored
        bs = self.cfg.restore.batch_size
        ended = False
        while True:
            # Fill until a full batch is waiting, or the input is exhausted. At most bs + queue_size frames wait
            # here, so a long stretch of faceless video frames cannot pile up in memory.
            while not ended and len(todo) < bs and len(pending) < bs + self.cfg.queue_size:
                fr = self._get(q_prep)
                if fr is _END:
                    ended = True
                    break
                pending.append(fr)
                todo.extend(FaceJob(fr, i) for i in range(len(fr.faces)))
            if self._stop.is_set():
                return
            if todo:
                batch = [todo.popleft() for _ in range(min(bs, len(todo)))]
                for st in self.stages:
                    with self.clock.timed(st.name):
                        st.before_restore(batch)
                with self.clock.timed("restore"):
                    priors = [j.frame.priors[j.i] for j in batch] if self.runtime.restorer.needs_prior else None
                    out = self.runtime.restore([j.crop for j in batch], [j.strength for j in batch], prior=priors)
                for j, r in zip(batch, out):
                    j.frame.restored[j.i] = r
                    j.record.notes.extend(self.runtime.last_notes)  # e.g. out of memory: batch halved
                retry: list[FaceJob] = []
                for st in self.stages:
                    with self.clock.timed(st.name):
                        retry += st.after_restore(batch)
                for j in reversed(retry):
                    j.attempt += 1
                    j.frame.restored[j.i] = None
                    todo.appendleft(j)
            while pending and pending[0].done:
                self._put(q_write, pending.popleft())
            if ended and not todo and not pending:
                return

    # --------------------------------------------------------------------------------------------- plumbing

    def plan_outputs(self, items: Sequence[InputItem]) -> dict[Path, Path | InputError]:
        """Output path per input; collisions and outputs that would overwrite an input are refused up front."""
        cfg = self.cfg.output
        inputs_resolved = {os.path.realpath(i.path) for i in items}
        inputs_folded = {p.casefold() for p in inputs_resolved}
        input_ids = {file_identity(i.path) for i in items} - {None}  # hard links, case-insensitive file systems
        plan: dict[Path, Path | InputError] = {}
        taken: dict[str, Path] = {}
        for it in items:
            try:
                if it.kind == "video":
                    out = output_path(cfg.out_dir, it.rel_path, "VIDEO", video_extension(it.rel_path, cfg.ext, self.cfg.video.codec), cfg.suffix)
                else:
                    out = output_path(cfg.out_dir, it.rel_path, output_format(_guess_format(it.path), cfg.ext), cfg.ext, cfg.suffix)
            except FacerestError as e:
                plan[it.path] = InputError(it.path, str(e))
                continue
            real = os.path.realpath(out)
            if real in inputs_resolved or real.casefold() in inputs_folded or file_identity(real) in input_ids:
                raise UsageError(f"output {out} would overwrite the input file {it.path}; choose another -o/--suffix")
            if not is_inside(out, cfg.out_dir):
                plan[it.path] = InputError(it.path, f"output {out} would leave the output folder through a symbolic link")
                continue
            key = real.casefold()
            if key in taken:
                plan[it.path] = InputError(it.path, f"output {out} collides with the output of {taken[key]}")
                continue
            taken[key] = it.path
            plan[it.path] = out
        return plan

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _set_fatal(self, e: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = e
        self._stop.set()

    def _put(self, q: queue.Queue, obj: Any, force: bool = False) -> None:
        while True:
            if self._stop.is_set() and not force:
                return
            try:
                q.put(obj, timeout=0.1)
                return
            except queue.Full:
                if force and self._stop.is_set():
                    self._drain(q)

    def _get(self, q: queue.Queue) -> Any:
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

_EMPTY_IMAGE = DecodedImage(Path(), Path(), np.zeros((1, 1, 3), np.uint8), ImageMeta(format="", bit_depth=8, channels=3))


VIDEO_CONTAINERS = (".mp4", ".mkv", ".mov", ".m4v")


def video_extension(rel: Path, ext: str | None, codec: str = "x264") -> str:
    """Output container extension for a video: --ext if it names a video container, else the input's when it can
    hold H.264 (mp4, mkv, mov, m4v), else mkv (webm and avi cannot carry every codec we write). FFV1 archival
    masters are always Matroska (its standard container; QuickTime cannot hold FFV1)."""
    if codec == "ffv1":
        return "mkv"
    if ext and "." + ext.lower().lstrip(".") in VIDEO_CONTAINERS:
        return ext.lower().lstrip(".")
    suffix = rel.suffix.lower()
    return suffix.lstrip(".") if suffix in VIDEO_CONTAINERS else "mkv"


def _guess_format(path: Path) -> str:
    return OUTPUT_FORMATS.get(path.suffix.lower().lstrip("."), "PNG")


def normalise_channels(img: DecodedImage) -> tuple[DecodedImage, bool]:
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


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return a


def _upscale(frame: np.ndarray, n: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    up = cv2.resize(frame, (w * n, h * n), interpolation=cv2.INTER_LANCZOS4)
    return up[:, :, None] if up.ndim == 2 else up


def _aligned_output(fr: Frame) -> np.ndarray:
    """--aligned: the output is the restored crop itself, at the input's size, channels and depth."""
    import cv2

    px = fr.image.pixels
    h, w = px.shape[:2]
    r = fr.restored[0]
    if r.shape[:2] != (h, w):
        r = cv2.resize(r, (w, h), interpolation=cv2.INTER_AREA if r.shape[0] > h else cv2.INTER_CUBIC)
    maxval = 65535.0 if px.dtype == np.uint16 else 255.0
    color = to_gray(r) if px.shape[2] in (1, 2) else (np.repeat(to_gray(r), 3, axis=2) if fr.gray_faces[0] else r)
    vals = np.clip(np.rint(color * maxval), 0, maxval).astype(px.dtype)
    out = px.copy()
    out[:, :, : vals.shape[2]] = vals
    return out
