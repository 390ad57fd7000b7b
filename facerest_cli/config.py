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
    mask: str = "feather"  # feather | bisenet | parsenet
    upscale: int = 1
    color_fix: bool = False


@dataclass(frozen=True)
class OutputConfig:
    out_dir: Path = Path("out")
    ext: str | None = None  # None: keep the input's format
    suffix: str = ""
    save_crops: bool = False
    jpeg_quality: int = 95


@dataclass(frozen=True)
class RunConfig:
    inputs: tuple[Path, ...]
    detect: DetectConfig = field(default_factory=DetectConfig)
    restore: RestoreConfig = field(default_factory=RestoreConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    aligned: bool = False  # inputs are already-aligned SxS faces (FFHQ template)
    queue_size: int = 4  # decoded images waiting for the restorer; bounds memory with batch_size
    quiet: bool = False

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [str(p) for p in self.inputs]
        d["output"]["out_dir"] = str(self.output.out_dir)
        return d
