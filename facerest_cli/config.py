"""Frozen run options. The CLI builds one ``RunConfig``; every stage receives what it needs from it explicitly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from facerest_cli.errors import UsageError

FaceSelect = Literal["all", "largest", "center"]
Precision = Literal["fp32", "fp16", "bf16"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
OUTPUT_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "tif": "TIFF", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}


@dataclass(frozen=True)
class DetectConfig:
    detector: str = "yunet"
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    max_side: int = 2048  # detection runs at most at this resolution; landmarks are mapped back
    faces: FaceSelect = "all"
    min_face: float = 0.0  # pixels, longer box side


@dataclass(frozen=True)
class RestoreConfig:
    restorer: str = "none"
    size: int = 512
    device: str = "auto"
    precision: Precision = "fp32"
    batch_size: int = 8
    strength: float = 1.0
    fidelity: float = 0.5  # CodeFormer w
    compile: bool = False
    channels_last: bool = True


@dataclass(frozen=True)
class BlendConfig:
    mask: str = "auto"  # auto (bisenet when installed, else feather) | feather | bisenet | parsenet
    upscale: int = 1
    color_fix: bool = False


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
        from facerest_cli.identity.recognizers import check_name

        check_name(self.recognizer)
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
    aligned: bool = False  # inputs are already-aligned SxS faces (FFHQ template)
    queue_size: int = 4  # decoded images waiting for the restorer; bounds memory with batch_size
    quiet: bool = False
    max_pixels: int = 250_000_000  # --max-pixels: larger images are refused from their header; 0 = no limit

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UsageError("no inputs given")
        if self.restore.batch_size < 1:
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [str(p) for p in self.inputs]
        d["output"]["out_dir"] = str(self.output.out_dir)
        return d
