"""The local scheduler: decode -> detect -> align -> [batch stages] -> restore (batched) -> paste -> write.

Three threads joined by bounded queues, so memory is bounded by ``queue_size`` and ``batch_size``, never by the
number of inputs or the length of a film:

* **prepare** turns each input into ``Frame``s (one per image; many per video) with their aligned faces;
* **main** gathers the faces of *several* frames into restorer calls of up to ``batch_size`` crops, running the
  batch stages (3D prior, colour, parsing masks, identity...) around each call;
* **write** pastes the restored faces back, hands each frame to its sink and streams the report.

This module only schedules. What a face carries and what a stage may touch is ``facerest_cli.types``
(``FaceState``, ``BatchStage``); where outputs go is ``io.plan``; how pixels are pasted is ``blend.paste``. No CLI
and no globals: ``facerest_cli.job`` builds the stages from a ``RunConfig`` and calls ``Pipeline.run``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from facerest_cli.align.faces import FacePreparer
from facerest_cli.blend.color import is_near_gray
from facerest_cli.blend.mask import feather_mask
from facerest_cli.blend.compose import BandImage, Composer
from facerest_cli.blend.paste import compose_aligned
from facerest_cli.config import RunConfig
from facerest_cli.errors import FacerestError, InputError, UsageError
from facerest_cli.io.decode import decode_image, gray_normalised
from facerest_cli.io.plan import Plan, image_output_format, plan_outputs
from facerest_cli.io.sinks import CropSaver, ImageSink, PreserveTimes
from facerest_cli.io.sources import InputItem, Skipped
from facerest_cli.report.jsonl import ReportWriter
from facerest_cli.restore.runtime import RestoreRuntime
from facerest_cli.streams import END, StoppableQueue
from facerest_cli.types import (  # noqa: F401 - Events: the scheduler's progress protocol, re-exported
    AlignedFace, BatchStage, DecodedImage, Events, FaceState, FrameRef, ImageMeta, StageSummary,
)

STAGES = ("decode", "detect", "align", "restore", "paste", "write")


# ------------------------------------------------------------------------------------------------ contracts


@dataclass(eq=False)
class Frame:
    """One picture in flight (an image file, or one frame of a video) with its faces."""

    item: InputItem
    sink: "FrameSink"
    image: DecodedImage
    faces: list[FaceState]
    index: int = 0  # frame index within its input
    last: bool = True  # last frame of its input: the sink is finished after it
    timing: Any = None  # video: presentation timestamp etc., for the sink
    error: InputError | None = None  # the input failed here (video: mid-stream); earlier frames stay ordered

    @property
    def done(self) -> bool:
        return all(f.restored is not None for f in self.faces)


class FrameSink(Protocol):
    """Where pasted frames of one input go: one image file, or one video being encoded."""

    warnings: list[str]

    def write(self, pixels: np.ndarray, frame: Frame) -> None: ...

    def finish(self) -> list[str]: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class FrameContext:
    """What a ``FrameSource`` may use from the scheduler while it produces frames (in the prepare thread)."""

    prep: FacePreparer
    clock: "StageClock"
    stopping: Callable[[], bool]
    make_frame: Callable[..., Frame]


class FrameSource(Protocol):
    """Turns one video input into frames, and opens the sink its frames go to. Images are handled here."""

    def open_sink(self, item: InputItem, target: Path) -> FrameSink: ...

    def frames(self, item: InputItem, sink: FrameSink, ctx: FrameContext) -> Iterator[Frame]: ...


class _NoEvents:
    def start(self, total: int) -> None:
        pass

    def image_done(self, path: Path, n_faces: int) -> None:
        pass

    def image_failed(self, path: Path, error: str) -> None:
        pass

    def frame_done(self, path: Path, index: int, total: int | None) -> None:
        pass


# ------------------------------------------------------------------------------------------- stage order


def check_order(stages: Sequence[BatchStage], restorer_needs: frozenset[str] = frozenset()) -> None:
    """Fail (``UsageError``) when the stages' declared contract cannot hold in this order:

    * a field the restorer needs (e.g. the 3D prior for SGPN) is provided by no stage;
    * a stage needs a field no earlier stage (nor the scheduler) provides;
    * a stage writes a field an earlier stage finalized (the identity decision would be undone).
    """
    provided = {"crop", "strength", "gray", "record", "restored", "mask"}  # set by the scheduler
    finalized: dict[str, str] = {}
    for st in stages:
        missing = set(st.needs) - provided
        if missing:
            raise UsageError(f"stage {st.name!r} needs {', '.join(sorted(missing))}, which no stage before it provides")
        clash = set(st.provides) & set(finalized)
        if clash:
            f = sorted(clash)[0]
            raise UsageError(f"stage {st.name!r} changes {f} after stage {finalized[f]!r} decided on it; "
                             f"{finalized[f]!r} must run last")
        provided |= set(st.provides)
        for f in st.finalizes:
            finalized[f] = st.name
    lacking = set(restorer_needs) - provided
    if lacking:
        raise UsageError(f"the restorer needs {', '.join(sorted(lacking))}, which no stage provides")


# ------------------------------------------------------------------------------------------------- results


class StageClock:
    """Seconds spent per stage, summed over threads (for ``facerest bench`` and the summary)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}

    def add(self, stage: str, dt: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def timed(self, stage: str) -> "_Timer":
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
    summaries: dict[str, StageSummary] = field(default_factory=dict)  # typed, by summary.json key

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return 130
        return 1 if self.failed else 0

    def add_summary(self, s: StageSummary | None) -> None:
        if s is not None:
            self.summaries[s.key] = s

    def summary_of(self, kind: type) -> Any:
        """The summary of type ``kind`` (e.g. ``IdentitySummary``), or None."""
        return next((s for s in self.summaries.values() if isinstance(s, kind)), None)


# ------------------------------------------------------------------------------------------- restore step


def overlap_split(stages: Sequence[BatchStage]) -> tuple[int, int]:
    """``(n_input, n_batch)``: the first ``n_input`` stages' ``before_restore`` may run as frames are prepared,
    and the ``after_restore`` of the stages from ``n_batch`` on as frames are written (``BatchStage``'s optional
    ``on_input`` / ``retries`` declarations; undeclared stages stay around the restorer call)."""
    n_input = 0
    while n_input < len(stages) and getattr(stages[n_input], "on_input", False):
        n_input += 1
    n_batch = len(stages)
    while n_batch > 0 and not getattr(stages[n_batch - 1], "retries", True):
        n_batch -= 1
    return n_input, n_batch


class RestoreStep:
    """One restorer call with the batch stages around it: the unit of work every engine runs (the local
    scheduler's main thread, or a Ray actor). ``before`` / ``after``: the stages whose hooks run here (default:
    all of ``stages``); the local scheduler runs the others while preparing and writing frames."""

    def __init__(self, runtime: RestoreRuntime, stages: Sequence[BatchStage], clock: StageClock | None = None, *,
                 before: Sequence[BatchStage] | None = None, after: Sequence[BatchStage] | None = None):
        self.runtime = runtime
        self.before = list(stages if before is None else before)
        self.after = list(stages if after is None else after)
        self.clock = clock or StageClock()

    def __call__(self, batch: list[FaceState]) -> list[FaceState]:
        """Restore ``batch`` in place; returns the faces to restore again (identity-guard retries), with
        ``attempt`` increased and ``restored`` cleared."""
        for st in self.before:
            with self.clock.timed(st.name):
                st.before_restore(batch)
        with self.clock.timed("restore"):
            priors = [f.prior for f in batch] if self.runtime.restorer.needs_prior else None
            keys = [f.key for f in batch] if getattr(self.runtime.restorer, "needs_keys", False) else None
            out = self.runtime.restore([f.crop for f in batch], [f.strength for f in batch], prior=priors, keys=keys)
        for f, r in zip(batch, out):
            f.restored = r
            f.record.notes.extend(self.runtime.last_notes)  # e.g. out of memory: batch halved
        retry: list[FaceState] = []
        for st in self.after:
            with self.clock.timed(st.name):
                retry += st.after_restore(batch)
        for f in retry:
            f.attempt += 1
            f.restored = None
        return retry


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
        composer: Composer | None = None,
    ):
        if preparer.detector is None and not cfg.aligned:
            raise UsageError("a detector is needed unless --aligned is given")
        self.cfg = cfg
        self.prep = preparer
        self.runtime = runtime
        self.stages = list(stages)
        check_order(self.stages, frozenset({"prior"}) if runtime.restorer.needs_prior else frozenset())
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
        # How each output is made from its frame and faces (upsampled background, --detail, --compat): blend.compose
        self.composer = composer or Composer(cfg.blend, self._feather)
        self.crops = CropSaver(cfg.output.out_dir) if cfg.output.save_crops else None
        self._input_ids: dict[InputItem, int] = {}
        # Overlap with the restorer (issue 13): the 3D prior fits as frames are prepared, and the stages after the
        # restorer (colour, parsing masks, temporal masks, identity without its guard) run as frames are written.
        n_input, n_batch = overlap_split(self.stages)
        self.on_input, self.on_write = self.stages[:n_input], self.stages[n_batch:]
        self.step = RestoreStep(runtime, self.stages, self.clock, before=self.stages[n_input:],
                                after=self.stages[:n_batch])
        self.context = FrameContext(prep=preparer, clock=self.clock, stopping=self._stop.is_set, make_frame=self.make_frame)

    # ---------------------------------------------------------------------------------------------- frames

    def image_frame(self, item: InputItem, sink: FrameSink) -> Frame:
        """Decode, detect and align one image file."""
        with self.clock.timed("decode"):
            img, gray = self.prep.source_image(*gray_normalised(decode_image(item.path, item.rel_path, self.cfg.max_pixels)))
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
                   gray: bool, *, index: int = 0, last: bool = True, timing: Any = None) -> Frame:
        ref = FrameRef(pixels=img.pixels, source=str(item.path), input_id=self._input_ids.get(item, -1),
                       index=index, kind=item.kind, content_id=img.meta.sha256)
        states = [
            FaceState(face=f, record=self.prep.record(str(item.path), f), frame=ref, strength=self.cfg.restore.strength,
                      gray=gray or is_near_gray(f.crop))
            for f in faces
        ]
        return Frame(item=item, sink=sink, image=img, faces=states, index=index, last=last, timing=timing)

    # -------------------------------------------------------------------------------------------- write stage

    def prepare_faces(self, fr: Frame) -> None:
        """The ``on_input`` stages' ``before_restore`` on a frame's faces, in the prepare thread."""
        if fr.faces:
            for st in self.on_input:
                with self.clock.timed(st.name):
                    st.before_restore(fr.faces)

    def finish_faces(self, fr: Frame) -> None:
        """The trailing non-retrying stages' ``after_restore`` on a frame's restored faces, in the write thread."""
        if not fr.faces:
            return
        for st in self.on_write:
            with self.clock.timed(st.name):
                again = st.after_restore(fr.faces)
            if again:
                raise RuntimeError(f"stage {st.name!r} declared retries=False but asked to restore faces again")

    def write_frame(self, fr: Frame, report: ReportWriter) -> None:
        with self.clock.timed("paste"):
            if self.cfg.aligned and fr.faces:
                f = fr.faces[0]
                out = compose_aligned(fr.image.pixels, f.restored, f.gray)
            else:  # a BandImage when the sink writes bands (TIFF, PNG) and the output streams (--bg-upsampler)
                out = self.composer.compose(fr.image.pixels, fr.faces, bands=getattr(fr.sink, "writes_bands", False))
        with self.clock.timed("write"):
            fr.sink.write(out, fr)
            if self.crops is not None:
                self.crops.save(fr.item.rel_path, fr.index if fr.item.kind == "video" else None, fr.faces)
            out_name = str(getattr(fr.sink, "path", ""))
            for f in fr.faces:
                f.record.output = out_name or None
            report.write([f.record for f in fr.faces])
        if isinstance(out, BandImage):  # its bands were made (upsampled, pasted) while the sink wrote them
            self.clock.add("paste", out.seconds)
            self.clock.add("write", -out.seconds)

    # ------------------------------------------------------------------------------------------------- run

    def run(self, items: Sequence[InputItem], skipped: Sequence[Skipped] = (), plan: Plan | None = None) -> RunResult:
        """Process ``items``; ``plan`` is ``plan_outputs`` of them (or of a superset) when the caller made it."""
        t0 = time.perf_counter()
        result = self.result = RunResult(seen=len(items))
        result.skipped = [Failure(str(s.path), s.reason) for s in skipped]
        plan = self.plan_outputs(items) if plan is None else plan
        self._input_ids = {it: i for i, it in enumerate(items)}
        cfg = self.cfg
        cfg.output.out_dir.mkdir(parents=True, exist_ok=True)
        self.events.start(len(items))
        q_prep = StoppableQueue(cfg.queue_size, self._stop)
        q_write = StoppableQueue(cfg.queue_size, self._stop)
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
            self._finish(threads, q_prep, q_write)
            report.close()
        result.wall_time_s = time.perf_counter() - t0
        result.stage_seconds = dict(self.clock.seconds)
        result.restore_calls = self.runtime.calls
        for st in self.stages:
            result.add_summary(st.summary())
        if self._fatal is not None:
            raise self._fatal
        return result

    def _finish(self, threads: list[threading.Thread], q_prep: StoppableQueue, q_write: StoppableQueue) -> None:
        """The writer finishes what is already restored (a few frames at most), then the threads stop. The main
        thread never blocks here without a timeout: once the restore loop is done the writer may still be busy
        (the stages after the restorer run there), and a Ctrl-C or SIGTERM delivered to another thread only
        reaches Python's handler when the main thread next runs bytecode; it then stops the run as during the loop."""
        while True:
            try:
                q_write.put(END, force=True)
                while threads[1].is_alive():
                    threads[1].join(timeout=0.1)
                break
            except KeyboardInterrupt:
                self.result.status = "interrupted"
                self._stop.set()
        self._stop.set()
        while threads[0].is_alive():
            q_prep.drain()
            threads[0].join(timeout=0.1)

    def plan_outputs(self, items: Sequence[InputItem]) -> Plan:
        return plan_outputs(items, self.cfg.output, self.cfg.video.codec)

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

    def open_image_sink(self, item: InputItem, target: Path) -> FrameSink:
        sink: FrameSink = ImageSink(target, image_output_format(item.path, self.cfg.output), self.cfg.output.jpeg_quality)
        return PreserveTimes(sink, item.path) if self.cfg.output.preserve_times else sink

    def _producer(self, items: Sequence[InputItem], plan: Plan, q_prep: StoppableQueue) -> None:
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
                try:
                    fr = self.image_frame(item, self.open_image_sink(item, target))
                    self.prepare_faces(fr)
                except Exception as e:  # noqa: BLE001 - one bad input never stops the run
                    self.fail(item.path, e)
                    continue
                q_prep.put(fr)
        except BaseException as e:  # noqa: BLE001
            self._set_fatal(e)
        finally:
            q_prep.put(END, force=True)

    def _produce_video(self, item: InputItem, target: Path, q_prep: StoppableQueue) -> None:
        if self.video is None:
            self.fail(item.path, InputError(item.path, "video input is not supported in this configuration"))
            return
        sink = None
        last: Frame | None = None
        try:
            sink = self.video.open_sink(item, target)
            if self.cfg.output.preserve_times:
                sink = PreserveTimes(sink, item.path)
            for fr in self.video.frames(item, sink, self.context):
                if self._stop.is_set():
                    return
                self.prepare_faces(fr)
                q_prep.put(fr)
                last = fr
        except Exception as e:  # noqa: BLE001
            err = e if isinstance(e, InputError) else InputError(item.path, f"{type(e).__name__}: {e}")
            if sink is None:
                self.fail(item.path, err)
                return
            # Frames already queued stay in order; this marker makes the writer abort the sink after them.
            marker = Frame(item=item, sink=sink, image=last.image if last else _EMPTY_IMAGE, faces=[],
                           index=(last.index + 1) if last else 0, last=True, error=err)
            q_prep.put(marker)

    def _writer(self, q_write: StoppableQueue, report: ReportWriter) -> None:
        result = self.result
        unfinished: FrameSink | None = None  # written to but not finished (a video): aborted if the run stops
        dead: set = set()  # sinks whose input failed mid-way (a video): the rest of its frames are dropped
        item_faces = 0  # faces written for the current input (all frames of a video)

        def fail_input(fr: Frame, err: InputError, abort: bool = True) -> None:
            nonlocal unfinished, item_faces
            if abort:
                fr.sink.abort()
            dead.add(fr.sink)
            unfinished = None
            item_faces = 0
            self.fail(fr.item.path, err)

        try:
            while True:
                fr = q_write.get()
                if fr is END:
                    return
                if self._fatal is not None or fr.sink in dead:
                    continue
                if fr.error is not None:
                    fail_input(fr, fr.error)
                    continue
                try:
                    unfinished = fr.sink
                    self.finish_faces(fr)
                    self.write_frame(fr, report)
                except InputError as e:
                    fail_input(fr, e)
                    continue
                item_faces += len(fr.faces)
                with self._lock:
                    result.faces += len(fr.faces)
                    result.frames += 1
                if fr.item.kind == "video":
                    self.events.frame_done(fr.item.path, fr.index, getattr(fr.timing, "total", None))
                if not fr.last:
                    continue
                try:
                    outs = fr.sink.finish()
                except InputError as e:  # e.g. a video's encoder failing at its final flush
                    fail_input(fr, e, abort=False)
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

    def _restore_loop(self, q_prep: StoppableQueue, q_write: StoppableQueue) -> None:
        """Gather faces across frames into batches; hand finished frames to the writer in input order."""
        pending: deque[Frame] = deque()
        todo: deque[FaceState] = deque()  # faces not yet restored
        bs = self.cfg.restore.batch_size
        ended = False
        while True:
            # Fill until a full batch is waiting, or the input is exhausted. At most bs + queue_size frames wait
            # here, so a long stretch of faceless video frames cannot pile up in memory.
            while not ended and len(todo) < bs and len(pending) < bs + self.cfg.queue_size:
                fr = q_prep.get()
                if fr is END:
                    ended = True
                    break
                pending.append(fr)
                todo.extend(fr.faces)
            if self._stop.is_set():
                return
            if todo:
                batch = [todo.popleft() for _ in range(min(bs, len(todo)))]
                for f in reversed(self.restore_batch(batch)):
                    todo.appendleft(f)
            while pending and pending[0].done:
                q_write.put(pending.popleft())
            if ended and not todo and not pending:
                return

    def restore_batch(self, batch: list[FaceState]) -> list[FaceState]:
        return self.step(batch)

    # --------------------------------------------------------------------------------------------- plumbing

    def _set_fatal(self, e: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = e
        self._stop.set()


_EMPTY_IMAGE = DecodedImage(Path(), Path(), np.zeros((1, 1, 3), np.uint8), ImageMeta(format="", bit_depth=8, channels=3))
