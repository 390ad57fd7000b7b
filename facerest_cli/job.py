"""One ``facerest run``: check weights, discover inputs, build the stages, run the pipeline, write the summary.

Library code (no Typer, no printing): the CLI calls ``run_job`` and maps its result and errors to exit codes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from facerest_cli.config import RunConfig
from facerest_cli.errors import DiskFullError, FacerestError, WeightsMissingError
from facerest_cli.restore.base import Restorer
from facerest_cli.types import BatchStage
from facerest_cli.weights.cache import WeightsConfig, WeightsStore

if TYPE_CHECKING:
    from facerest_cli.blend.compose import Composer
    from facerest_cli.registry import Execution
    from facerest_cli.pipeline import Events, RunResult


def required_weights(cfg: RunConfig, store: WeightsStore, *, restorer: bool = True) -> list[str]:
    """Every weights entry the run needs (with what they require), checked before any input is touched.
    ``restorer=False``: the caller brings its own restorer object (tests, tools)."""
    from facerest_cli.detect.registry import detector_entry
    from facerest_cli.restore.registry import restorer_weights

    names = [] if cfg.aligned else [detector_entry(cfg.detect.detector, store)]
    if restorer:
        names += restorer_weights(cfg.restore.restorer, store.registry)
    if cfg.blend.upsampling:  # --bg-upsampler (and the wdn twin --denoise-strength interpolates with)
        from facerest_cli.upsample.models import upsampler_weights

        names += upsampler_weights(cfg.blend.bg_upsampler, cfg.blend.denoise_strength, store.registry)
    if cfg.blend.compat == "gfpgan" and cfg.blend.mask == "parsenet":  # auto uses it only when installed
        names.append("parsenet")
    # SGPN and 3Diffusion require BFM09, unless the user chose the mean-face render (--sgpn-render mean-face);
    # a restorer that takes only the render (3diffusion) then needs no D3DFR coefficients either.
    skip = set()
    if cfg.prior.sgpn_render == "mean-face":
        skip.add("bfm09")
        if restorer and "coeff" not in prior_fields(cfg.restore.restorer, store):
            skip.add("d3dfr")
    out: list[str] = []
    for n in names:
        out += [e.name for e in store.closure(n) if e.name not in skip and e.name not in out]
    return out


def resolve_config(cfg: RunConfig, store: WeightsStore) -> RunConfig:
    """Settle what the options left to the machine and every engine must agree on: the restorer batch size
    (``--batch-size`` not given: the backend's measured default, ``facerest_cli.backend.batch``)."""
    if cfg.restore.batch_size is not None:
        return cfg
    from dataclasses import replace

    from facerest_cli.backend.api import BackendOptions, network_precision, resolve_backend
    from facerest_cli.backend.batch import default_batch_size
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.backend.cpu import caps_from_env
    from facerest_cli.restore.runtime import resolve_device

    device = resolve_device(cfg.restore.device)
    backend = resolve_backend(cfg.restore.backend, device)
    precision = "fp32"
    if cfg.restore.restorer != "none":
        arch = store.registry.get(cfg.restore.restorer).arch
        try:
            ac = arch_call(arch)
        except FacerestError:  # a restorer the backends do not run (the diffusion samplers)
            ac = None
        if ac is not None:
            opts = BackendOptions(cfg.restore.backend, cfg.restore.precision, device, caps_from_env())
            precision = network_precision(ac, arch, opts, backend).precision
    return replace(cfg, restore=replace(cfg.restore, batch_size=default_batch_size(backend, device, precision)))


def execution_for(cfg: RunConfig, device: str) -> "Execution":
    """How this run's networks execute: backend, precision policy, the CPU's capabilities (``FACEREST_CPU_FLAGS``
    may override them), batch."""
    from facerest_cli.backend.cpu import caps_from_env
    from facerest_cli.registry import Execution

    return Execution(device=device, backend=cfg.restore.backend, precision=cfg.restore.precision,
                     caps=caps_from_env(), max_batch=cfg.restore.batch_size or 1)


def prior_fields(restorer: str, store: WeightsStore) -> tuple[str, ...]:
    """The 3D-prior arrays a restorer takes (``ArchSpec.meta["prior"]``), without building it."""
    if restorer == "none":
        return ()
    from facerest_cli.models.registry import arch_spec

    return tuple(arch_spec(store.registry.get(restorer).arch).meta.get("prior", ()))


def run_job(
    cfg: RunConfig,
    weights: WeightsConfig,
    *,
    events: "Events | None" = None,
    restorer: Restorer | None = None,
) -> "RunResult":
    """Run the whole job. Raises ``UsageError``/``WeightsError`` (exit 2) before any image is touched."""
    if cfg.engine.kind == "ray":  # the same job on Ray Data actor pools (facerest_cli/engines/ray.py)
        from facerest_cli.engines.ray import run_ray_job

        return run_ray_job(resolve_config(cfg, WeightsStore(weights)), weights, events=events, restorer=restorer)
    store = WeightsStore(weights)
    # Every weights file is checked (or fetched) first, before the heavy imports below, so an offline machine
    # fails in a second, not mid-run.
    for name in required_weights(cfg, store, restorer=restorer is None):
        for f in store.registry.get(name).files:
            try:
                store.ensure(name, f.name)
            except WeightsMissingError as e:
                if name != "bfm09":
                    raise
                # The one licence-gated file: say what works without it.
                raise WeightsMissingError(f"{e}; or run without it: --sgpn-render mean-face renders the prior on "
                                          "3DDFA's mean-face geometry (no BFM09)") from None
    from facerest_cli.align.faces import FacePreparer
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.io.manifest import RunManifest
    from facerest_cli.io.sources import discover
    from facerest_cli.pipeline import Pipeline
    from facerest_cli.report.html import write_reports
    from facerest_cli.report.summary import build_summary, write_summary
    from facerest_cli.restore.registry import build_restorer
    from facerest_cli.restore.runtime import RestoreRuntime, resolve_device
    from facerest_cli.video.source import VideoSource

    cfg = resolve_config(cfg, store)
    items, skipped = discover(cfg.inputs, exclude=[cfg.output.out_dir])
    device = resolve_device(cfg.restore.device)
    execution = execution_for(cfg, device)
    detector = None if cfg.aligned else build_detector(cfg.detect, store, device, execution=execution)
    restorer = restorer or build_restorer(cfg.restore, store, device, execution)
    check_compat(cfg, restorer, items)
    if events is not None and hasattr(restorer, "progress") and hasattr(events, "restore_steps"):
        restorer.progress = events.restore_steps  # diffusion restorers: denoising steps of the current batch
    runtime = RestoreRuntime(restorer, device)
    composer = build_composer(cfg, store, device, restorer.size)  # loads --bg-upsampler's weights once per run
    preparer = FacePreparer(cfg, detector, restorer.size, restorer.template, restorer.name)
    out_dir = cfg.output.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    video = VideoSource(cfg, restorer.size, preparer.template)  # video inputs: decode, track, smooth, encode
    video.check(items)
    # video.stage steadies masks per face track and adds per-video stats to summary.json
    stages = build_stages(cfg, store, device, restorer, before_identity=[video.stage], execution=execution)
    manifest = RunManifest(cfg)  # which inputs are done: --resume / --skip-existing
    pipeline = Pipeline(cfg, preparer, runtime, stages=stages, video=video, events=events,
                        error_log=error_logger(out_dir / "errors.log"), on_input_done=manifest.input_done,
                        composer=composer)
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
        pipeline.result.add_summary(runtime.summary())
        from facerest_cli.registry import BackendSummary

        pipeline.result.add_summary(BackendSummary.collect(restorer, detector, *stages))
        pipeline.result.add_summary(preparer.detect_stats())  # passes, candidates, rejections by reason
        summary = build_summary(pipeline.result, cfg.to_dict(), {"device": device, "detector": cfg.detect.detector})
        try:
            write_summary(out_dir / "summary.json", summary)
            write_reports(out_dir, cfg.output.out_dir)  # report.csv + report.html, from report.jsonl
        except DiskFullError:
            if not failing:  # already stopping for a reason (disk full): keep that error
                raise
    return result


def build_stages(
    cfg: RunConfig, store: WeightsStore, device: str, restorer: Restorer, before_identity: Sequence[BatchStage] = (),
    *, execution: "Execution | None" = None,
) -> list[BatchStage]:
    """The batch stages around each restorer call, in order: their hooks run in this order. The prior comes
    first (it sets pose-adaptive strength and SGPN's prior before the restorer runs); colour, masks and
    ``before_identity`` (video mask steadying) shape the final crop; identity is last, because it finalizes that
    crop (it may send the face back for a retry or keep the original). ``pipeline.check_order`` verifies the
    stages' declared needs and provides against this order."""
    from facerest_cli.blend.color import ColorStage
    from facerest_cli.blend.parsing import build_mask_stage
    from facerest_cli.identity.stage import build_identity_stage
    from facerest_cli.prior.stage import build_prior_stage

    stages: list[BatchStage] = []
    # --compat gfpgan: GFPGANer.enhance has no pose-adaptive strength, colour stage or face-only mask, so the crops
    # go from the restorer to the official paste-back (blend.compose) untouched; the reports still run.
    own = cfg.blend.compat == "none"
    prior = build_prior_stage(cfg, store, device, restorer, execution) if own else None  # first: pose, SGPN
    if prior is not None:
        stages.append(prior)
    if own:
        stages.append(ColorStage(cfg.blend.color_fix, restorer.size))
    mask = build_mask_stage(cfg.blend.mask, store, device, restorer.size, execution) if own else None
    if mask is not None:
        stages.append(mask)
    stages.extend(before_identity)
    if hasattr(restorer, "info"):  # seeded diffusion restorers: the report says how each face was sampled
        from facerest_cli.restore.diffusion import DiffusionReportStage

        stages.append(DiffusionReportStage(restorer))  # type: ignore[arg-type]
    stages.append(build_identity_stage(cfg, store, device, execution))  # last: scores the final crops, may retry them
    return stages


def build_composer(cfg: RunConfig, store: WeightsStore, device: str, crop_size: int) -> "Composer":
    """The write step's ``blend.compose.Composer``: loads ``--bg-upsampler`` (on the restorer's device and
    precision) and, for ``--compat gfpgan``, ParseNet (``--mask parsenet``, or ``auto`` when it is installed)."""
    from facerest_cli.blend.compose import Composer
    from facerest_cli.blend.mask import feather_mask

    upsampler = None
    if cfg.blend.upsampling:
        from facerest_cli.upsample.models import load_upsampler

        dn = 0.5 if cfg.blend.denoise_strength is None else cfg.blend.denoise_strength
        upsampler = load_upsampler(cfg.blend.bg_upsampler, store, denoise_strength=dn, device=device,
                                   precision=upsampler_precision(cfg.restore.precision, device))
    parser = None
    if cfg.blend.compat == "gfpgan" and cfg.blend.mask != "feather":
        from facerest_cli.registry import build

        if cfg.blend.mask == "parsenet" or store.locate("parsenet") is not None:
            # No backend execution on purpose: --compat gfpgan reproduces GFPGAN's own paste, whose masks come
            # from ParseNet in torch fp32; a bf16 or OpenVINO parse may move a label at the mask's edge.
            parser = build("parsenet", store, device, role="parser")
    return Composer(cfg.blend, feather_mask(crop_size), upsampler, parser)


def upsampler_precision(requested: str, device: str) -> str:
    """``--precision`` for the background upsampler (the restorer's option, resolved by the backend's rules):
    ``auto`` keeps it fp32, as for networks without a measured bf16 policy (``backend.api.network_precision``);
    explicit fp16/bf16 are honoured where the device runs them."""
    from facerest_cli.backend.cpu import caps_from_env, choose_precision

    choice = choose_precision(requested, device, caps_from_env())
    return "fp32" if requested == "auto" else choice.precision


def check_compat(cfg: RunConfig, restorer: Restorer, items: Sequence) -> None:
    """``--compat gfpgan`` reproduces GFPGAN's image path: a 512 FFHQ-template restorer without a 3D prior, and no
    video inputs. Raises ``UsageError`` (exit 2) before any input is touched."""
    if cfg.blend.compat != "gfpgan":
        return
    from facerest_cli.errors import UsageError

    if restorer.size != 512 or restorer.template != "ffhq512" or restorer.needs_prior:
        raise UsageError(f"--compat gfpgan pastes 512x512 FFHQ-aligned crops as GFPGAN does; --restorer "
                         f"{restorer.name} takes {restorer.size}x{restorer.size} {restorer.template} crops"
                         f"{' and a 3D prior' if restorer.needs_prior else ''}")
    videos = [it.path for it in items if getattr(it, "kind", "image") == "video"]
    if videos:
        raise UsageError(f"--compat gfpgan reproduces GFPGAN's image pipeline; {videos[0]} is a video "
                         "(process videos without --compat)")


def error_logger(path: Path):
    """Internal errors (bugs, not bad inputs) keep their traceback in a log file, never on the console."""

    def log(text: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}\n")

    return log
