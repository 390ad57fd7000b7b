"""Output planning: where each input's output goes, decided for the whole run before anything is written.

Collisions (two inputs, one output name) and outputs that would overwrite an input (the same file reached by a
symbolic link, a hard link or a case variant) are found here, up front: the first is a per-input failure, the
second a usage error (exit 2) before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from facerest_cli.config import OUTPUT_FORMATS, OutputConfig
from facerest_cli.errors import FacerestError, InputError, UsageError
from facerest_cli.io.sinks import file_identity, is_inside, output_format, output_path
from facerest_cli.io.sources import InputItem

VIDEO_CONTAINERS = (".mp4", ".mkv", ".mov", ".m4v")

Plan = dict[Path, "Path | InputError"]


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


def guess_format(path: Path) -> str:
    """The image format an input is written back in, from its extension (PNG when unknown)."""
    return OUTPUT_FORMATS.get(path.suffix.lower().lstrip("."), "PNG")


def image_output_format(path: Path, cfg: OutputConfig) -> str:
    return output_format(guess_format(path), cfg.ext)


def plan_outputs(items: Sequence[InputItem], cfg: OutputConfig, video_codec: str = "x264") -> Plan:
    """Output path per input, or the ``InputError`` that input fails with; raises ``UsageError`` when an output
    would overwrite an input."""
    inputs_resolved = {os.path.realpath(i.path) for i in items}
    inputs_folded = {p.casefold() for p in inputs_resolved}
    input_ids = {file_identity(i.path) for i in items} - {None}  # hard links, case-insensitive file systems
    plan: Plan = {}
    taken: dict[str, Path] = {}
    for it in items:
        try:
            if it.kind == "video":
                out = output_path(cfg.out_dir, it.rel_path, "VIDEO", video_extension(it.rel_path, cfg.ext, video_codec), cfg.suffix)
            else:
                out = output_path(cfg.out_dir, it.rel_path, image_output_format(it.path, cfg), cfg.ext, cfg.suffix)
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
