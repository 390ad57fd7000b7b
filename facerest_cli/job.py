"""One ``facerest run``: check weights, discover inputs, build the stages, run the pipeline, write the summary.

Library code (no Typer, no printing): the CLI calls ``run_job`` and maps its result and errors to exit codes.
"""

from __future__ import annotations

import time
from pathlib import Path

from facerest_cli.align.faces import FacePreparer
from facerest_cli.config import RunConfig
from facerest_cli.detect.registry import detector_entry
from facerest_cli.io.sources import discover
from facerest_cli.pipeline import Events, Pipeline, RunResult
from facerest_cli.report.summary import build_summary, write_summary
from facerest_cli.restore.base import Restorer
from facerest_cli.restore.registry import restorer_weights
from facerest_cli.weights.cache import WeightsConfig, WeightsStore


def required_weights(cfg: RunConfig, store: WeightsStore | None = None) -> list[str]:
    names = [] if cfg.aligned else [detector_entry(cfg.detect.detector, store)]
    names += restorer_weights(cfg.restore.restorer)
    return names


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
        store.ensure_all(name)
    items, skipped = discover(cfg.inputs, exclude=[cfg.output.out_dir])
    device = resolve_device(cfg.restore.device)
    detector = None if cfg.aligned else build_detector(cfg.detect, store, device)
    restorer = restorer or build_restorer(cfg.restore, store, device)
    runtime = RestoreRuntime(restorer, device, cfg.restore.precision)
    preparer = FacePreparer(cfg, detector, restorer.size, restorer.template, restorer.name)
    out_dir = cfg.output.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(cfg, preparer, runtime, events=events, error_log=_error_logger(out_dir / "errors.log"))
    try:
        result = pipeline.run(items, skipped)
    except BaseException as e:
        pipeline.result.status = "interrupted" if isinstance(e, KeyboardInterrupt) else f"stopped: {e}"
        raise
    finally:
        summary = build_summary(pipeline.result, cfg.to_dict(), {"device": device, "detector": cfg.detect.detector})
        write_summary(out_dir / "summary.json", summary)
    return result


def _error_logger(path: Path):
    """Internal errors (bugs, not bad inputs) keep their traceback in a log file, never on the console."""

    def log(text: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}\n")

    return log
