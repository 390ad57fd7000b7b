"""``facerest degrade``'s library: degrade every input image by a recipe, reproducibly, with a sidecar per output.

Reproducibility: each image draws from its own ``np.random.Generator(PCG64)`` seeded by
``SeedSequence([seed, *sha256(relative path) as 4 x 32-bit words])``, so an image's degradation depends only on
the seed and its path relative to the input root -- not on the order, the number of other inputs or threads.
Same seed, same inputs: byte-identical PNGs and sidecars. Every random value (including the seeds of the noise
field and of motion kernels) is written to ``<output>.json``, and ``ops.apply_steps`` replays it.

Inputs: aligned square faces (resized to 512x512 first when they are another size: INTER_AREA down, INTER_CUBIC
up; recorded as ``resized_from``), or any photo with ``whole=True`` (degraded at its own size). Images are read
as 8-bit BGR (gray replicated, alpha dropped, 16-bit rounded). Outputs are PNG (lossless, so the last JPEG step
of a recipe survives as decoded), written atomically to ``OUT/<relative path>.png``; an output never replaces an
input file. With ``keep_stages`` each step's result is also written under ``OUT/.stages/<relative path>/``:
16-bit PNGs, and for a JPEG step the exact JPEG bitstream that was decoded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facerest_cli.errors import FacerestError, InputError, UsageError

ALIGNED_SIZE = 512
SIDECAR_VERSION = 1


@dataclass(frozen=True)
class DegradeOptions:
    recipe: str
    seed: int
    out_dir: Path
    whole: bool = False
    keep_stages: bool = False


@dataclass
class DegradeResult:
    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def image_rng(seed: int, rel_path: Path) -> np.random.Generator:
    digest = hashlib.sha256(Path(rel_path).as_posix().encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *words])))


def prepare_input(img: np.ndarray, path: Path, whole: bool) -> tuple[np.ndarray, list[int] | None]:
    """The image the recipe starts from, and the original size when it was resized to 512."""
    import cv2

    h, w = img.shape[:2]
    if whole:
        return img, None
    if h != w:
        raise InputError(path, f"not an aligned square face ({w}x{h}); use --whole for whole photos")
    if w == ALIGNED_SIZE:
        return img, None
    interp = cv2.INTER_AREA if w > ALIGNED_SIZE else cv2.INTER_CUBIC
    return cv2.resize(img, (ALIGNED_SIZE, ALIGNED_SIZE), interpolation=interp), [w, h]


def degrade_image(
    img: np.ndarray, recipe: str, rng: np.random.Generator,
    on_stage: Callable[[int, dict, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """uint8 BGR ``(H, W, 3)`` -> (degraded uint8 BGR of the same size, the steps drawn)."""
    from facerest_cli.degrade import ops, recipes

    steps = recipes.draw(recipe, rng, img.shape[1], img.shape[0])
    return ops.apply_steps(img, steps, on_stage), steps


def replay(sidecar: dict[str, Any], clean: np.ndarray) -> np.ndarray:
    """Re-run a sidecar's recorded steps on the clean image it started from (after its 512 resize, if any)."""
    from facerest_cli.degrade import ops

    return ops.apply_steps(clean, sidecar["steps"])


def _png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img, [int(cv2.IMWRITE_PNG_COMPRESSION), 6])
    if not ok:
        raise FacerestError("PNG encoding failed")
    return buf.tobytes()


def _apply_with_stages(img: np.ndarray, steps: list[dict], stage_dir: Path) -> np.ndarray:
    """``ops.apply_steps`` that also writes each step's result under ``stage_dir``."""
    from facerest_cli.degrade import ops
    from facerest_cli.io.sinks import atomic_write_bytes

    x = ops.to_float(img)
    for i, step in enumerate(steps):
        name = f"{i:02d}_{step['op']}"
        if step["op"] == "jpeg":
            # The encoder is deterministic: these are the bytes the step decodes (ops.jpeg encodes the same way).
            atomic_write_bytes(stage_dir / f"{name}.jpg", ops.jpeg_bytes(x, int(step["quality"])))
        x = ops.apply_step(x, step)
        if step["op"] != "jpeg":
            u16 = np.clip(np.rint(x * 65535.0), 0, 65535).astype(np.uint16)
            atomic_write_bytes(stage_dir / f"{name}.png", _png(u16))
    return ops.to_uint8(x)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_paths(out_dir: Path, rel: Path) -> tuple[Path, Path]:
    rel = Path(rel)
    if rel.is_absolute() or ".." in rel.parts:
        raise UsageError(f"refusing output path outside the output folder: {rel}")
    png = out_dir / rel.with_suffix(".png")
    return png, png.with_suffix(".json")


def degrade_files(inputs: Sequence[Path], opts: DegradeOptions, *,
                  on_start: Callable[[int], None] | None = None,
                  on_done: Callable[[Path], None] | None = None,
                  on_failure: Callable[[str], None] | None = None) -> DegradeResult:
    """Degrade every image under ``inputs`` into ``opts.out_dir``; a bad input is reported and skipped."""
    from facerest_cli.degrade import recipes
    from facerest_cli.io.sinks import atomic_write_bytes, file_identity
    from facerest_cli.io.sources import discover
    from facerest_cli.metrics.evaluate import load_bgr8

    recipes.check_recipe(opts.recipe)
    out_dir = Path(opts.out_dir)
    items, skipped = discover(inputs, exclude=[out_dir])
    items = [it for it in items if it.kind == "image"]
    input_ids = {file_identity(it.path) for it in items} - {None}
    result = DegradeResult()
    fail = on_failure or (lambda line: None)
    for s in skipped:
        line = f"{s.path}: {s.reason}"
        result.failed.append(line)
        fail(line)
    if on_start is not None:
        on_start(len(items))
    claimed: dict[Path, Path] = {}
    for it in items:
        try:
            png, sidecar = output_paths(out_dir, it.rel_path)
            if png in claimed:
                raise InputError(it.path, f"its output {png} is already taken by {claimed[png]}")
            if file_identity(png) in input_ids or file_identity(sidecar) in input_ids:
                raise InputError(it.path, f"its output {png} would overwrite an input file; choose another -o folder")
            claimed[png] = it.path
            img, resized_from = prepare_input(load_bgr8(it.path), it.path, opts.whole)
            rng = image_rng(opts.seed, it.rel_path)
            if opts.keep_stages:
                steps = recipes.draw(opts.recipe, rng, img.shape[1], img.shape[0])
                out = _apply_with_stages(img, steps, out_dir / ".stages" / it.rel_path.with_suffix(""))
            else:
                out, steps = degrade_image(img, opts.recipe, rng)
            meta = {
                "facerest_degrade": SIDECAR_VERSION,
                "input": it.rel_path.as_posix(),
                "input_sha256": _sha256(it.path),
                "output": png.name,
                "recipe": opts.recipe,
                "source": recipes.source(opts.recipe),
                "seed": int(opts.seed),
                "rng": "PCG64(SeedSequence([seed, *sha256(input path) as 4 little-endian uint32]))",
                "whole": bool(opts.whole),
                "resized_from": resized_from,
                "size": [int(img.shape[1]), int(img.shape[0])],
                "steps": steps,
            }
            atomic_write_bytes(png, _png(out))
            atomic_write_bytes(sidecar, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
            result.written.append(png)
        except InputError as e:  # this file only; disk-full and other run-level errors stop the run
            line = str(e)
            result.failed.append(line)
            fail(line)
        if on_done is not None:
            on_done(it.path)
    return result
