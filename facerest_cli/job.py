"""One ``facerest run``: check weights, discover inputs, build the stages, run the pipeline, write the summary.

Library code (no Typer, no printing): the CLI calls ``run_job`` and maps its result and errors to exit codes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from facerest_cli.align.faces import FacePreparer
from facerest_cli.config import RunConfig
from facerest_cli.detect.registry import detector_entry
from facerest_cli.errors import DiskFullError
from facerest_cli.io.manifest import RunManifest
from facerest_cli.io.sources import discover
from facerest_cli.pipeline import BatchStage, Events, Pipeline, RunResult
from facerest_cli.report.html import write_reports
from facerest_cli.report.summary import build_summary, write_summary
from facerest_cli.restore.base import Restorer
from facerest_cli.restore.registry import restorer_weights
from facerest_cli.weights.cache import WeightsConfig, WeightsStore


def required_weights(cfg: RunConfig, store: WeightsStore) -> list[str]:
    """Every weights entry the run needs (with what they require), checked before any input is touched."""
    names = [] if cfg.aligned else [detector_entry(cfg.detect.detector, store)]
    names += restorer_weights(cfg.restore.restorer)
    # SGPN requires BFM09, unless the user chose the mean-face render instead (--sgpn-render mean-face).
    skip = {"bfm09"} if cfg.prior.sgpn_render == "mean-face" else set()
    out: list[str] = []
    for n in names:
        out += [e.name for e in store.closure(n) if e.name not in skip and e.name not in out]
    return out


def run_job(
    cfg: RunConfig,
    weights: WeightsConfig,
    *,
    events: Events | None = None,
    restorer: Restorer | None = None,
) -> RunResult:
    """Run the whole job. Raises ``UsageError``/``WeightsError`` (exit 2) before any image is touched."""
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.restore.registry import build_restorer
    from facerest_cli.restore.runtime import RestoreRuntime, resolve_device

    store = WeightsStore(weights)
    # Every weights file is checked (or fetched) first, so an offline machine fails in a second, not mid-run.
    for name in required_weights(cfg, store):
        for f in store.registry.get(name).files:
            store.ensure(name, f.name)
    items, skipped = discover(cfg.inputs, exclude=[cfg.output.out_dir])
    device = resolve_device(cfg.restore.device)
    detector = None if cfg.aligned else build_detector(cfg.detect, store, device)
    restorer = restorer or build_restorer(cfg.restore, store, device)
    runtime = RestoreRuntime(restorer, device, cfg.restore.precision)
    preparer = FacePreparer(cfg, detector, restorer.size, restorer.template, restorer.name)
    out_dir = cfg.output.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    from facerest_cli.video.source import VideoSource

    video = VideoSource(cfg, restorer.size, preparer.template)  # video inputs: decode, track, smooth, encode
    video.check(items)
    # video.stage steadies masks per face track and adds per-video stats to summary.json
    stages = build_stages(cfg, store, device, restorer, before_identity=[video.stage])
    manifest = RunManifest(cfg)  # which inputs are done: --resume / --skip-existing
    pipeline = Pipeline(cfg, preparer, runtime, stages=stages, video=video, events=events,
                        error_log=_error_logger(out_dir / "errors.log"), on_input_done=manifest.input_done)
    plan = pipeline.plan_outputs(items)  # an output that would be an input: exit 2 before anything is written
    manifest.acquire()  # output folder lock, temp files of a killed run
    failing = False
    try:
        result = pipeline.run(manifest.todo(items), skipped, plan)
    except BaseException as e:
        failing = True
        pipeline.result.status = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped: {e}"
        raise
    finally:
        video.close()  # a video left unfinished (interrupted, failed run) loses its temp file
        manifest.close(pipeline.result)  # inputs done by an earlier run count in the summary
        pipeline.result.extra.update(runtime.summary())
        summary = build_summary(pipeline.result, cfg.to_dict(), {"device": device, "detector": cfg.detect.detector})
        try:
            write_summary(out_dir / "summary.json", summary)
            write_reports(out_dir, cfg.output.out_dir)  # report.csv + report.html, from report.jsonl
        except DiskFullError:
            if not failing:  # already stopping for a reason (disk full): keep that error
                raise
    return result


def build_stages(
    cfg: RunConfig, store: WeightsStore, device: str, restorer: Restorer, before_identity: Sequence[BatchStage] = ()
) -> list[BatchStage]:
    """The batch stages around each restorer call, in order: their hooks run in this order. The prior comes
    first (it sets pose-adaptive strength before the restorer runs); colour, masks and ``before_identity``
    (video mask steadying) shape the final crop; identity is last, because it judges that final crop and may
    send the face back for a retry or keep the original (zero mask), which nothing after it may undo."""
    from facerest_cli.blend.color import ColorStage
    from facerest_cli.blend.parsing import build_mask_stage
    from facerest_cli.identity.stage import build_identity_stage
    from facerest_cli.prior.stage import build_prior_stage

    stages: list[BatchStage] = []
    prior = build_prior_stage(cfg, store, device, restorer)  # first: pose-adaptive strength, SGPN priors
    if prior is not None:
        stages.append(prior)
    stages.append(ColorStage(cfg.blend.color_fix, restorer.size))
    mask = build_mask_stage(cfg.blend.mask, store, device, restorer.size)
    if mask is not None:
        stages.append(mask)
    stages.extend(before_identity)
    stages.append(build_identity_stage(cfg, store, device))  # last: scores the final crops, may retry them
    return stages


def _error_logger(path: Path):
    """Internal errors (bugs, not bad inputs) keep their traceback in a log file, never on the console."""

    def log(text: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}\n")

    return log
