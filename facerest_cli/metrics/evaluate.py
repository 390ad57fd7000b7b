"""``facerest eval``'s library: score a folder of restored faces, paired with references by relative path.

``evaluate(options, store)`` streams the pairs in batches (bounded memory: one batch of images, per-image rows
of floats, and FID's ``O(d^2)`` running statistics), computes each selected metric group, and returns an
``EvalResult`` with per-image values, means, FID and the columns that were skipped (with the reason and the
exact ``facerest weights fetch`` command). Weights are never downloaded here: a missing metric network only
skips its column. All networks run in float32 (TF32 off on CUDA), on ``options.device``.

Metric groups (``--metrics``) and their columns:

========== ====================== ========= =============================================
group      columns                reference weights
========== ====================== ========= =============================================
psnr       psnr, psnr_y           yes       --
ssim       ssim, ssim_y           yes       --
lpips-vgg  lpips_vgg              yes       lpips-vgg
lpips-alex lpips_alex             yes       lpips-alex
niqe       niqe                   no        niqe-params
fid        (set-level) fid        folder or fid-inception
                                  stats
identity   id_cos, id_deg         yes       the recognizer (arcface-mobilefacenet)
lmd        lmd                    yes       the 3DDFA regressor (3ddfa-mb05) + bfm-sparse68
shape      shape                  yes       as lmd
========== ====================== ========= =============================================
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from facerest_cli.errors import InputError, UsageError

if TYPE_CHECKING:
    from facerest_cli.weights.cache import WeightsStore

GROUPS: dict[str, tuple[str, ...]] = {
    "psnr": ("psnr", "psnr_y"),
    "ssim": ("ssim", "ssim_y"),
    "lpips-vgg": ("lpips_vgg",),
    "lpips-alex": ("lpips_alex",),
    "niqe": ("niqe",),
    "fid": (),
    "identity": ("id_cos", "id_deg"),
    "lmd": ("lmd",),
    "shape": ("shape",),
}
ALIASES = {"lpips": ("lpips-vgg", "lpips-alex"), "all": tuple(GROUPS)}
NEEDS_PAIRS = frozenset({"psnr", "ssim", "lpips-vgg", "lpips-alex", "identity", "lmd", "shape"})
# True: higher is better. Used for the arrows of the tables.
HIGHER_IS_BETTER = {"psnr": True, "psnr_y": True, "ssim": True, "ssim_y": True, "lpips_vgg": False,
                    "lpips_alex": False, "niqe": False, "fid": False, "id_cos": True, "id_deg": False,
                    "lmd": False, "shape": False}
FID_MIN_IMAGES = 2048  # below the feature dimension the covariance is singular: FID is then only indicative


@dataclass(frozen=True)
class EvalOptions:
    """What to score. ``metrics``: group names (``GROUPS``) or aliases (``lpips``, ``all``)."""

    restored: Path
    reference: Path | None = None
    fid_stats: Path | None = None
    save_fid_stats: Path | None = None
    metrics: tuple[str, ...] = ("all",)
    device: str = "cpu"
    batch_size: int = 8
    crop_border: int = 0
    recognizer: str = "arcface-mobilefacenet"
    landmarks: str = "3ddfa-mb05"


@dataclass
class EvalResult:
    """Per-image ``rows`` (``path`` + column values; ``None`` where not computed), ``means`` per column,
    ``fid`` (``None`` when not computed), ``skipped`` (group -> reason), ``failed`` (one line per input that
    could not be scored), ``models`` (what computed each group) and ``notes``."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)
    fid: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": len(self.rows),
            "columns": self.columns,
            "means": {k: _json_num(v) for k, v in self.means.items()},
            "fid": _json_num(self.fid),
            "models": self.models,
            "skipped": self.skipped,
            "failed": self.failed,
            "notes": self.notes,
            "rows": [{k: (_json_num(v) if k != "path" else v) for k, v in r.items()} for r in self.rows],
        }


def _json_num(v: float | None) -> float | str | None:
    if v is None:
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def expand_metrics(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for raw in names:
        for n in (x.strip().lower() for x in raw.split(",")):
            if not n:
                continue
            if n in ALIASES:
                out += ALIASES[n]
            elif n in GROUPS:
                out.append(n)
            else:
                known = ", ".join(list(GROUPS) + list(ALIASES))
                raise UsageError(f"--metrics: unknown metric {n!r}; choose from {known}")
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------------------------------- pairing

_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, hidden entries skipped), relative to ``root``."""
    if root.is_file():
        return [Path(root.name)]
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    out: list[Path] = []
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and Path(n).suffix.lower() in _EXT:
                out.append((Path(here) / n).relative_to(root))
    return out


def _base(root: Path) -> Path:
    return root.parent if root.is_file() else root


@dataclass(frozen=True)
class Pair:
    rel: Path
    restored: Path
    reference: Path | None


def pair_images(restored: Path, reference: Path | None) -> tuple[list[Pair], list[str]]:
    """Pairs by relative path; a reference with the same path but another image extension also matches
    (restorers often write PNG for JPEG inputs). Restored files without a reference are reported."""
    rels = list_images(restored)
    if not rels:
        raise UsageError(f"{restored}: no images found")
    base = _base(restored)
    if reference is None:
        return [Pair(r, base / r, None) for r in rels], []
    ref_base = _base(reference)
    by_stem: dict[Path, list[Path]] = {}
    for r in list_images(reference):
        by_stem.setdefault(r.with_suffix(""), []).append(r)
    pairs, problems = [], []
    for r in rels:
        exact = ref_base / r
        if exact.is_file():
            pairs.append(Pair(r, base / r, exact))
            continue
        cands = by_stem.get(r.with_suffix(""), [])
        if len(cands) == 1:
            pairs.append(Pair(r, base / r, ref_base / cands[0]))
        else:
            why = "no reference" if not cands else f"{len(cands)} references ({', '.join(map(str, cands))})"
            problems.append(f"{base / r}: {why} at {ref_base / r.with_suffix('.*')}")
    return pairs, problems


def load_bgr8(path: Path) -> np.ndarray:
    """Any decodable image -> ``(H, W, 3)`` uint8 BGR (gray replicated, alpha dropped, 16-bit rounded to 8)."""
    from facerest_cli.io.decode import decode_image
    from facerest_cli.io.sinks import to_8bit

    px = decode_image(path).pixels
    if px.dtype == np.uint16:
        px = to_8bit(px)
    c = px.shape[2]
    if c in (1, 2):
        px = np.repeat(px[:, :, :1], 3, axis=2)
    elif c == 4:
        px = px[:, :, :3]
    return np.ascontiguousarray(px)


# -------------------------------------------------------------------------------------------------- models


def _missing(store: "WeightsStore", entry: str) -> str | None:
    """The first missing file of ``entry`` or of what it requires, or None when all are installed."""
    for e in store.closure(entry):
        for f in e.files:
            if store.locate(e.name, f.name) is None:
                return f"{e.name}/{f.name}"
    return None


def weights_needed(group: str, opts: EvalOptions) -> tuple[str, ...]:
    return {
        "lpips-vgg": ("lpips-vgg",),
        "lpips-alex": ("lpips-alex",),
        "niqe": ("niqe-params",),
        "fid": ("fid-inception",),
        "identity": (opts.recognizer,),
        "lmd": (opts.landmarks, "bfm-sparse68"),
        "shape": (opts.landmarks, "bfm-sparse68"),
    }.get(group, ())


@dataclass
class _Models:
    lpips: dict[str, Any] = field(default_factory=dict)
    niqe: Any = None
    fid: Any = None
    recognizer: Any = None
    tddfa: Any = None


@contextlib.contextmanager
def _fp32(device: str) -> Iterator[None]:
    """Scores in true float32: TF32 convolutions off on CUDA, for this block only (no global flag left set)."""
    if device.startswith("cuda"):
        import torch

        # cuDNN convolutions default to TF32 on Ampere and later; torch's own context manager scopes the change
        # (matmuls already default to full float32).
        cudnn = torch.backends.cudnn
        with cudnn.flags(enabled=True, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False):
            yield
    else:
        yield


def plan(opts: EvalOptions, store: "WeightsStore") -> tuple[list[str], dict[str, str]]:
    """The metric groups that will run, and the skipped ones with their one-line reason."""
    groups = expand_metrics(opts.metrics)
    active, skipped = [], {}
    for g in groups:
        if g in NEEDS_PAIRS and opts.reference is None:
            skipped[g] = f"{g}: skipped, it needs --reference DIR (a clean image per restored image)"
            continue
        if g == "fid" and opts.reference is None and opts.fid_stats is None:
            skipped[g] = "fid: skipped, it needs --reference DIR or --fid-stats FILE"
            continue
        missing = [(n, m) for n in weights_needed(g, opts) for m in [_missing(store, n)] if m]
        if missing:
            name, what = missing[0]
            skipped[g] = f"{g}: skipped, {what} is not installed; run: facerest weights fetch {name}"
            continue
        active.append(g)
    return active, skipped


@dataclass
class Prepared:
    """The plan (``active`` groups, ``skipped`` reasons) and the loaded networks, reusable across runs."""

    active: list[str]
    skipped: dict[str, str]
    models: _Models
    names: dict[str, str]


def prepare(opts: EvalOptions, store: "WeightsStore") -> Prepared:
    """Plan the metric groups and load their networks once (``evaluate(prepared=...)`` reuses them)."""
    active, skipped = plan(opts, store)
    models, names = _load_models(active, opts, store)
    return Prepared(active, skipped, models, names)


def _load_models(active: Sequence[str], opts: EvalOptions, store: "WeightsStore") -> tuple[_Models, dict[str, str]]:
    m, names = _Models(), {}
    for g in active:
        if g.startswith("lpips-"):
            from facerest_cli.metrics.lpips import load_lpips

            m.lpips[g] = load_lpips(store, g, opts.device)
            names[g] = f"{g} (LPIPS v0.1, {store.registry.get(g).arch})"
        elif g == "niqe":
            from facerest_cli.metrics.niqe import NiqeParams

            path = store.locate("niqe-params")
            assert path is not None
            m.niqe = NiqeParams.load(path)
            names[g] = "niqe-params (BasicSR niqe_pris_params.npz, Y channel, 96x96 blocks)"
        elif g == "fid":
            from facerest_cli.metrics.fid import load_fid_inception

            m.fid = load_fid_inception(store, opts.device)
            names[g] = "fid-inception (pytorch-fid Inception-v3 pool3, 2048-d)"
        elif g == "identity":
            from facerest_cli.identity.recognizers import build_recognizer

            m.recognizer = build_recognizer(opts.recognizer, store, opts.device)
            names[g] = f"{opts.recognizer} (cosine of ArcFace embeddings on the FFHQ-template landmarks; deg = arccos)"
        elif g in ("lmd", "shape") and m.tddfa is None:
            from facerest_cli.prior.tddfa import Tddfa

            m.tddfa = Tddfa.load(store, opts.landmarks, opts.device)
        if g == "lmd":
            names[g] = f"{opts.landmarks} (3DDFA_V2, 68 landmarks, pixels)"
        elif g == "shape":
            names[g] = f"{opts.landmarks} (40 BFM shape coefficients, RMS in population std units)"
    return m, names


# ---------------------------------------------------------------------------------------------- evaluation


def _same_size_groups(images: Sequence[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    return list(groups.values())


def _score_batch(batch: list[tuple[Pair, np.ndarray, np.ndarray | None]], active: Sequence[str], m: _Models,
                 opts: EvalOptions) -> list[dict[str, Any]]:
    from facerest_cli.metrics import psnr_ssim

    res = [b[1] for b in batch]
    ref = [b[2] for b in batch]
    rows: list[dict[str, Any]] = [{"path": b[0].rel.as_posix()} for b in batch]
    cb = opts.crop_border
    for i, row in enumerate(rows):
        if "psnr" in active:
            row["psnr"] = psnr_ssim.psnr(res[i], ref[i], cb, False)
            row["psnr_y"] = psnr_ssim.psnr(res[i], ref[i], cb, True)
        if "ssim" in active:
            row["ssim"] = psnr_ssim.ssim(res[i], ref[i], cb, False)
            row["ssim_y"] = psnr_ssim.ssim(res[i], ref[i], cb, True)
        if "niqe" in active:
            from facerest_cli.metrics.niqe import niqe

            row["niqe"] = niqe(res[i], m.niqe, cb)
    with _fp32(opts.device):
        for g, net in m.lpips.items():
            if g not in active:
                continue
            from facerest_cli.metrics.lpips import lpips_distance

            col = GROUPS[g][0]
            for idx in _same_size_groups(res):
                d = lpips_distance(net, [res[i] for i in idx], [ref[i] for i in idx])
                for i, v in zip(idx, d):
                    rows[i][col] = float(v)
        if "identity" in active:
            from facerest_cli.metrics.face import identity_scores

            s = identity_scores(m.recognizer, res, ref)  # type: ignore[arg-type]
            for i in range(len(rows)):
                rows[i]["id_cos"], rows[i]["id_deg"] = float(s.cos[i]), float(s.deg[i])
        if "lmd" in active or "shape" in active:
            from facerest_cli.metrics.face import geometry_scores

            geo = geometry_scores(m.tddfa, res, ref)  # type: ignore[arg-type]
            for i in range(len(rows)):
                if "lmd" in active:
                    rows[i]["lmd"] = float(geo.lmd[i])
                if "shape" in active:
                    rows[i]["shape"] = float(geo.shape[i])
    return rows


def _fid_update(m: _Models, stats, images: Sequence[np.ndarray], device: str) -> None:
    from facerest_cli.metrics.fid import pool3

    with _fp32(device):
        for idx in _same_size_groups(images):
            stats.update(pool3(m.fid, [images[i] for i in idx]))


def evaluate(opts: EvalOptions, store: "WeightsStore", *, on_progress: Callable[[int, int], None] | None = None,
             on_failure: Callable[[str], None] | None = None, prepared: Prepared | None = None,
             pairs: Sequence[Pair] | None = None) -> EvalResult:
    """Score every restored image. ``on_progress(done, total)`` after each batch; ``on_failure(line)`` for each
    input that cannot be scored (the run goes on); ``prepared``: networks loaded by ``prepare`` for these
    options (otherwise loaded here); ``pairs``: score exactly these (restored, reference) files instead of
    pairing ``options.restored`` with ``options.reference`` by relative path (``facerest eval --restorers``
    pairs each restored crop with its input crop)."""
    from facerest_cli.metrics.fid import FidStats, RunningStats, frechet_distance

    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.crop_border < 0:
        raise UsageError(f"--crop-border must be >= 0, got {opts.crop_border}")
    prep = prepared or prepare(opts, store)
    active = prep.active
    columns = [c for g in active for c in GROUPS[g]]
    result = EvalResult(columns=columns, skipped=dict(prep.skipped), models=dict(prep.names))
    fail = on_failure or (lambda line: None)
    if pairs is None:
        pairs, problems = pair_images(opts.restored, opts.reference)
    else:
        pairs, problems = list(pairs), []
    for p in problems:
        result.failed.append(p)
        fail(p)
    models = prep.models
    fid_ref_stats = FidStats.load(opts.fid_stats) if ("fid" in active and opts.fid_stats is not None) else None
    run_res, run_ref = RunningStats(), RunningStats()
    need_ref = opts.reference is not None and (any(g in NEEDS_PAIRS for g in active)
                                               or ("fid" in active and fid_ref_stats is None))
    total = len(pairs)
    for start in range(0, total, opts.batch_size):
        batch: list[tuple[Pair, np.ndarray, np.ndarray | None]] = []
        for p in pairs[start : start + opts.batch_size]:
            try:
                res = load_bgr8(p.restored)
                ref = load_bgr8(p.reference) if (need_ref and p.reference is not None) else None
                if ref is not None and ref.shape != res.shape and any(g in NEEDS_PAIRS for g in active):
                    raise InputError(p.restored, f"size {res.shape[1]}x{res.shape[0]} differs from its reference "
                                                 f"{p.reference} ({ref.shape[1]}x{ref.shape[0]})")
            except InputError as e:  # this pair only; the run goes on
                result.failed.append(str(e))
                fail(str(e))
                continue
            batch.append((p, res, ref))
        if batch:
            result.rows += _score_batch(batch, active, models, opts)
            if "fid" in active:
                _fid_update(models, run_res, [b[1] for b in batch], opts.device)
                if fid_ref_stats is None:
                    _fid_update(models, run_ref, [b[2] for b in batch if b[2] is not None], opts.device)
        if on_progress is not None:
            on_progress(min(start + opts.batch_size, total), total)
    for c in columns:
        vals = [r[c] for r in result.rows if r.get(c) is not None]
        if vals:
            result.means[c] = float(np.mean(vals))
    if "fid" in active and run_res.n >= 2:
        ref_stats = fid_ref_stats if fid_ref_stats is not None else run_ref.stats()
        if opts.save_fid_stats is not None and fid_ref_stats is None:
            ref_stats.save(opts.save_fid_stats)
            result.notes.append(f"reference FID statistics ({ref_stats.n} images) written to {opts.save_fid_stats}")
        result.fid = frechet_distance(run_res.stats(), ref_stats)
        if run_res.n < FID_MIN_IMAGES:
            result.notes.append(
                f"FID on {run_res.n} images: with fewer images than its 2048 features the covariance is singular, "
                "so the value is only indicative (papers use thousands: CelebA-Test has 3,000)"
            )
    elif "fid" in active:
        result.skipped["fid"] = f"fid: skipped, it needs at least 2 scored images, got {run_res.n}"
    return result
