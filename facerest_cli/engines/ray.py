"""``facerest run --engine ray``: the local engine's job as a Ray Data pipeline on actor pools.

::

    driver: discover inputs, plan outputs (io/plan.py), manifest (--skip-existing / --resume)
      │ images (one row each)                                 │ videos (one row each)
      ▼                                                       ▼
    _Prepare (CPU actors): decode, detect, align            _Video (actors): the local streaming Pipeline on
      │ row: frame pixels + one FaceState per face            one video (decode → restore → encode into OUT)
      ▼                                                       │
    _Restore (GPU, or CPU, actors): RestoreStep over the       │
      │ faces of several images (prior, colour, masks,        │
      │ identity), guard retries looped inside the task       │
      ▼                                                       │
    _Write (CPU actors): paste (blend.paste), atomic write    │
      │ with the run's sinks (PreserveTimes, CropSaver)       │
      ▼ row: report lines, outputs, warnings, stage tallies   ▼
    driver: report.jsonl + manifest.jsonl (durable appends, once per input), summary.json + report.html at the end

Ray Data does the scheduling: ``map_batches`` with callable classes on fixed-size actor pools, streaming execution
and its object-store backpressure (each row reports the bytes its arrays hold through ``__sizeof__``, which is
what Ray Data budgets blocks by). Rows are inputs, not faces, so a frame's faces stay together for paste-back; the
restorer actor gathers the faces of ``--ray-batch-images`` images into calls of ``--batch-size`` crops.

Outputs are the local engine's, byte for byte: the same decode/detect/align code (``Pipeline.image_frame``), the
same stages (``job.build_stages``) around the same restorer call (``pipeline.RestoreStep``), the same paste and
sinks. Network outputs do not depend on which faces share a batch (``tests/engines`` checks this on CPU), so
batching faces differently from the local scheduler changes no byte.

Faults: Ray Data's actor pools restart a killed actor and retry its tasks (their defaults: ``max_restarts=-1``,
``max_task_retries=-1`` for system errors; our own exceptions are never retried); a retried
task rewrites the same outputs atomically, and the driver writes each input's report lines and manifest line once
(a row delivered twice is dropped), so a killed worker costs time only. Temp files a killed worker left are
removed at the end. An input that fails (decode, write) becomes a failure row with the local engine's one-line
reason; any other error stops the run, as in the local engine.

Stage summaries: each actor hands over its stages' tallies (``take_tally``) per task and the driver merges them,
so summary.json counts are the local engine's.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import numpy as np

from facerest_cli.config import EngineConfig, RunConfig
from facerest_cli.errors import FacerestError, UsageError

if TYPE_CHECKING:
    from facerest_cli.io.sources import InputItem
    from facerest_cli.pipeline import Events, RunResult
    from facerest_cli.restore.base import Restorer
    from facerest_cli.types import DecodedImage, FaceState
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

COLUMN = "row"  # the one column of every block: a ``_Row`` object per input
WRITER_CPUS = 0.5  # paste + encode: lighter than detection; logical CPUs reserved per writer actor


# ---------------------------------------------------------------------------------------------------- rows


@dataclass
class _Stats:
    """What one task did, for summary.json: stage seconds, restorer calls, out-of-memory events, stage tallies."""

    seconds: dict[str, float] = field(default_factory=dict)
    restore_calls: int = 0
    oom_events: int = 0
    oom_batch: int | None = None
    tallies: dict[str, Any] = field(default_factory=dict)
    device: str | None = None


@dataclass(eq=False)
class _Row:
    """One input on its way through the operators (an object in a pandas block's ``COLUMN``).

    Filled by the stages in turn: ``image``/``faces`` by prepare, ``faces[*].restored``/``mask`` by restore;
    write replaces the arrays by ``lines`` (report.jsonl bytes), ``outputs`` and ``warnings``."""

    index: int  # position of the input in this run's work list
    item: "InputItem"
    target: Path
    image: "DecodedImage | None" = None
    faces: "list[FaceState]" = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (path, one-line reason), as the local engine reports it
    errors: list[str] = field(default_factory=list)  # tracebacks of internal errors, for errors.log
    stats: list[_Stats] = field(default_factory=list)
    lines: bytes = b""
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_faces: int = 0
    frames: int = 0
    processed: bool = False
    videos: list[dict[str, Any]] = field(default_factory=list)  # summary.json ``videos`` entries (video rows)
    sizes: dict[str, int] = field(default_factory=dict)  # measured array bytes leaving prepare / restore

    def __sizeof__(self) -> int:
        # Ray Data sizes pandas object columns with sys.getsizeof: count the arrays, so its object-store budget
        # (backpressure) sees a 100-megapixel frame as the 300 MB it is.
        return object.__sizeof__(self) + array_bytes(self) + len(self.lines)


def array_bytes(row: _Row) -> int:
    """Bytes of the numpy arrays a row carries (each array once: the faces share their frame's pixels)."""
    seen: set[int] = set()
    total = 0

    def add(a: Any) -> None:
        nonlocal total
        if isinstance(a, np.ndarray) and id(a) not in seen:
            seen.add(id(a))
            total += a.nbytes

    if row.image is not None:
        add(row.image.pixels)
    for f in row.faces:
        add(f.frame.pixels)
        add(f.face.crop)
        add(f.restored)
        add(f.mask)
        if f.prior is not None:
            for v in getattr(f.prior, "__dict__", {}).values():
                add(v)
    return total


def _work_items(rows: list[_Row]) -> list[dict[str, Any]]:
    """The dataset's input blocks: plain columns (Arrow-friendly), so a million inputs cost the driver little."""
    return [{"index": r.index, "path": str(r.item.path), "rel": str(r.item.rel_path), "kind": r.item.kind,
             "target": str(r.target)} for r in rows]


def _work_rows(batch) -> list[_Row]:
    """Input block -> fresh rows (a retried task starts from nothing)."""
    from facerest_cli.io.sources import InputItem

    return [_Row(index=int(i), item=InputItem(Path(p), Path(rel), kind), target=Path(t))
            for i, p, rel, kind, t in zip(batch["index"], batch["path"], batch["rel"], batch["kind"], batch["target"])]


def _frame(rows: Iterable[_Row]):
    import pandas as pd

    return pd.DataFrame({COLUMN: list(rows)})


def _rows(batch) -> list[_Row]:
    return list(batch[COLUMN])


def _take_tallies(stages) -> dict[str, Any]:
    """Each stage's tally of the faces since the last call (stages without one keep no per-face counts)."""
    return {st.name: st.take_tally() for st in stages if callable(getattr(st, "take_tally", None))}


def _detect_tally(prep) -> dict[str, Any]:
    """Detection's counts since the last call (summary.json ``detection``), summed on the driver like a stage's."""
    take = getattr(prep.detector, "take_stats", None)
    return {"detection": take()} if callable(take) else {}


def _seconds(clock) -> dict[str, float]:
    return {k: v for k, v in clock.seconds.items() if v}


def _restore_stats(runtime, calls: int, ooms: int, clock, stages) -> _Stats:
    return _Stats(seconds=_seconds(clock), restore_calls=runtime.calls - calls, oom_events=runtime.oom_events - ooms,
                  oom_batch=runtime.max_batch, tallies=_take_tallies(stages), device=str(runtime.device))


# -------------------------------------------------------------------------------------------------- actors


def _worker_setup(cwd: str, threads: tuple[int, int]) -> None:
    """Each actor is a process of its own: give it the driver's working directory (inputs and OUT as the user gave
    them, relative paths included, so records name them as the local engine does) and the local engine's torch
    and OpenCV thread counts. CPU kernels split and sum their work by thread count (oneDNN convolutions, OpenCV's
    warps): the same counts give the same bytes, where Ray would give each actor its CPU reservation's count."""
    import cv2
    import torch

    os.chdir(cwd)
    torch.set_num_threads(threads[0])
    cv2.setNumThreads(threads[1])


def local_threads() -> tuple[int, int]:
    """(torch, OpenCV) threads the local engine uses in this process (their defaults where not loaded yet)."""
    import sys

    n = os.cpu_count() or 1
    torch, cv2 = sys.modules.get("torch"), sys.modules.get("cv2")
    return (int(torch.get_num_threads()) if torch is not None else n, int(cv2.getNumThreads()) if cv2 is not None else n)


@dataclass(frozen=True)
class _Facts:
    """What the driver and CPU actors need to know of the restorer without loading it."""

    name: str
    size: int
    template: str
    needs_prior: bool = False


class _Prepare:
    """CPU actor: decode, detect and align one image per call, with the local scheduler's own code."""

    def __init__(self, cfg: RunConfig, weights: "WeightsConfig", facts: _Facts, cwd: str, threads: tuple[int, int]):
        _worker_setup(cwd, threads)
        from facerest_cli.align.faces import FacePreparer
        from facerest_cli.detect.registry import build_detector
        from facerest_cli.pipeline import Pipeline
        from facerest_cli.restore.base import Passthrough
        from facerest_cli.restore.runtime import RestoreRuntime
        from facerest_cli.weights.cache import WeightsStore

        from facerest_cli.job import execution_for

        store = WeightsStore(weights)
        detector = None if cfg.aligned else build_detector(cfg.detect, store, "cpu", execution=execution_for(cfg, "cpu"))
        prep = FacePreparer(cfg, detector, facts.size, facts.template, facts.name)
        self.errors: list[str] = []
        # Only its image_frame (decode, detect, align, FaceStates) and fail (one-line reasons) are used.
        self.pipeline = Pipeline(cfg, prep, RestoreRuntime(Passthrough(facts.size), "cpu"), error_log=self.errors.append)

    def __call__(self, batch):
        rows = _work_rows(batch)
        for row in rows:
            clock = self.pipeline.clock
            before = dict(clock.seconds)
            try:
                fr = self.pipeline.image_frame(row.item, None)
            except Exception as e:  # noqa: BLE001 - one bad input never stops the run
                self.pipeline.fail(row.item.path, e)
                f = self.pipeline.result.failed.pop()
                row.failure = (f.path, f.error)
                row.errors, self.errors[:] = list(self.errors), []
            else:
                row.image = fr.image
                if fr.faces:  # the input's number in this run (the local scheduler's FrameRef.input_id)
                    ref = replace(fr.faces[0].frame, input_id=row.index)
                    for f in fr.faces:
                        f.frame = ref
                row.faces = fr.faces
            row.stats.append(_Stats(seconds={k: v - before.get(k, 0.0) for k, v in clock.seconds.items() if v - before.get(k, 0.0)},
                                    tallies=_detect_tally(self.pipeline.prep)))
            row.sizes["prepared"] = array_bytes(row)
            row.sizes["frame"] = row.image.pixels.nbytes if row.image is not None else 0
        return _frame(rows)


class _Restore:
    """Restorer actor (a GPU each when there are GPUs): the batch stages around the restorer, as the local engine
    runs them (``RestoreStep``), on the faces of several images; identity-guard retries rejoin the queue of this
    task until none is left."""

    def __init__(self, cfg: RunConfig, weights: "WeightsConfig", restorer: "Restorer | None", cwd: str, threads: tuple[int, int]):
        _worker_setup(cwd, threads)
        from facerest_cli.job import build_stages, execution_for
        from facerest_cli.pipeline import check_order
        from facerest_cli.restore.registry import build_restorer
        from facerest_cli.restore.runtime import RestoreRuntime, resolve_device
        from facerest_cli.video.source import TemporalStage
        from facerest_cli.video.stats import VideoReport
        from facerest_cli.weights.cache import WeightsStore

        store = WeightsStore(weights)
        device = resolve_device(cfg.restore.device)
        # The same backend and precision as the local engine, so both give the same pixels.
        execution = execution_for(cfg, device)
        restorer = restorer or build_restorer(cfg.restore, store, device, execution)
        self.runtime = RestoreRuntime(restorer, device)
        # The same stage list as the local engine (its temporal stage leaves image faces alone).
        self.stages = build_stages(cfg, store, device, restorer, before_identity=[TemporalStage(VideoReport())],
                                   execution=execution)
        check_order(self.stages, frozenset({"prior"}) if restorer.needs_prior else frozenset())
        self.batch_size = cfg.restore.batch_size

    def __call__(self, batch):
        from facerest_cli.pipeline import RestoreStep, StageClock

        rows = _rows(batch)
        clock = StageClock()
        step = RestoreStep(self.runtime, self.stages, clock)
        calls, ooms = self.runtime.calls, self.runtime.oom_events
        todo: deque = deque(f for r in rows for f in r.faces)
        while todo:
            chunk = [todo.popleft() for _ in range(min(self.batch_size, len(todo)))]
            for f in reversed(step(chunk)):  # guard retries go first, as in the local scheduler
                todo.appendleft(f)
        # The task's counts travel on its first row: a task's rows reach the driver together, once.
        rows[0].stats.append(_restore_stats(self.runtime, calls, ooms, clock, self.stages))
        for r in rows:
            r.sizes["restored"] = array_bytes(r)
        return _frame(rows)


class _Write:
    """CPU actor: paste the restored faces back and write the output atomically: the local engine's own write
    step (``Pipeline.write_frame``: the run's composer with --upscale/--detail/--bg-upsampler/--compat, its sinks,
    --save-crops), with report lines captured for the driver instead of appended here."""

    def __init__(self, cfg: RunConfig, weights: "WeightsConfig", facts: _Facts, cwd: str, threads: tuple[int, int]):
        _worker_setup(cwd, threads)
        from facerest_cli.align.faces import FacePreparer
        from facerest_cli.job import build_composer
        from facerest_cli.pipeline import Pipeline
        from facerest_cli.restore.base import Passthrough
        from facerest_cli.restore.runtime import RestoreRuntime, resolve_device
        from facerest_cli.weights.cache import WeightsStore

        store = WeightsStore(weights)
        composer = build_composer(cfg, store, resolve_device(cfg.restore.device), facts.size)
        # The Pipeline wants a detector unless --aligned; this one only writes, it never detects.
        prep = FacePreparer(cfg, _NoDetector(), facts.size, facts.template, facts.name)
        self.pipeline = Pipeline(cfg, prep, RestoreRuntime(Passthrough(facts.size), "cpu"), composer=composer)

    def __call__(self, batch):
        from facerest_cli.errors import InputError

        rows = _rows(batch)
        for row in rows:
            if row.failure is None:
                clock = self.pipeline.clock
                before = dict(clock.seconds)
                try:
                    self._write(row)
                except InputError as e:  # e.g. the encoder refused the image: this input fails, the run goes on
                    row.failure = (str(row.item.path), e.reason)
                row.stats.append(_Stats(seconds={k: v - before.get(k, 0.0) for k, v in clock.seconds.items()
                                                 if v - before.get(k, 0.0)}))
            row.image, row.faces = None, []  # the driver needs none of the pixels
        return _frame(rows)

    def _write(self, row: _Row) -> None:
        from facerest_cli.pipeline import Frame

        assert row.image is not None
        sink = self.pipeline.open_image_sink(row.item, row.target)
        fr = Frame(item=row.item, sink=sink, image=row.image, faces=row.faces)
        lines = _Lines()
        self.pipeline.write_frame(fr, lines)  # type: ignore[arg-type]
        row.lines = lines.data
        row.outputs = sink.finish()
        row.warnings = [*fr.image.meta.warnings, *sink.warnings]
        row.n_faces, row.frames, row.processed = len(fr.faces), 1, True


class _NoDetector:
    name = "none"


class _Lines:
    """Stands in for the ``ReportWriter`` of the local write step: the lines, as it would append them."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, records) -> None:
        from facerest_cli.report.jsonl import record_to_json

        self.data += "".join(record_to_json(r) + "\n" for r in records).encode("utf-8")


class _TemporalSlot:
    """The temporal stage's place in the stage list of a video actor, pointing at the current video's stage
    (``VideoSource.stage``): the models of the other stages are loaded once, each video gets fresh track state."""

    name = "temporal"
    retries = False

    def __init__(self) -> None:
        from facerest_cli.video.source import TemporalStage

        self.needs, self.provides, self.finalizes = TemporalStage.needs, TemporalStage.provides, TemporalStage.finalizes
        self.target: Any = None

    def before_restore(self, faces) -> None:
        self.target.before_restore(faces)

    def after_restore(self, faces):
        return self.target.after_restore(faces)

    def summary(self):
        return self.target.summary() if self.target is not None else None


class _Video:
    """Actor running the local streaming pipeline on one video per call (decode, track, restore, encode into OUT);
    its report lines are handed to the driver, which alone writes report.jsonl."""

    def __init__(self, cfg: RunConfig, weights: "WeightsConfig", restorer: "Restorer | None", cwd: str, threads: tuple[int, int]):
        _worker_setup(cwd, threads)
        from facerest_cli.align.faces import FacePreparer
        from facerest_cli.detect.registry import build_detector
        from facerest_cli.job import build_composer, build_stages, execution_for
        from facerest_cli.restore.registry import build_restorer
        from facerest_cli.restore.runtime import RestoreRuntime, resolve_device
        from facerest_cli.weights.cache import WeightsStore

        store = WeightsStore(weights)
        device = resolve_device(cfg.restore.device)
        self.cfg = cfg
        execution = execution_for(cfg, device)
        self.restorer = restorer or build_restorer(cfg.restore, store, device, execution)
        self.runtime = RestoreRuntime(self.restorer, device)
        detector = None if cfg.aligned else build_detector(cfg.detect, store, device, execution=execution)
        self.prep = FacePreparer(cfg, detector, self.restorer.size, self.restorer.template, self.restorer.name)
        self.slot = _TemporalSlot()
        self.stages = build_stages(cfg, store, device, self.restorer, before_identity=[self.slot], execution=execution)
        self.composer = build_composer(cfg, store, device, self.restorer.size)

    def __call__(self, batch):
        rows = _work_rows(batch)
        for row in rows:
            self._run(row)
        return _frame(rows)

    def _run(self, row: _Row) -> None:
        from facerest_cli.io.sinks import CropSaver
        from facerest_cli.pipeline import Pipeline
        from facerest_cli.video.source import VideoSource

        cfg = self.cfg
        tmp = Path(tempfile.mkdtemp(prefix="facerest-ray-video-"))
        try:
            # The inner run's report.jsonl goes to a private folder (the driver appends its lines to OUT's);
            # the video itself goes to its planned target in OUT, thumbnails and crops to OUT too.
            vcfg = replace(cfg, output=replace(cfg.output, out_dir=tmp, skip_existing=False, resume=False))
            video = VideoSource(vcfg, self.restorer.size, self.prep.template)
            self.slot.target = video.stage
            errors: list[str] = []
            pipe = Pipeline(vcfg, self.prep, self.runtime, stages=self.stages, video=video, error_log=errors.append,
                            composer=self.composer)
            if cfg.output.save_crops:
                pipe.crops = CropSaver(cfg.output.out_dir)  # crops beside the images', under OUT/faces
            calls, ooms = self.runtime.calls, self.runtime.oom_events
            try:
                res = pipe.run([row.item], (), {row.item.path: row.target})
            finally:
                video.close()
            report = tmp / "report.jsonl"
            row.lines = report.read_bytes() if report.exists() else b""
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if res.failed:
            row.failure = (res.failed[0].path, res.failed[0].error)
        row.errors = errors
        row.outputs, row.processed = list(res.outputs), res.processed > 0
        row.warnings = [w["warning"] for w in res.warnings]
        row.n_faces, row.frames = res.faces, res.frames
        videos = res.summaries.get("videos")
        row.videos = list(videos.videos) if videos is not None else []
        st = _Stats(seconds={k: v for k, v in res.stage_seconds.items() if v}, restore_calls=self.runtime.calls - calls,
                    oom_events=self.runtime.oom_events - ooms, oom_batch=self.runtime.max_batch,
                    tallies={**_take_tallies(self.stages), **_detect_tally(self.prep)}, device=str(self.runtime.device))
        row.stats.append(st)


# ------------------------------------------------------------------------------------------- cluster, pools


@dataclass(frozen=True)
class Pools:
    """Actor pools and the resources each actor reserves (``--ray-*`` options resolved against the cluster)."""

    prep: int
    prep_cpus: float
    restorers: int
    restorer_cpus: float
    restorer_gpus: float
    writers: int
    writer_cpus: float
    videos: int
    video_cpus: float
    batch_images: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_pools(eng: EngineConfig, cpus: float, gpus: float, *, videos: int, images: int, batch_size: int) -> Pools:
    """Pool sizes for a cluster of ``cpus`` CPUs and ``gpus`` GPUs. Restorers: one per GPU (``--ray-restorers``),
    each with ``--ray-gpus-per-restorer`` GPUs (1 when there are GPUs) and one CPU; writers: ``--ray-writers``,
    half a CPU each; video actors: ``--ray-videos`` (at most one per video), each like a restorer; prep actors:
    ``--ray-prep``, else as many as the CPUs left over allow (at least one). Where the pools ask for more CPUs
    than there are (a laptop), every reservation is scaled down to fit: Ray reservations are logical, the actors
    then share the cores the way the local engine's threads do."""
    gpu_each = eng.ray_gpus_per_restorer if eng.ray_gpus_per_restorer is not None else (1.0 if gpus >= 1 else 0.0)
    if gpu_each > gpus:
        raise UsageError(f"--ray-gpus-per-restorer {gpu_each:g}: the Ray cluster has {gpus:g} GPUs")
    restorers = eng.ray_restorers or (max(1, int(gpus // gpu_each)) if gpu_each > 0 else 1)
    restorers = restorers if images else 0
    n_videos = min(eng.ray_videos, videos)
    writers = eng.ray_writers if images else 0
    fixed = restorers * 1.0 + writers * WRITER_CPUS + n_videos * 1.0
    if eng.ray_prep:
        prep = eng.ray_prep
    else:
        prep = max(1, int((cpus - fixed) // eng.ray_cpus_per_prep)) if images else 0
    prep = prep if images else 0
    gpu_need = (restorers + n_videos) * gpu_each
    if gpu_need > gpus + 1e-9:
        raise UsageError(f"{restorers + n_videos} restorer and video actors x {gpu_each:g} GPUs: the Ray cluster has "
                         f"{gpus:g} GPUs (--ray-restorers, --ray-videos, --ray-gpus-per-restorer)")
    want = fixed + prep * eng.ray_cpus_per_prep
    scale = min(1.0, cpus / want) if want > 0 and cpus > 0 else 1.0
    if cpus <= 0:
        raise UsageError("the Ray cluster has no CPUs")

    def r(x: float) -> float:
        return round(x * scale, 3)

    return Pools(prep=prep, prep_cpus=r(eng.ray_cpus_per_prep), restorers=restorers, restorer_cpus=r(1.0),
                 restorer_gpus=gpu_each, writers=writers, writer_cpus=r(WRITER_CPUS), videos=n_videos,
                 video_cpus=r(1.0), batch_images=eng.ray_batch_images or batch_size)


class RaySession:
    """Ray for one run: attaches to ``--ray-address`` (or to a Ray this process already started, e.g. a test's),
    else starts a local instance with this machine's CPUs and GPUs, stopped again by ``close``."""

    def __init__(self, eng: EngineConfig):
        try:
            import ray
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'facerest[ray]'") from None
        self.started = False
        self.address = eng.ray_address or "local"
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}
            try:
                if eng.ray_address:
                    ray.init(address=eng.ray_address, **kw)
                else:
                    ray.init(include_dashboard=False, **kw)
                    self.started = True
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UsageError(f"--ray-address {eng.ray_address}: cannot connect to Ray ({str(e).splitlines()[0]})") from None
        res = ray.cluster_resources()
        self.cpus = float(res.get("CPU", 0.0))
        self.gpus = float(res.get("GPU", 0.0))

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


def cluster_info(address: str | None) -> dict[str, Any]:
    """For ``facerest doctor``: the resources Ray sees at ``address`` (None: what a local instance would have,
    without starting one)."""
    import ray

    if address is None:
        return {"address": None, "CPU": os.cpu_count()}
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    try:
        res = ray.cluster_resources()
        return {"address": address, "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                **{k: v for k, v in sorted(res.items()) if not k.startswith("node:") and "memory" not in k}}
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class RaySummary:
    """summary.json ``ray``: where the run ran, its pools, and the object-store bytes its rows carried."""

    key: ClassVar[str] = "ray"
    address: str
    cluster: dict[str, float]
    pools: dict[str, Any]
    object_store: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Driver:
    """Takes finished rows, in any order, and does what the local writer thread does once per input."""

    def __init__(self, cfg: RunConfig, result: "RunResult", manifest, events: "Events", error_log):
        self.cfg = cfg
        self.result = result
        self.manifest = manifest
        self.events = events
        self.error_log = error_log
        self.path = Path(cfg.output.out_dir) / "report.jsonl"
        # As ReportWriter: appended to with --skip-existing/--resume, else started afresh; unbuffered.
        self._report = open(self.path, "ab" if cfg.output.incremental else "wb", buffering=0)
        self.done: set[int] = set()
        self.failures: dict[int, Any] = {}
        self.tallies: dict[str, Any] = {}
        self.videos: dict[int, list[dict[str, Any]]] = {}
        self.seconds: dict[str, float] = {}
        self.calls = 0
        self.oom_events = 0
        self.oom_batch: int | None = None
        self.device: str | None = None
        self.sizes = {"inputs": 0, "faces": 0, "frame": 0, "prepared": 0, "restored": 0}

    def fail(self, index: int, path: str, reason: str) -> None:
        from facerest_cli.pipeline import Failure

        self.failures[index] = Failure(path, reason)
        self.events.image_failed(Path(path), f"{path}: {reason}")

    def accept(self, row: _Row) -> None:
        from facerest_cli.io.sinks import durable_append

        if row.index in self.done:  # delivered twice (a task retried after it had finished): already counted
            return
        self.done.add(row.index)
        for st in row.stats:
            self._merge(st)
        for text in row.errors:
            self.error_log(text)
        if row.item.kind == "image" and row.failure is None and "prepared" in row.sizes:
            self.sizes["inputs"] += 1
            self.sizes["faces"] += row.n_faces
            for k in ("frame", "prepared", "restored"):
                self.sizes[k] += row.sizes.get(k, 0)
        if row.lines:  # a failed video keeps the lines of the frames it wrote, as in the local engine
            durable_append(self._report, row.lines, self.path)
        if row.videos:
            self.videos[row.index] = row.videos
        result = self.result
        result.faces += row.n_faces
        result.frames += row.frames
        if row.failure is not None:
            self.fail(row.index, *row.failure)
            return
        self.manifest.input_done(_Done(row.item, row.warnings), row.outputs)
        result.processed += 1
        result.outputs.extend(row.outputs)
        result.warnings.extend({"path": str(row.item.path), "warning": w} for w in row.warnings)
        self.events.image_done(row.item.path, row.n_faces)

    def _merge(self, st: _Stats) -> None:
        for k, v in st.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        self.calls += st.restore_calls
        self.oom_events += st.oom_events
        if st.oom_events and st.oom_batch is not None:
            self.oom_batch = st.oom_batch if self.oom_batch is None else min(self.oom_batch, st.oom_batch)
        self.device = self.device or st.device
        for name, t in st.tallies.items():
            if name in self.tallies:
                self.tallies[name].merge(t)
            else:
                self.tallies[name] = t

    def close(self) -> None:
        if not self._report.closed:
            self._report.close()

    def finish(self, pools: Pools, session: RaySession) -> None:
        """Everything per-run into the result: failures in input order, stage seconds, merged summaries."""
        from facerest_cli.restore.runtime import OutOfMemorySummary
        from facerest_cli.video.source import VideosSummary

        r = self.result
        r.failed.extend(self.failures[i] for i in sorted(self.failures))
        from facerest_cli.pipeline import STAGES

        r.stage_seconds = {**{s: 0.0 for s in STAGES}, **self.seconds}
        r.restore_calls = self.calls
        for t in self.tallies.values():
            r.add_summary(t.summary())
        if self.videos:
            r.add_summary(VideosSummary([v for i in sorted(self.videos) for v in self.videos[i]]))
        if self.oom_events:
            r.add_summary(OutOfMemorySummary(events=self.oom_events, batch_size_after=self.oom_batch))
        z = self.sizes
        n_in, n_f = z["inputs"], z["faces"]
        # Bytes of the arrays in the rows leaving prepare (frame + crops) and restore (+ restored crops, masks,
        # priors), per image and per face; what the driver receives back is report lines only.
        store = {
            "images": n_in, "faces": n_f, "frame_bytes": z["frame"], "prepared_bytes": z["prepared"],
            "restored_bytes": z["restored"],
            "frame_bytes_per_image": round(z["frame"] / n_in) if n_in else None,
            "prepared_bytes_per_face": round((z["prepared"] - z["frame"]) / n_f) if n_f else None,
            "restored_bytes_per_face": round((z["restored"] - z["frame"]) / n_f) if n_f else None,
        }
        r.add_summary(RaySummary(address=session.address, cluster={"CPU": session.cpus, "GPU": session.gpus},
                                 pools=pools.to_json(), object_store=store))


@dataclass
class _Done:
    """What ``RunManifest.input_done`` reads of a finished input (the local engine passes its last Frame)."""

    item: "InputItem"
    warnings: list[str]

    @property
    def image(self):
        from types import SimpleNamespace

        return SimpleNamespace(meta=SimpleNamespace(warnings=()))

    @property
    def sink(self):
        from types import SimpleNamespace

        return SimpleNamespace(warnings=self.warnings)


def _facts(cfg: RunConfig, store: "WeightsStore", restorer: "Restorer | None") -> _Facts:
    """The restorer's name, crop side and template from its weights.toml entry (nothing is loaded on the driver)."""
    if restorer is not None:
        return _Facts(restorer.name, restorer.size, restorer.template, bool(getattr(restorer, "needs_prior", False)))
    from facerest_cli.restore.registry import restorer_weights

    name = cfg.restore.restorer
    restorer_weights(name, store.registry)  # an unknown --restorer: UsageError before anything runs
    if name == "none":
        from facerest_cli.restore.base import Passthrough

        p = Passthrough(cfg.restore.size)
        return _Facts(p.name, p.size, p.template)
    from facerest_cli.registry import ModelSpec

    entry = store.registry.get(name)
    meta = getattr(ModelSpec.from_entry(entry).arch_spec, "meta", None) or {}
    return _Facts(name, entry.input.size or 512, entry.template or "ffhq512", bool(meta.get("prior")))


def _unwrap(e: BaseException) -> BaseException:
    """The facerest error (usage, disk full, weights...) behind a Ray task or actor error, else ``e``."""
    seen = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (FacerestError, KeyboardInterrupt)):
            return cur
        nxt = getattr(cur, "cause", None)
        cur = nxt if isinstance(nxt, BaseException) else (cur.__cause__ or cur.__context__)
    return e


def run_ray_job(cfg: RunConfig, weights: "WeightsConfig", *, events: "Events | None" = None,
                restorer: "Restorer | None" = None) -> "RunResult":
    """``job.run_job`` for ``--engine ray``: the same checks, manifest, report and summary, the work on Ray."""
    from facerest_cli.io.plan import plan_outputs
    from facerest_cli.io.sources import discover
    from facerest_cli.job import check_compat, required_weights
    from facerest_cli.pipeline import _NoEvents
    from facerest_cli.video.source import VideoSource
    from facerest_cli.weights.cache import WeightsStore

    events = events or _NoEvents()
    store = WeightsStore(weights)
    # Every weights file is checked (or fetched) here first, so workers on a shared cache find them.
    for name in required_weights(cfg, store, restorer=restorer is None):
        for f in store.registry.get(name).files:
            store.ensure(name, f.name)
    facts = _facts(cfg, store, restorer)
    items, skipped = discover(cfg.inputs, exclude=[cfg.output.out_dir])
    check_compat(cfg, facts, items)  # --compat gfpgan's restorer and input limits: exit 2 now
    VideoSource(cfg).check(items)
    plan = plan_outputs(items, cfg.output, cfg.video.codec)  # an output that would be an input: exit 2 now
    session = RaySession(cfg.engine)
    try:
        return _run(cfg, weights, restorer, facts, items, skipped, plan, session, events)
    finally:
        session.close()


def _run(cfg, weights, restorer, facts, items, skipped, plan, session: RaySession, events) -> "RunResult":
    from facerest_cli.errors import DiskFullError, InputError
    from facerest_cli.io.manifest import RunManifest, remove_stale_temps
    from facerest_cli.job import error_logger
    from facerest_cli.pipeline import Failure, RunResult
    from facerest_cli.report.html import write_reports
    from facerest_cli.report.summary import build_summary, write_summary

    out_dir = cfg.output.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = RunManifest(cfg)
    result = RunResult()
    driver = None
    pools = plan_pools(cfg.engine, session.cpus, session.gpus, videos=0, images=0, batch_size=cfg.restore.batch_size)
    manifest.acquire()  # output folder lock, temp files of a killed run
    failing = False
    try:
        todo = manifest.todo(items)
        t0 = time.perf_counter()
        result.seen = len(todo)
        result.skipped = [Failure(str(s.path), s.reason) for s in skipped]
        driver = _Driver(cfg, result, manifest, events, error_logger(out_dir / "errors.log"))
        events.start(len(todo))
        rows: dict[str, list[_Row]] = {"image": [], "video": []}
        for i, it in enumerate(todo):
            target = plan.get(it.path)
            if isinstance(target, InputError):
                driver.fail(i, str(it.path), target.reason)
            else:
                rows[it.kind].append(_Row(index=i, item=it, target=target))
        pools = plan_pools(cfg.engine, session.cpus, session.gpus, videos=len(rows["video"]),
                           images=len(rows["image"]), batch_size=cfg.restore.batch_size)
        try:
            _execute(cfg, weights, restorer, facts, pools, rows, driver)
        except KeyboardInterrupt:
            result.status = "interrupted"
        result.wall_time_s = time.perf_counter() - t0
        remove_stale_temps(out_dir)  # a worker killed mid-write left its hidden temp file
    except BaseException as e:
        failing = True
        result.status = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped: {e}"
        raise
    finally:
        if driver is not None:
            driver.close()
            driver.finish(pools, session)
        manifest.close(result)  # inputs done by an earlier run count in the summary
        device = (driver.device if driver is not None else None) or cfg.restore.device
        summary = build_summary(result, cfg.to_dict(), {"device": device, "detector": cfg.detect.detector})
        try:
            write_summary(out_dir / "summary.json", summary)
            write_reports(out_dir, cfg.output.out_dir)  # report.csv + report.html, from report.jsonl
        except DiskFullError:
            if not failing:
                raise
    return result


def _execute(cfg: RunConfig, weights: "WeightsConfig", restorer: "Restorer | None", facts: _Facts, pools: Pools,
             rows: dict[str, list[_Row]], driver: _Driver) -> None:
    """Build the Ray Data pipeline and stream its rows into ``driver``."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Never re-run a task for an exception our code raised (a bad input is a failure row, anything else is a bug
    # or a full disk that must stop the run); worker deaths are system errors, which Ray retries.
    ctx.actor_task_retry_on_errors = False
    # Rows hold Python objects (FaceStates with numpy arrays): keep pandas blocks, which Ray serialises with
    # out-of-band buffers, rather than pickling every row into an Arrow column.
    ctx.batch_to_block_arrow_format = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no execution-plan chatter on the console
    cwd = os.getcwd()
    threads = local_threads()
    parts = []
    if rows["image"]:
        # Blocks of row ids, one per image (prep actors work in parallel); the actors hold the work list.
        # Built on the driver (no read tasks: the actor pools may hold every CPU of a small machine).
        ds = ray.data.from_items(_work_items(rows["image"]), override_num_blocks=len(rows["image"]))
        ds = ds.map_batches(_Prepare, batch_size=1, batch_format="pandas", compute=ActorPoolStrategy(size=pools.prep),
                            num_cpus=pools.prep_cpus, fn_constructor_kwargs={"cfg": cfg, "weights": weights,
                                                                             "facts": facts, "cwd": cwd, "threads": threads})
        ds = ds.map_batches(_Restore, batch_size=pools.batch_images, batch_format="pandas",
                            compute=ActorPoolStrategy(size=pools.restorers), num_cpus=pools.restorer_cpus,
                            num_gpus=pools.restorer_gpus or None,
                            fn_constructor_kwargs={"cfg": cfg, "weights": weights, "restorer": restorer, "cwd": cwd,
                                                   "threads": threads})
        ds = ds.map_batches(_Write, batch_size=1, batch_format="pandas", compute=ActorPoolStrategy(size=pools.writers),
                            num_cpus=pools.writer_cpus, fn_constructor_kwargs={"cfg": cfg, "weights": weights, "facts": facts,
                                                                                 "cwd": cwd, "threads": threads})
        parts.append(ds)
    if rows["video"]:
        vds = ray.data.from_items(_work_items(rows["video"]), override_num_blocks=len(rows["video"]))
        vds = vds.map_batches(_Video, batch_size=1, batch_format="pandas", compute=ActorPoolStrategy(size=pools.videos),
                              num_cpus=pools.video_cpus, num_gpus=pools.restorer_gpus or None,
                              fn_constructor_kwargs={"cfg": cfg, "weights": weights, "restorer": restorer, "cwd": cwd,
                                                   "threads": threads})
        parts.append(vds)
    if not parts:
        return
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
            for row in _rows(batch):
                driver.accept(row)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a facerest error inside a worker is re-raised as itself
        cause = _unwrap(e)
        if cause is e:
            raise
        raise cause from None
