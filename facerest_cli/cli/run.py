"""``facerest run``: restore every face in images (and folders of them)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import reports_errors, role_choices
from facerest_cli.config import BlendConfig, DetectConfig, EngineConfig, IdentityConfig, OutputConfig, RestoreConfig, RunConfig, VideoConfig

_DET = "Detection"
_RES = "Restoration"
_OUT = "Output"
_WTS = "Weights"
_IDN = "Identity"
_ARC = "Archival safety"
_VID = "Video"
_3D = "3D prior"
_ENG = "Engine"


@reports_errors
def run(
    inputs: List[Path] = typer.Argument(..., help="Image and video files and/or folders (walked recursively). Videos: mp4 mov mkv avi webm m4v, recognised by content.", show_default=False),
    output: Path = typer.Option(Path("out"), "-o", "--output", help="Output folder; keeps the inputs' relative layout."),
    detector: str = typer.Option("auto", help="auto (fuses every installed family: yunet, scrfd-10g or scrfd-500m, facexlib retinaface-r50 or -mnet; yunet is fetched when none is installed) | yunet | retinaface-mnet | retinaface-mnet-1mb | retinaface-r50 | scrfd | scrfd-500m | scrfd-10g. Every detector searches every scale: a coarse pass for large faces, tiled full-resolution passes for small ones.", rich_help_panel=_DET),
    det_threshold: Optional[float] = typer.Option(None, "--det-threshold", min=0.0, max=1.0, metavar="P", help="Minimum detection score (a single detector: its own score; auto: the fused, calibrated face probability). Default: per detector, chosen on the labelled detection set (README).", rich_help_panel=_DET),
    keep_all_detections: bool = typer.Option(False, "--keep-all-detections", help="Keep candidates whose 5 landmarks are not laid out like a face, and boxes on parts of a larger face (both are otherwise rejected and counted in summary.json).", rich_help_panel=_DET),
    align_fit: str = typer.Option("lstsq", "--align-fit", help="Similarity fit of the 5 landmarks to the template: lstsq (5-point least squares; closest to the labelled landmarks' crops) | lmeds (least median of squares, as the official GFPGAN pipeline's cv2 LMEDS but deterministic: a grossly wrong landmark is ignored).", rich_help_panel=_DET),
    faces: str = typer.Option("all", help="Which faces to restore: all | largest | center.", rich_help_panel=_DET),
    min_face: float = typer.Option(0.0, "--min-face", metavar="PX", help="Ignore faces smaller than PX pixels (longer box side).", rich_help_panel=_DET),
    det_size: int = typer.Option(0, "--det-size", min=0, metavar="PX", help="The finest detection pass runs at most at this resolution (longer side); 0 = full resolution (less where the image has no finer detail, e.g. an upscaled photo). Faces too small at PX are missed; large faces are found by the coarse pass whatever PX is.", rich_help_panel=_DET),
    aligned: bool = typer.Option(False, "--aligned", help="Inputs are already-aligned square face crops (FFHQ template); skip detection.", rich_help_panel=_DET),
    restorer: str = typer.Option("gfpgan-1.4", help=f"{role_choices('restorer', ('none',))}. The default, gfpgan-1.4 (Apache-2.0), is fetched and verified on first use. 'none' pastes the aligned crops back unchanged (a geometry check).", rich_help_panel=_RES),
    strength: float = typer.Option(1.0, min=0.0, max=1.0, help="Blend restored and input crop: s*restored + (1-s)*input.", rich_help_panel=_RES),
    fidelity: float = typer.Option(0.5, min=0.0, max=1.0, help="CodeFormer fidelity w: 0 = most restoration, 1 = closest to the input.", rich_help_panel=_RES),
    steps: int = typer.Option(100, min=1, max=400, help="Diffusion restorers (difface, 3diffusion): denoising steps per face, from the official noise level. 100 is the official schedule; 20 is 5x faster, 10 is 10x (see BENCHMARKS.md for the quality cost).", rich_help_panel=_RES),
    seed: int = typer.Option(12345, help="Diffusion restorers: the run's seed. Each face's noise comes from (seed, the face's input file hash, frame and face index), so a face restores to the same pixels alone, in any batch and on --resume.", rich_help_panel=_RES),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps.", rich_help_panel=_RES),
    precision: str = typer.Option("auto", envvar="FACEREST_PRECISION", help="auto | fp32 | bf16 | fp16. auto: bf16 on CPUs with AMX or AVX512-BF16 for the networks that stay within 2e-2 of fp32 in bf16 (GFPGAN, GPEN, SGPN, the face parsers), fp32 for the others and on other CPUs and GPUs. fp16 needs a GPU.", rich_help_panel=_RES),
    backend: str = typer.Option("auto", envvar="FACEREST_BACKEND", help="auto | torch | openvino. auto: OpenVINO on the CPU (converted once, cached under $FACEREST_HOME/compiled), torch on CUDA and MPS.", rich_help_panel=_RES),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Face crops per restorer call, gathered across images. Default: 8 with OpenVINO or a GPU, 4 with torch bf16 on CPU, 1 with torch fp32 on CPU (measured: larger batches only cost memory there).", rich_help_panel=_RES),
    mask: str = typer.Option("auto", help=f"Blend mask: auto (the best installed face parser, else feather) | feather (soft crop box) | {role_choices('parser')}. Parsing masks keep the face and exclude hair, hat, neck, clothes and background.", rich_help_panel=_RES),
    detail: str = typer.Option("keep", "--detail", help="Faces larger than the restorer's crop (scans at 600+ dpi): keep (the crop supplies what it can represent, the photo keeps its finer detail: grain, pores, hair strands) | restored (the restored crop alone, upsampled). report.jsonl records which was applied per face; smaller faces are pasted the same way with either.", rich_help_panel=_RES),
    compat: str = typer.Option("none", "--compat", help="none | gfpgan: GFPGANer.enhance's paste-back, pixel for pixel, after our detection: its 8-bit cv2.imread input, LMEDS alignment, ParseNet mask with hair (when installed; else its square mask), blur, float64 blend and truncation, and its background (--bg-upsampler through RealESRGANer.enhance, tile 400, else Lanczos-4). 16-bit and alpha inputs are read as GFPGAN reads them (8-bit BGR, with a warning). README: where our defaults differ and why.", rich_help_panel=_RES),
    color_fix: bool = typer.Option(False, "--color-fix", help="Match each restored face's colour statistics to the input face's.", rich_help_panel=_RES),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the restorer (slow first batch, faster after; GPU).", rich_help_panel=_RES),
    upscale: int = typer.Option(1, min=1, max=8, help="Output scale N: the background is upscaled by --bg-upsampler (resized band by band when N differs from its scale: area when shrinking, Lanczos-4 when enlarging) or, without one, Lanczos-4; faces are pasted at the output scale.", rich_help_panel=_OUT),
    bg_upsampler: str = typer.Option("none", "--bg-upsampler", help=f"Learned background upsampler for the whole photo: none (Lanczos-4) | {role_choices('upsampler')}. Costly on CPU: realesrgan-x2 is ~9 TFLOP per input megapixel (README, 'Whole-photo restoration'); tiles are streamed to TIFF/PNG outputs, so memory does not grow with the photo.", rich_help_panel=_OUT),
    denoise_strength: Optional[float] = typer.Option(None, "--denoise-strength", min=0.0, max=1.0, metavar="DN", help="realesr-general-x4v3 only: Real-ESRGAN's weight interpolation DN*x4v3 + (1-DN)*wdn-x4v3 (default 0.5 as the official CLI; 1 needs no wdn file).", rich_help_panel=_OUT),
    tile: Optional[int] = typer.Option(None, "--tile", min=0, metavar="PX", help="--bg-upsampler tile size in input pixels (0: the whole photo at once). Default 256 (400 with --compat gfpgan, as GFPGAN's --bg_tile).", rich_help_panel=_OUT),
    tile_pad: Optional[int] = typer.Option(None, "--tile-pad", min=0, metavar="PX", help="--bg-upsampler context pixels around each tile. Default 10.", rich_help_panel=_OUT),
    pre_pad: Optional[int] = typer.Option(None, "--pre-pad", min=0, metavar="PX", help="--tiling official / --compat gfpgan: RealESRGANer's pre_pad (reflect padding at the right and bottom). Default 0, as Real-ESRGAN's and GFPGAN's scripts.", rich_help_panel=_OUT),
    tiling: str = typer.Option("blend", "--tiling", help="--bg-upsampler tiling: blend (overlapping tiles blended with a smooth window: no seams at any --tile-pad, streamed with bounded memory) | official (RealESRGANer.enhance exactly, seams included; holds the whole photo in memory as float).", rich_help_panel=_OUT),
    ext: Optional[str] = typer.Option(None, help="Output format (jpg, png, tif, bmp, webp). Default: the input's.", rich_help_panel=_OUT),
    suffix: str = typer.Option("", help="Append to output file names, e.g. _restored.", rich_help_panel=_OUT),
    quality: int = typer.Option(95, min=1, max=100, help="JPEG/WebP quality.", rich_help_panel=_OUT),
    save_crops: bool = typer.Option(False, "--save-crops", help="Also write aligned input and restored crops under OUTPUT/faces/.", rich_help_panel=_OUT),
    recognizer: str = typer.Option("auto", help=f"Face recognizer for the identity report: auto (arcface-r50 when installed, else arcface-mobilefacenet; skipped with a warning if neither can be had offline) | none | {role_choices('recognizer')}.", rich_help_panel=_IDN),
    identity_flag: float = typer.Option(0.5, "--identity-flag", metavar="T", help="Flag faces whose input-vs-restored ArcFace cosine is below T in report.jsonl/csv/html and summary.json. 0.5 suits arcface-mobilefacenet: 37 of 38 same-person photo pairs of the deepface test set score above it, no different-person pair does.", rich_help_panel=_IDN),
    min_identity: Optional[float] = typer.Option(None, "--min-identity", metavar="T", help="Identity guard (off by default; suggested 0.5): a face whose cosine is below T is redone at 0.75x then 0.5x the strength, and if still below T the original face is kept. report.jsonl lists every attempt.", rich_help_panel=_IDN),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs that OUTPUT/manifest.jsonl shows done: same input (size, mtime or SHA-256), same options, outputs present with their recorded sizes. report.jsonl and summary.json then cover old and new work.", rich_help_panel=_ARC),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped or killed run: like --skip-existing, and every earlier output's SHA-256 is verified; a torn report line or half-finished input is redone.", rich_help_panel=_ARC),
    preserve_times: bool = typer.Option(False, "--preserve-times", help="Give each output its input's modification (and access) time.", rich_help_panel=_ARC),
    max_pixels: int = typer.Option(250_000_000, "--max-pixels", min=0, metavar="N", help="Refuse images above N pixels, from the header, before decoding (decompression bombs); 0 = no limit.", rich_help_panel=_ARC),
    codec: str = typer.Option("x264", help="Video encoder: x264 (H.264, yuv420p) | x265 (H.265) | ffv1 (lossless archival master, always .mkv).", rich_help_panel=_VID),
    crf: int = typer.Option(18, min=0, max=51, help="x264/x265 constant rate factor: lower is better quality and bigger files (18 is visually lossless for H.264).", rich_help_panel=_VID),
    preset: str = typer.Option("medium", help="x264/x265 speed preset: ultrafast ... medium ... veryslow (slower = smaller file at the same quality).", rich_help_panel=_VID),
    smooth: bool = typer.Option(True, "--smooth/--no-smooth", help="Track faces across frames and smooth each track's landmarks (One-Euro filter) so the face crop does not jitter; summary.json reports the jitter.", rich_help_panel=_VID),
    redetect: float = typer.Option(0.25, min=0.0, metavar="S", help="Search the whole frame for new faces every S seconds; in between, tracked faces are re-detected only around where they were (several times faster). A lost face or a scene cut triggers a full search at once. 0 = every frame.", rich_help_panel=_VID),
    start: Optional[str] = typer.Option(None, metavar="POS", help="Process a video from POS: seconds (90, 12.5), m:s or h:m:s (1:30, 0:01:30.5) or a frame number (250f). The output starts there.", rich_help_panel=_VID),
    end: Optional[str] = typer.Option(None, metavar="POS", help="Stop before POS (same forms as --start; exclusive).", rich_help_panel=_VID),
    prior: str = typer.Option("auto", "--prior", help="3D prior (pose, landmarks, shape; needed by sgpn): auto (3ddfa-mb05 or -mb1 when installed, else fetch mb05; off if unavailable) | off | 3ddfa-mb05 | 3ddfa-mb1.", rich_help_panel=_3D),
    pose_adaptive: Optional[bool] = typer.Option(None, "--pose-adaptive/--no-pose-adaptive", help="Lower the strength on faces turned sideways (|yaw|, see --pose-knots); the applied strength is reported. Default: on when the prior runs.", rich_help_panel=_3D),
    pose_knots: Optional[str] = typer.Option(None, "--pose-knots", metavar="DEG:F,...", help="Pose-adaptive curve as DEG:FACTOR points, e.g. 30:1,75:0.3 (the default): full strength up to |yaw| 30, smoothstep down to 0.3x at 75 degrees and beyond.", rich_help_panel=_3D),
    shape_threshold: float = typer.Option(0.1, "--shape-threshold", metavar="D", help="Flag faces whose 3D shape changed by more than D (RMS of the 40 shape coefficients, input vs restored, in population std units; degraded copies of a face score < 0.1).", rich_help_panel=_3D),
    sgpn_render: str = typer.Option("bfm09", "--sgpn-render", help="The 3D face sgpn and 3diffusion are given: bfm09 (what SGPN was trained on; BFM09 is licence-gated, import it with `facerest weights import 01_MorphableModel.mat`) | mean-face (the 3DDFA mean-face geometry, shaded grey: runs without BFM09 at lower fidelity; noted in every record).", rich_help_panel=_3D),
    renderer: str = typer.Option("auto", "--renderer", help="3D renderer: auto (pytorch3d when importable, else the built-in torch rasterizer) | torch | pytorch3d.", rich_help_panel=_3D),
    engine: str = typer.Option("local", "--engine", help="local (threads in this process) | ray (Ray Data actor pools on this machine or a cluster; pip install 'facerest\\[ray]'). Same outputs, reports and exit codes; --resume works across engines.", rich_help_panel=_ENG),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", help="Attach to a running Ray cluster: auto | HOST:PORT | ray://HOST:PORT. Default: start a local Ray with this machine's CPUs and GPUs. Inputs and OUTPUT must be on a file system every node sees at the same path.", rich_help_panel=_ENG),
    ray_prep: int = typer.Option(0, "--ray-prep", min=0, metavar="N", help="CPU actors that decode, detect and align (0: as many as the CPUs left over allow).", rich_help_panel=_ENG),
    ray_restorers: int = typer.Option(0, "--ray-restorers", min=0, metavar="N", help="Restorer actors (0: one per GPU, or 1 without GPUs).", rich_help_panel=_ENG),
    ray_writers: int = typer.Option(1, "--ray-writers", min=1, metavar="N", help="CPU actors that paste back and write outputs.", rich_help_panel=_ENG),
    ray_videos: int = typer.Option(1, "--ray-videos", min=1, metavar="N", help="Videos processed at once (one actor each, with its own restorer).", rich_help_panel=_ENG),
    ray_cpus_per_prep: float = typer.Option(1.0, "--ray-cpus-per-prep", min=0.01, metavar="C", help="CPUs reserved per prep actor.", rich_help_panel=_ENG),
    ray_gpus_per_restorer: Optional[float] = typer.Option(None, "--ray-gpus-per-restorer", min=0.0, metavar="G", help="GPUs per restorer actor (fractions share a GPU). Default: 1 when the cluster has GPUs, else 0.", rich_help_panel=_ENG),
    ray_batch_images: int = typer.Option(0, "--ray-batch-images", min=0, metavar="N", help="Images whose faces one restorer task gathers (0: --batch-size).", rich_help_panel=_ENG),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first (repeatable).", rich_help_panel=_WTS),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download; fail fast if weights are missing.", rich_help_panel=_WTS),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar (failures are still printed)."),
) -> None:
    """Restore every face in the given images and videos and write the results, report.jsonl and summary.json to OUTPUT.

    Exit codes: 0 all inputs done, 1 some inputs failed (the rest are done), 2 usage or configuration error,
    3 disk full (finished outputs are complete; rerun with --resume), 130 interrupted (Ctrl-C, SIGTERM, SIGHUP).
    """
    from facerest_cli.cli._progress import RichEvents
    from facerest_cli.cli._signals import stop_on_signals
    from facerest_cli.identity.stage import IdentitySummary
    from facerest_cli.job import run_job
    from facerest_cli.prior.options import prior_config
    from facerest_cli.weights.cache import WeightsConfig

    cfg = RunConfig(
        inputs=tuple(inputs),
        detect=DetectConfig(detector=detector, faces=_choice("--faces", faces, ("all", "largest", "center")), min_face=min_face, max_side=det_size,
                            score_threshold=det_threshold, keep_all=keep_all_detections, align_fit=align_fit),
        restore=RestoreConfig(restorer=restorer, device=device, precision=_choice("--precision", precision, ("auto", "fp32", "fp16", "bf16")),
                              backend=_choice("--backend", backend, ("auto", "torch", "openvino")),
                              batch_size=batch_size, strength=strength, fidelity=fidelity, compile=compile_,
                              steps=steps, seed=seed),
        blend=BlendConfig(upscale=upscale, mask=mask, color_fix=color_fix, bg_upsampler=bg_upsampler,
                          denoise_strength=denoise_strength, tile=tile, tile_pad=tile_pad, pre_pad=pre_pad,
                          tiling=tiling, detail=detail, compat=compat),
        output=OutputConfig(out_dir=output, ext=ext, suffix=suffix, save_crops=save_crops, jpeg_quality=quality,
                            skip_existing=skip_existing, resume=resume, preserve_times=preserve_times),
        max_pixels=max_pixels,
        aligned=aligned,
        identity=IdentityConfig(recognizer=recognizer, flag_below=identity_flag, min_identity=min_identity),
        video=VideoConfig(codec=codec, crf=crf, preset=preset, smooth=smooth, redetect=redetect, start=start, end=end),
        prior=prior_config(prior, pose_adaptive, pose_knots, shape_threshold, renderer, sgpn_render=sgpn_render),
        engine=EngineConfig(kind=engine, ray_address=ray_address, ray_prep=ray_prep, ray_restorers=ray_restorers,
                            ray_writers=ray_writers, ray_videos=ray_videos, ray_cpus_per_prep=ray_cpus_per_prep,
                            ray_gpus_per_restorer=ray_gpus_per_restorer, ray_batch_images=ray_batch_images),
        quiet=quiet,
    )
    weights = WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=offline)
    with RichEvents(total=None, quiet=quiet) as events, stop_on_signals():
        result = run_job(cfg, weights, events=events)
    identity = result.summary_of(IdentitySummary)
    if identity is not None and identity.skipped:
        events.console.print(f"warning: {identity.skipped}", markup=False, highlight=False)
    if not quiet:
        events.console.print(
            f"{result.processed} of {result.seen} inputs processed, {result.faces} faces, {len(result.failed)} failed "
            f"in {result.wall_time_s:.1f}s -> {output}",
            highlight=False,
        )
    raise typer.Exit(result.exit_code)


def _choice(opt: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        from facerest_cli.errors import UsageError

        raise UsageError(f"{opt} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(run)
