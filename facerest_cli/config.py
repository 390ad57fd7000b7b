"""Frozen run options. The CLI builds one ``RunConfig``; every stage receives what it needs from it explicitly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from facerest_cli.errors import UsageError

FaceSelect = Literal["all", "largest", "center"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
OUTPUT_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}


@dataclass(frozen=True)
class DetectConfig:
    """Detection and alignment options (``facerest_cli.detect``, ``facerest_cli.align``)."""

    detector: str = "auto"  # auto: every installed network fused (detect/registry.py AUTO_FAMILIES) | a name
    score_threshold: float | None = None  # --det-threshold; None: the detector's default (detect/calibration.py)
    nms_threshold: float = 0.4
    # --det-size: the finest pyramid level runs at most at this resolution (longer side); 0 = full resolution
    # (less where the image holds no finer detail). Coarse levels for large faces run whatever it is.
    max_side: int = 0
    faces: FaceSelect = "all"
    min_face: float = 0.0  # pixels, longer box side
    keep_all: bool = False  # --keep-all-detections: no layout check, no part-of-a-larger-face rule
    min_eye_distance: float = 3.0  # pixels: eyes closer than this are a degenerate box (rejected, counted)
    # --align-fit: lstsq (5-point least squares) | lmeds (drops one grossly wrong landmark). lstsq is the default:
    # on the labelled set its crops lie closer to those of the labelled landmarks (/work/notes/detect_results.md).
    align_fit: str = "lstsq"

    def __post_init__(self) -> None:
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise UsageError(f"--det-threshold must be from 0 to 1, got {self.score_threshold}")
        if self.max_side < 0:
            raise UsageError(f"--det-size must be >= 0 (0 = full resolution), got {self.max_side}")
        if self.align_fit not in ("lmeds", "lstsq"):
            raise UsageError(f"--align-fit must be lmeds or lstsq, got {self.align_fit!r}")


@dataclass(frozen=True)
class RestoreConfig:
    restorer: str = "gfpgan-1.4"  # the default restores (Apache-2.0); "none" pastes crops back unchanged
    size: int = 512
    device: str = "auto"
    precision: Precision = "auto"  # auto: bf16 on CPUs with AMX/AVX512_BF16 where a network's policy allows it
    batch_size: int | None = None  # None: the backend's default (facerest_cli.backend.batch), resolved by the job
    backend: str = "auto"  # auto (OpenVINO on CPU when installed, else torch) | torch | openvino
    strength: float = 1.0
    fidelity: float = 0.5  # CodeFormer w
    compile: bool = False
    channels_last: bool = True
    steps: int = 100  # diffusion restorers: UNet calls per face (the official 100; fewer are faster and coarser)
    seed: int = 12345  # diffusion restorers: each face's noise is drawn from (seed, the face's key)


DETAIL_MODES = ("keep", "restored")
TILING_MODES = ("blend", "official")
COMPAT_MODES = ("none", "gfpgan")


@dataclass(frozen=True)
class BlendConfig:
    """Paste-back and the whole-photo output (``facerest_cli.blend.compose``). ``None`` options mean "not given":
    their defaults depend on other options (``tile``: 400 with ``--compat gfpgan`` as GFPGAN's ``--bg_tile``, else
    256), and giving them where they cannot apply is a usage error rather than silently ignored."""

    mask: str = "auto"  # auto (bisenet when installed, else feather) | feather | bisenet | parsenet
    upscale: int = 1
    color_fix: bool = False
    bg_upsampler: str = "none"  # --bg-upsampler: none | a weights.toml entry of role "upsampler" (checked by the job)
    denoise_strength: float | None = None  # realesr-general-x4v3 only; None: the official 0.5
    tile: int | None = None  # input pixels per tile side (0: the whole image in one call)
    tile_pad: int | None = None  # context pixels around each tile; None: 10
    pre_pad: int | None = None  # --tiling official / --compat gfpgan only: RealESRGANer's pre_pad; None: 0
    tiling: str = "blend"  # blend (overlapping tiles, smooth window, streamed) | official (RealESRGANer.enhance)
    detail: str = "keep"  # keep (faces larger than the crop keep the frame's finer detail) | restored
    compat: str = "none"  # none | gfpgan (GFPGANer.enhance's paste-back path, pixel for pixel)

    def __post_init__(self) -> None:
        for opt, v, allowed in (("--tiling", self.tiling, TILING_MODES), ("--detail", self.detail, DETAIL_MODES),
                                ("--compat", self.compat, COMPAT_MODES)):
            if v not in allowed:
                raise UsageError(f"{opt} must be one of {', '.join(allowed)}; got {v!r}")
        upsampling = self.bg_upsampler != "none"
        if not upsampling:
            given = [o for o, v in (("--denoise-strength", self.denoise_strength), ("--tile", self.tile),
                                    ("--tile-pad", self.tile_pad), ("--pre-pad", self.pre_pad)) if v is not None]
            if self.tiling != "blend":
                given.append("--tiling")
            if given:
                raise UsageError(f"{', '.join(given)} only apply with --bg-upsampler NAME")
        if self.denoise_strength is not None and not 0.0 <= self.denoise_strength <= 1.0:
            raise UsageError(f"--denoise-strength must be from 0 to 1, got {self.denoise_strength}")
        if self.tile is not None and (self.tile < 0 or 0 < self.tile < 8):
            raise UsageError(f"--tile must be 0 (the whole image at once) or at least 8 pixels, got {self.tile}")
        for opt, v in (("--tile-pad", self.tile_pad), ("--pre-pad", self.pre_pad)):
            if v is not None and v < 0:
                raise UsageError(f"{opt} must be >= 0, got {v}")
        if self.pre_pad is not None and self.tiling == "blend" and self.compat == "none":
            raise UsageError("--pre-pad applies to --tiling official (and --compat gfpgan) only: the blended tiler "
                             "needs no padding at the image border")
        if self.compat == "gfpgan":
            if self.tiling != "blend":
                raise UsageError("--compat gfpgan already uses RealESRGANer.enhance for the background; drop --tiling")
            if self.color_fix:
                raise UsageError("--compat gfpgan reproduces GFPGAN, which has no colour fix; drop --color-fix")
            if self.mask not in ("auto", "parsenet", "feather"):
                raise UsageError(f"--compat gfpgan pastes with GFPGAN's masks: --mask auto (parsenet when installed, "
                                 f"else the square mask), parsenet or feather (the square mask); got {self.mask!r}")

    @property
    def upsampling(self) -> bool:
        return self.bg_upsampler != "none"

    @property
    def tile_size(self) -> int:
        if self.tile is not None:
            return self.tile
        return 400 if self.compat == "gfpgan" else 256

    @property
    def tile_context(self) -> int:
        return 10 if self.tile_pad is None else self.tile_pad

    @property
    def pre_padding(self) -> int:
        return 0 if self.pre_pad is None else self.pre_pad


@dataclass(frozen=True)
class OutputConfig:
    out_dir: Path = Path("out")
    ext: str | None = None  # None: keep the input's format
    suffix: str = ""
    save_crops: bool = False
    jpeg_quality: int = 95
    skip_existing: bool = False  # skip inputs the manifest shows complete (outputs exist with their sizes)
    resume: bool = False  # as skip_existing, and every output's SHA-256 is checked (facerest_cli.io.manifest)
    preserve_times: bool = False  # outputs get their input's access/modification times

    def __post_init__(self) -> None:
        if any(c in self.suffix for c in "/\\\0") or ".." in self.suffix:
            raise UsageError(f"--suffix must not contain path separators or '..', got {self.suffix!r}")

    @property
    def incremental(self) -> bool:
        """Earlier complete work in the output folder is kept (report.jsonl is appended to, not restarted)."""
        return self.skip_existing or self.resume


VIDEO_CODECS = ("x264", "x265", "ffv1")
VIDEO_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


@dataclass(frozen=True)
class VideoConfig:
    codec: str = "x264"  # x264 | x265 | ffv1 (lossless)
    crf: int = 18
    preset: str = "medium"
    smooth: bool = True  # One-Euro smoothing of each face track's landmarks (--no-smooth)
    redetect: float = 0.25  # seconds between whole-frame detections; tracked faces are found in between (0 = every frame)
    start: str | None = None  # time or frame (250f); see facerest_cli.video.ranges
    end: str | None = None  # exclusive

    def __post_init__(self) -> None:
        from facerest_cli.video.ranges import parse_range

        if self.codec not in VIDEO_CODECS:
            raise UsageError(f"--codec must be one of {', '.join(VIDEO_CODECS)}; got {self.codec!r}")
        if not 0 <= self.crf <= 51:
            raise UsageError(f"--crf must be from 0 to 51; got {self.crf}")
        if self.preset not in VIDEO_PRESETS:
            raise UsageError(f"--preset must be one of {', '.join(VIDEO_PRESETS)}; got {self.preset!r}")
        parse_range(self.start, self.end)
        if not self.redetect >= 0:
            raise UsageError(f"--redetect must be >= 0 seconds; got {self.redetect}")


@dataclass(frozen=True)
class IdentityConfig:
    """Identity report and guard (``facerest_cli.identity``). Cosines are ArcFace similarities, input vs restored."""

    recognizer: str = "auto"  # auto (arcface-r50 if installed, else arcface-mobilefacenet) | none | an entry name
    flag_below: float = 0.5  # report: flag faces below this cosine (the suggested value: identity/stage.py)
    min_identity: float | None = None  # guard: retry below this at lower strength, then keep the original face
    retry_factors: tuple[float, ...] = (0.75, 0.5)  # guard retries: these fractions of the requested strength

    def __post_init__(self) -> None:
        # The recognizer name is checked against the registry (which may hold a user's models) when the run builds it.
        for opt, v in (("--identity-flag", self.flag_below), ("--min-identity", self.min_identity)):
            if v is not None and not -1.0 <= v <= 1.0:
                raise UsageError(f"{opt} must be a cosine from -1 to 1, got {v}")
        if any(not 0.0 < f < 1.0 for f in self.retry_factors) or list(self.retry_factors) != sorted(self.retry_factors, reverse=True):
            raise UsageError(f"identity retry factors must decrease within (0, 1), got {self.retry_factors}")


@dataclass(frozen=True)
class PriorConfig:
    """3D prior stage (``facerest_cli.prior``): pose and landmarks, pose-adaptive strength, shape consistency."""

    prior: str = "auto"  # auto (3ddfa-mb05 or -mb1 if installed, else fetch mb05; off if unavailable) | off | 3ddfa-mb05 | 3ddfa-mb1
    pose_adaptive: bool | None = None  # None: on whenever the prior runs
    pose_knots: tuple[tuple[float, float], ...] = ((30.0, 1.0), (75.0, 0.3))  # (|yaw| degrees, strength factor)
    shape_check: bool = True
    shape_threshold: float = 0.1  # flag shape distance above this (calibration: facerest_cli/prior/__init__.py)
    renderer: str = "auto"  # auto | torch | pytorch3d
    # SGPN's 3D input: "bfm09" (what it was trained on; BFM09 must be imported) or "mean-face" (the 3DDFA mean-face
    # geometry, shaded grey: runs without BFM09, at a quality SGPN was not trained for; every record notes it).
    sgpn_render: str = "bfm09"

    def __post_init__(self) -> None:
        from facerest_cli.prior.pose import check_knots

        if self.sgpn_render not in ("bfm09", "mean-face"):
            raise UsageError(f"--sgpn-render must be bfm09 or mean-face; got {self.sgpn_render!r}")

        if self.prior not in ("auto", "off", "3ddfa-mb05", "3ddfa-mb1"):
            raise UsageError(f"--prior must be one of auto, off, 3ddfa-mb05, 3ddfa-mb1; got {self.prior!r}")
        try:
            check_knots(self.pose_knots)
        except ValueError as e:
            raise UsageError(f"--pose-knots: {e}") from None
        if self.shape_threshold <= 0:
            raise UsageError(f"--shape-threshold must be > 0, got {self.shape_threshold}")
        if self.renderer not in ("auto", "torch", "pytorch3d"):
            raise UsageError(f"--renderer must be one of auto, torch, pytorch3d; got {self.renderer!r}")


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs the job (``facerest_cli.engines``) and how Ray sizes its actor pools. No option here
    changes an output byte (they are neutral in ``io.manifest``): outputs of either engine count as done for
    ``--resume`` with the other. Pool sizes of 0 mean "choose from the cluster's resources"."""

    kind: str = "local"  # --engine local | ray
    ray_address: str | None = None  # --ray-address: None starts a local Ray; "auto" | "HOST:PORT" | "ray://HOST:PORT"
    ray_prep: int = 0  # --ray-prep: CPU actors that decode, detect and align (0: the CPUs left over, at least 1)
    ray_restorers: int = 0  # --ray-restorers: restorer actors (0: one per GPU, or 1 without GPUs)
    ray_writers: int = 1  # --ray-writers: CPU actors that paste back and write outputs
    ray_videos: int = 1  # --ray-videos: videos processed at once (each runs the streaming video pipeline)
    ray_cpus_per_prep: float = 1.0  # --ray-cpus-per-prep: CPUs reserved per prep actor (its torch/OpenCV threads)
    ray_gpus_per_restorer: float | None = None  # --ray-gpus-per-restorer: None: 1 when the cluster has GPUs, else 0
    ray_batch_images: int = 0  # --ray-batch-images: images per restorer task (0: --batch-size)

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}; got {self.kind!r}")
        for opt, v in (("--ray-prep", self.ray_prep), ("--ray-restorers", self.ray_restorers),
                       ("--ray-batch-images", self.ray_batch_images)):
            if v < 0:
                raise UsageError(f"{opt} must be >= 0 (0 = automatic), got {v}")
        for opt, v in (("--ray-writers", self.ray_writers), ("--ray-videos", self.ray_videos)):
            if v < 1:
                raise UsageError(f"{opt} must be >= 1, got {v}")
        if self.ray_cpus_per_prep <= 0:
            raise UsageError(f"--ray-cpus-per-prep must be > 0, got {self.ray_cpus_per_prep}")
        if self.ray_gpus_per_restorer is not None and self.ray_gpus_per_restorer < 0:
            raise UsageError(f"--ray-gpus-per-restorer must be >= 0, got {self.ray_gpus_per_restorer}")


@dataclass(frozen=True)
class RunConfig:
    inputs: tuple[Path, ...]
    detect: DetectConfig = field(default_factory=DetectConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)  # --engine local | ray and Ray's pools
    aligned: bool = False  # inputs are already-aligned SxS faces (FFHQ template)
    queue_size: int = 4  # decoded images waiting for the restorer; bounds memory with batch_size
    quiet: bool = False
    max_pixels: int = 250_000_000  # --max-pixels: larger images are refused from their header; 0 = no limit

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UsageError("no inputs given")
        if self.restore.batch_size is not None and self.restore.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.restore.batch_size}")
        if not 0.0 <= self.restore.strength <= 1.0:
            raise UsageError(f"--strength must be in [0, 1], got {self.restore.strength}")
        if not 0.0 <= self.restore.fidelity <= 1.0:
            raise UsageError(f"--fidelity must be in [0, 1], got {self.restore.fidelity}")
        if self.blend.upscale < 1 or self.blend.upscale > 8:
            raise UsageError(f"--upscale must be an integer from 1 to 8, got {self.blend.upscale}")
        if self.output.ext is not None and self.output.ext.lower().lstrip(".") not in OUTPUT_FORMATS:
            raise UsageError(f"--ext must be one of {', '.join(sorted(OUTPUT_FORMATS))}, got {self.output.ext!r}")
        if self.queue_size < 1:
            raise UsageError(f"queue size must be >= 1, got {self.queue_size}")
        if self.detect.min_face < 0:
            raise UsageError(f"--min-face must be >= 0, got {self.detect.min_face}")
        if self.max_pixels < 0:
            raise UsageError(f"--max-pixels must be >= 0 (0 = no limit), got {self.max_pixels}")
        # whole-photo options (blend.compose)
        if self.aligned and (self.blend.upsampling or self.blend.compat != "none"):
            raise UsageError("--aligned writes the restored crop itself: --bg-upsampler and --compat do not apply")
        if self.engine.kind != "local" and (self.blend.upsampling or self.blend.compat != "none"):
            raise UsageError("--bg-upsampler and --compat run with --engine local only (for now)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [str(p) for p in self.inputs]
        d["output"]["out_dir"] = str(self.output.out_dir)
        return d
