"""``facerest eval --restorers a,b,c SAMPLE``: which restorer, at which strength or fidelity, suits these photos?

The sample is restored once per *setting* (``facerest run`` itself: ``job.run_job`` with ``--save-crops``, into
``OUT/<setting>/``), then every setting's restored faces are scored with ``facerest eval``'s metric code:

* no-reference, always: NIQE of the restored face; identity (ArcFace cosine and Deg) and 3DMM shape distance of
  the restored face **against its own input face** (did the restorer keep the person and the face's shape?);
  FID against ``--fid-stats`` when given (a sample is too small to be its own FID reference);
* paired, with ``--reference DIR`` (clean versions of the sample, matched by relative path as ``eval`` does):
  PSNR/SSIM (RGB and Y), LPIPS, identity and LMD of the restored face **against the reference face**. The
  reference face is cut from the reference photo with the face's own alignment matrix (``report.jsonl``
  ``matrix``; scaled when the reference has another resolution), so it lies exactly where the input crop lies; with
  ``--aligned`` the reference is the aligned face itself (resized to the crop like the input).

Setting syntax (``parse_settings``): ``NAME[@OPTION=VALUE]...``, comma-separated, e.g.
``none,gfpgan-1.4@strength=0.5,codeformer@fidelity=0.3,codeformer@fidelity=0.7@strength=0.8``. Options:
``strength`` (every restorer; ``s*restored + (1-s)*input``) and ``fidelity`` (restorers whose architecture takes
one: CodeFormer's w). Values are numbers in [0, 1]. A setting's folder is its canonical label
(``codeformer@fidelity=0.7``).

Everything that can be checked is checked before any image is touched (``check``): the settings, the metric names,
the folders, and every weights file each setting needs (missing ones are listed with ``facerest weights fetch`` and
``facerest weights import`` commands; nothing is downloaded). Memory stays bounded: restoring streams as
``facerest run`` does, scoring streams in batches, reference crops are made one photo at a time, and the page's
thumbnails are written one face at a time.
"""

from __future__ import annotations

import gc
import hashlib
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from facerest_cli.errors import InputError, UsageError, WeightsMissingError
from facerest_cli.metrics.evaluate import EvalOptions, Pair, Prepared, expand_metrics

if TYPE_CHECKING:
    from facerest_cli.config import RunConfig
    from facerest_cli.types import Events
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from facerest_cli.weights.registry import Registry

SETTING_OPTIONS = ("fidelity", "strength")
EXAMPLE = "none,gfpgan-1.4@strength=0.5,codeformer@fidelity=0.7"
REFERENCE_DIR = "reference_faces"  # OUT/reference_faces: reference crops that had to be cut or resized

# Metric groups scored against the input face (no reference needed) and against the reference face.
NOREF_GROUPS = ("niqe", "identity", "shape", "fid")
PAIRED_GROUPS = ("psnr", "ssim", "lpips-vgg", "lpips-alex", "identity", "lmd")
# evaluate's column -> this table's column: identity appears twice (vs input, vs reference), so it is renamed.
NOREF_RENAME = {"niqe": "niqe", "id_cos": "id_cos_in", "id_deg": "id_deg_in", "shape": "shape_in"}
PAIRED_RENAME = {"psnr": "psnr", "psnr_y": "psnr_y", "ssim": "ssim", "ssim_y": "ssim_y", "lpips_vgg": "lpips_vgg",
                 "lpips_alex": "lpips_alex", "id_cos": "id_cos_ref", "id_deg": "id_deg_ref", "lmd": "lmd_ref"}
COLUMN_ORDER = ("psnr", "psnr_y", "ssim", "ssim_y", "lpips_vgg", "lpips_alex", "id_cos_ref", "id_deg_ref", "lmd_ref",
                "niqe", "fid", "id_cos_in", "id_deg_in", "shape_in")
# This table's column -> evaluate's column (digits and "higher is better" come from there).
BASE_COLUMN = {**{v: k for k, v in NOREF_RENAME.items()}, **{v: k for k, v in PAIRED_RENAME.items()}, "fid": "fid"}
_SUFFIX = {"_ref": " vs ref", "_in": " vs input"}


def column_title(col: str, arrow: bool = True) -> str:
    """``id_cos_in`` -> ``ID cos vs input ↑`` (the metric's own title, what it is measured against, the arrow)."""
    from facerest_cli.metrics.report import header

    base = BASE_COLUMN.get(col, col)
    name, _, arr = header(base).rpartition(" ")
    for suffix, words in _SUFFIX.items():
        if col.endswith(suffix):
            name += words
    return f"{name} {arr}" if arrow else name


def higher_is_better(col: str) -> bool:
    from facerest_cli.metrics.evaluate import HIGHER_IS_BETTER

    return HIGHER_IS_BETTER.get(BASE_COLUMN.get(col, col), False)


def fmt(col: str, v: float | None) -> str:
    from facerest_cli.metrics.report import fmt as base_fmt

    return base_fmt(BASE_COLUMN.get(col, col), v)


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Setting:
    """One restorer setting to compare. ``fidelity`` is None for restorers that take none; ``label`` is the
    canonical spelling (the options the user gave, in a fixed order) and the setting's output folder name."""

    restorer: str
    strength: float
    fidelity: float | None
    label: str


def _num(v: float) -> str:
    return f"{v:g}"


def _arch_options(registry: "Registry", name: str) -> tuple[str, ...]:
    if name == "none":
        return ()
    from facerest_cli.models.registry import arch_spec

    return tuple(getattr(arch_spec(registry.get(name).arch), "options", ()))


def parse_settings(specs: Sequence[str], registry: "Registry") -> list[Setting]:
    """``--restorers`` values (each comma-separated) -> settings. Raises ``UsageError`` (exit 2) naming the bad
    part and the choices: unknown restorer, malformed or unknown option, value outside [0, 1], fidelity for a
    restorer without one, the same setting twice (also when spelled differently, e.g. with a default value)."""
    from facerest_cli.config import RestoreConfig
    from facerest_cli.restore.registry import restorer_names

    choices = restorer_names(registry)
    items = [s.strip() for raw in specs for s in raw.split(",")]
    if not any(items):
        raise UsageError(f"--restorers: give at least one setting, e.g. --restorers {EXAMPLE}")
    out: list[Setting] = []
    seen: dict[tuple[str, float, float | None], str] = {}
    for spec in items:
        if not spec:
            raise UsageError(f"--restorers: an empty setting in {','.join(specs)!r} (two commas in a row?)")
        name, *parts = (p.strip() for p in spec.split("@"))
        if name not in choices:
            raise UsageError(f"--restorers: unknown restorer {name!r} in {spec!r}; choose from: {', '.join(choices)}")
        values: dict[str, float] = {}
        for part in parts:
            key, eq, raw = (x.strip() for x in part.partition("="))
            key = key.lower()
            if not eq or not key or not raw:
                raise UsageError(f"--restorers: {spec!r}: expected NAME@OPTION=VALUE (e.g. codeformer@fidelity=0.7), "
                                 f"got '@{part}'")
            if key not in SETTING_OPTIONS:
                raise UsageError(f"--restorers: {spec!r}: unknown option {key!r}; options are strength and fidelity")
            if key in values:
                raise UsageError(f"--restorers: {spec!r}: {key} is given twice")
            try:
                v = float(raw)
            except ValueError:
                v = math.nan
            if not 0.0 <= v <= 1.0:  # NaN fails too
                raise UsageError(f"--restorers: {spec!r}: {key} must be a number from 0 to 1, got {raw!r}")
            values[key] = v
        takes_fidelity = "fidelity" in _arch_options(registry, name)
        if "fidelity" in values and not takes_fidelity:
            with_fid = [n for n in choices if "fidelity" in _arch_options(registry, n)]
            raise UsageError(f"--restorers: {spec!r}: {name} has no fidelity option (restorers with one: "
                             f"{', '.join(with_fid) or 'none'}); use strength=S to blend with the input")
        strength = values.get("strength", 1.0)
        fidelity = values.get("fidelity", RestoreConfig.fidelity) if takes_fidelity else None
        label = name + "".join(f"@{k}={_num(values[k])}" for k in SETTING_OPTIONS if k in values)
        key3 = (name, strength, fidelity)
        if key3 in seen:
            raise UsageError(f"--restorers: {spec!r} is the same setting as {seen[key3]!r} (strength 1 and fidelity "
                             f"{_num(RestoreConfig.fidelity)} are the defaults)")
        seen[key3] = spec
        out.append(Setting(name, strength, fidelity, label))
    return out


# ------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class CompareOptions:
    """What to compare. ``device``/``precision``/``batch_size`` apply to the restorers (``facerest run``); metrics
    run on ``metric_device`` in float32 with ``batch_size`` images per call."""

    sample: Path
    out_dir: Path
    settings: tuple[Setting, ...]
    reference: Path | None = None
    fid_stats: Path | None = None
    aligned: bool = False
    detector: str = "auto"
    faces: str = "all"
    prior: str = "auto"
    device: str = "auto"
    metric_device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 8
    metrics: tuple[str, ...] = ("all",)
    crop_border: int = 0
    recognizer: str = "arcface-mobilefacenet"
    landmarks: str = "3ddfa-mb05"

    def __post_init__(self) -> None:
        # Absolute, so the crop paths the runs record and the page's links do not depend on the working directory.
        for name in ("sample", "out_dir", "reference", "fid_stats"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, Path(v).absolute())
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")

    def setting_dir(self, s: Setting) -> Path:
        return self.out_dir / s.label


def run_config(opts: CompareOptions, s: Setting) -> "RunConfig":
    """The ``facerest run`` of one setting: ``--save-crops`` (the scored faces), quiet, into ``OUT/<label>``."""
    from facerest_cli.config import DetectConfig, OutputConfig, PriorConfig, RestoreConfig, RunConfig

    restore = RestoreConfig(restorer=s.restorer, device=opts.device, precision=opts.precision,  # type: ignore[arg-type]
                            batch_size=opts.batch_size, strength=s.strength,
                            **({"fidelity": s.fidelity} if s.fidelity is not None else {}))
    return RunConfig(inputs=(opts.sample,), detect=DetectConfig(detector=opts.detector, faces=opts.faces),  # type: ignore[arg-type]
                     restore=restore, output=OutputConfig(out_dir=opts.setting_dir(s), save_crops=True),
                     prior=PriorConfig(prior=opts.prior), aligned=opts.aligned, quiet=True)


def _within(a: Path, b: Path) -> bool:
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class MetricPlan:
    """Which metric groups run against the input face (``noref``) and against the reference (``paired``), and the
    groups the user asked for that cannot run for want of an input (``skipped``: group -> reason)."""

    noref: tuple[str, ...]
    paired: tuple[str, ...]
    skipped: dict[str, str]
    notes: tuple[str, ...]


def metric_plan(opts: CompareOptions) -> MetricPlan:
    groups = expand_metrics(opts.metrics)
    explicit = tuple(opts.metrics) != ("all",)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    noref = [g for g in groups if g in NOREF_GROUPS and (g != "fid" or opts.fid_stats is not None)]
    paired = [g for g in groups if g in PAIRED_GROUPS] if opts.reference is not None else []
    if "fid" in groups and opts.fid_stats is None:
        why = "it needs --fid-stats FILE (a sample is too small to be its own FID reference)"
        if explicit:
            skipped["fid"] = f"fid: skipped, {why}"
        else:
            notes.append(f"fid: not computed, {why}")
    if opts.reference is None:
        wanted = [g for g in groups if g in PAIRED_GROUPS and g not in NOREF_GROUPS]
        if explicit:
            for g in wanted:
                skipped[g] = f"{g}: skipped, it needs --reference DIR (clean versions of the sample, same relative paths)"
        elif wanted:
            notes.append("no --reference: PSNR, SSIM, LPIPS, LMD and identity against a clean face need --reference DIR "
                         "(clean versions of the sample, same relative paths)")
    return MetricPlan(tuple(noref), tuple(paired), skipped, tuple(notes))


def check(opts: CompareOptions, store: "WeightsStore") -> MetricPlan:
    """Everything that can fail before any work: folders, metric names and every setting's weights. Raises
    ``UsageError`` or ``WeightsMissingError`` (both exit 2)."""
    from facerest_cli.job import required_weights

    if not opts.settings:
        raise UsageError(f"--restorers: give at least one setting, e.g. --restorers {EXAMPLE}")
    if not opts.sample.exists():
        raise UsageError(f"{opts.sample}: no such file or folder (the sample to restore)")
    if opts.reference is not None and not opts.reference.exists():
        raise UsageError(f"--reference {opts.reference}: no such folder")
    if opts.fid_stats is not None and not opts.fid_stats.is_file():
        raise UsageError(f"--fid-stats {opts.fid_stats}: no such file")
    out, sample = opts.out_dir.resolve(), opts.sample.resolve()
    if sample.is_dir() and _within(out, sample):
        # Every setting's run would find the other settings' outputs among the sample's images.
        raise UsageError(f"-o {opts.out_dir} is inside the sample folder {opts.sample}; choose a folder outside it")
    if _within(sample, out):
        raise UsageError(f"the sample {opts.sample} is inside the output folder {opts.out_dir}; choose another -o")
    if opts.reference is not None and _within(opts.reference.resolve(), out):
        raise UsageError(f"--reference {opts.reference} is inside the output folder {opts.out_dir}; choose another -o")
    plan = metric_plan(opts)
    missing: dict[tuple[str, str], list[str]] = {}
    for s in opts.settings:
        cfg = run_config(opts, s)  # RunConfig checks its own values here
        for name in required_weights(cfg, store):
            for f in store.registry.get(name).files:
                if store.locate(name, f.name) is None:
                    missing.setdefault((name, f.name), []).append(s.label)
    if missing:
        lines = []
        for (name, fname), labels in missing.items():
            entry = store.registry.get(name)
            f = entry.file(fname)
            fetchable = bool(f.url) and not entry.user_import_only
            why = (f"facerest eval does not download; run: facerest weights fetch {name}" if fetchable
                   else "it cannot be downloaded automatically")
            lines.append(f"{', '.join(labels)}: {store.missing_message(entry, f, why)}")
        raise WeightsMissingError("weights missing, nothing was restored:\n  " + "\n  ".join(lines))
    return plan


# ----------------------------------------------------------------------------------------------- restoring


@dataclass
class SettingRun:
    """One setting's ``facerest run``: its output folder, counts, failures (one line each) and wall time."""

    setting: Setting
    out_dir: Path
    processed: int = 0
    faces: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        s = self.setting
        return {"setting": s.label, "restorer": s.restorer, "strength": s.strength, "fidelity": s.fidelity,
                "out_dir": str(self.out_dir), "processed": self.processed, "faces": self.faces,
                "failed": self.failed, "restore_seconds": round(self.seconds, 3)}


EventsFactory = Callable[[int, Setting], "AbstractContextManager[Events | None]"]


def restore_all(opts: CompareOptions, weights: "WeightsConfig",
                events_for: EventsFactory | None = None) -> list[SettingRun]:
    """Run ``facerest run`` once per setting, one after the other (one restorer in memory at a time).
    ``events_for(i, setting)`` gives a context manager yielding the run's progress ``Events`` (or None)."""
    from facerest_cli.job import run_job

    runs = []
    for i, s in enumerate(opts.settings):
        cfg = run_config(opts, s)
        with (events_for(i, s) if events_for else nullcontext(None)) as events:
            res = run_job(cfg, weights, events=events)
        if res.status == "interrupted":
            from facerest_cli.errors import Interrupted

            raise Interrupted(f"interrupted while restoring with {s.label} ({cfg.output.out_dir})")
        runs.append(SettingRun(s, cfg.output.out_dir, res.processed, res.faces,
                               [f"{f.path}: {f.error}" for f in res.failed], res.wall_time_s))
        del res
        gc.collect()  # the restorer network goes before the next one is built
    return runs


# ------------------------------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class Face:
    """One face of the sample, the same in every setting (detection does not depend on the restorer).
    ``label``: ``<relative path>#<face index>`` (``@f<frame>`` for video frames); ``slug``: a file-safe stem."""

    source: str
    rel: str
    frame: int | None
    index: int
    label: str
    slug: str


def _face_of(rec: dict[str, Any], sample: Path) -> Face:
    from facerest_cli.report.thumbs import thumb_stem

    source = rec["source"]
    base = sample if sample.is_dir() else sample.parent
    try:
        rel = Path(source).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        rel = Path(source).name
    frame = rec.get("frame")
    idx = int(rec["face_index"])
    label = rel + (f"@f{frame}" if frame is not None else "") + f"#{idx}"
    return Face(source, rel, frame, idx, label, thumb_stem(source, idx, frame))


def collect_faces(opts: CompareOptions, runs: Sequence[SettingRun]) -> tuple[list[Face], dict[str, dict[str, dict]]]:
    """Every face any setting reported (in input order), and per setting ``{face label: report record}`` of the
    faces whose crops were saved."""
    from facerest_cli.report.jsonl import read_records

    faces: dict[str, Face] = {}
    records: dict[str, dict[str, dict]] = {}
    for run in runs:
        recs: dict[str, dict] = {}
        jsonl = run.out_dir / "report.jsonl"
        for rec in (read_records(jsonl) if jsonl.is_file() else ()):
            if not rec.get("input_crop") or not rec.get("restored_crop"):
                continue
            f = _face_of(rec, opts.sample)
            faces.setdefault(f.label, f)
            recs[f.label] = {k: rec[k] for k in ("input_crop", "restored_crop", "matrix")}  # not the whole line
        records[run.setting.label] = recs
    ordered = sorted(faces.values(), key=lambda f: (f.rel, -1 if f.frame is None else f.frame, f.index))
    return ordered, records


class ReferenceCrops:
    """The reference face of each sample face, as a file the metrics can read: the reference photo cut with the
    face's alignment matrix (whole photos) or the reference face resized to the crop (``--aligned``; used as it
    is when it already has the crop's size). At most one decoded photo is held at a time."""

    def __init__(self, opts: CompareOptions):
        from facerest_cli.metrics.evaluate import pair_images

        assert opts.reference is not None
        self.opts = opts
        self.root = opts.out_dir / REFERENCE_DIR
        try:
            pairs, _ = pair_images(opts.sample, opts.reference)
        except UsageError:  # no still images in the sample (videos only): every face reports "no reference"
            pairs = []
        self.by_rel = {p.rel.as_posix(): p.reference for p in pairs}
        self._made: dict[tuple, Path] = {}
        self._ref: tuple[Path, np.ndarray] | None = None
        self._sample: tuple[str, tuple[int, int]] | None = None

    def _load_ref(self, path: Path) -> np.ndarray:
        from facerest_cli.metrics.evaluate import load_bgr8

        if self._ref is None or self._ref[0] != path:
            self._ref = (path, load_bgr8(path))
        return self._ref[1]

    def _sample_size(self, source: str) -> tuple[int, int]:
        """(height, width) of the sample photo as the run decoded it (EXIF orientation applied)."""
        from facerest_cli.io.decode import decode_image

        if self._sample is None or self._sample[0] != source:
            self._sample = (source, decode_image(Path(source)).pixels.shape[:2])
        return self._sample[1]

    def get(self, face: Face, rec: dict[str, Any], size: int) -> Path:
        """The reference crop of ``face`` at ``size`` x ``size``; raises ``InputError`` when there is none."""
        import cv2

        from facerest_cli.align.warp import warp_to_crop
        from facerest_cli.io.sinks import atomic_write_bytes

        ref_path = self.by_rel.get(face.rel)
        if ref_path is None:
            raise InputError(face.source, f"no reference for {face.rel} under {self.opts.reference}")
        matrix = np.asarray(rec["matrix"], np.float64)
        key = (face.label, size, matrix.tobytes())
        if key in self._made:
            return self._made[key]
        ref = self._load_ref(ref_path)
        h, w = ref.shape[:2]
        if self.opts.aligned:
            if (h, w) == (size, size):
                self._made[key] = ref_path  # the reference face is the crop: scored from its own file
                return ref_path
            if abs(h - w) > max(2, 0.02 * max(h, w)):
                raise InputError(ref_path, f"--aligned expects square reference faces, got {w}x{h}")
            # As the run made the input crop (align.faces.aligned_input): area when shrinking, cubic when growing.
            crop = cv2.resize(ref, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_CUBIC)
        else:
            sh, sw = self._sample_size(face.source)
            if (sh, sw) != (h, w):
                # Reference pixel q <-> sample pixel (q + 0.5) * sw / w - 0.5 (pixel centres), then the face's matrix.
                fx, fy = sw / w, sh / h
                to_sample = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]], np.float64)
                matrix = (np.vstack([matrix, [0, 0, 1]]) @ to_sample)[:2]
            crop = warp_to_crop(ref, matrix, size)
        digest = hashlib.sha1(key[2]).hexdigest()[:8]
        path = self.root / f"{face.slug}_{size}_{digest}.png"
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(crop))
        if not ok:
            raise InputError(ref_path, "could not encode its reference crop")
        atomic_write_bytes(path, buf.tobytes())
        self._made[key] = path
        return path


# ------------------------------------------------------------------------------------------------- scoring


@dataclass
class CompareResult:
    """The comparison: per setting (``runs``, in the order given) the mean of each column (``means``), FID
    (``fid``), scored faces (``counts``) and per face values (``values[setting][face label][column]``); the
    faces in input order; what was skipped and why, failures, notes and the networks used."""

    runs: list[SettingRun]
    faces: list[Face]
    columns: list[str]
    values: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    means: dict[str, dict[str, float]] = field(default_factory=dict)
    fid: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    crops: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # setting -> face -> input/restored
    reference_crops: dict[str, str] = field(default_factory=dict)  # face label -> reference crop file
    skipped: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def table_columns(self) -> list[str]:
        """The mean table's metric columns: ``columns`` and FID when any setting has one."""
        return self.columns + (["fid"] if any(v is not None for v in self.fid.values()) else [])

    def mean(self, label: str, col: str) -> float | None:
        return self.fid.get(label) if col == "fid" else self.means.get(label, {}).get(col)

    def to_dict(self) -> dict[str, Any]:
        from facerest_cli.metrics.evaluate import _json_num

        settings = []
        for run in self.runs:
            lab = run.setting.label
            settings.append({**run.to_dict(), "scored_faces": self.counts.get(lab, 0),
                             "means": {c: _json_num(self.mean(lab, c)) for c in self.table_columns},
                             "faces_scores": {f: {c: _json_num(v) for c, v in row.items()}
                                              for f, row in self.values.get(lab, {}).items()}})
        return {"columns": self.table_columns, "titles": {c: column_title(c) for c in self.table_columns},
                "faces": [f.label for f in self.faces], "settings": settings, "models": self.models,
                "skipped": self.skipped, "failed": self.failed, "notes": self.notes}


def _view(prep: Prepared, groups: Sequence[str]) -> Prepared:
    """The loaded networks, restricted to ``groups`` (each network is loaded once for both passes)."""
    active = [g for g in prep.active if g in groups]
    return Prepared(active, {}, prep.models, {k: v for k, v in prep.names.items() if k in active})


def _crop_size(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return int(im.size[0])


def score(opts: CompareOptions, runs: Sequence[SettingRun], store: "WeightsStore", plan: MetricPlan, *,
          on_progress: Callable[[int, int], None] | None = None,
          on_failure: Callable[[str], None] | None = None) -> CompareResult:
    """Score every setting's restored faces (see the module docstring); networks are loaded once."""
    from dataclasses import replace

    from facerest_cli.metrics.evaluate import evaluate, prepare

    fail = on_failure or (lambda line: None)
    faces, records = collect_faces(opts, runs)
    groups = list(dict.fromkeys([*plan.noref, *plan.paired]))
    base = EvalOptions(restored=opts.out_dir, reference=opts.out_dir, fid_stats=opts.fid_stats, metrics=tuple(groups),
                       device=opts.metric_device, batch_size=opts.batch_size, crop_border=opts.crop_border,
                       recognizer=opts.recognizer, landmarks=opts.landmarks)
    prep = prepare(base, store) if groups else Prepared([], {}, _empty_models(), {})
    noref, paired = _view(prep, plan.noref), _view(prep, plan.paired)
    columns = [c for c in COLUMN_ORDER if c != "fid" and (
        any(c == NOREF_RENAME.get(x) for g in noref.active for x in _group_columns(g))
        or any(c == PAIRED_RENAME.get(x) for g in paired.active for x in _group_columns(g)))]
    result = CompareResult(list(runs), faces, columns, skipped={**plan.skipped, **prep.skipped},
                           notes=list(plan.notes))
    result.models = {("identity vs input" if k == "identity" else k): v for k, v in noref.names.items()}
    result.models.update({("identity vs ref" if k == "identity" else k): v for k, v in paired.names.items()})
    by_label = {f.label: f for f in faces}
    refs = ReferenceCrops(opts) if paired.active else None

    # Pairs per setting and pass, built first so the progress bar knows its total.
    work: list[tuple[str, str, list[Pair]]] = []
    for run in runs:
        lab = run.setting.label
        recs = records.get(lab, {})
        result.crops[lab] = {f: {"input": r["input_crop"], "restored": r["restored_crop"]} for f, r in recs.items()}
        if noref.active:
            work.append((lab, "noref", [Pair(Path(f), Path(r["restored_crop"]), Path(r["input_crop"]))
                                        for f, r in recs.items()]))
        if refs is not None:
            pairs = []
            for f, r in recs.items():
                try:
                    ref = refs.get(by_label[f], r, _crop_size(r["restored_crop"]))
                except InputError as e:
                    line = f"{lab}: {e} (paired metrics not computed for this face)"
                    if line not in result.failed:
                        result.failed.append(line)
                        fail(line)
                    continue
                result.reference_crops.setdefault(f, str(ref))
                pairs.append(Pair(Path(f), Path(r["restored_crop"]), ref))
            work.append((lab, "paired", pairs))
    total = sum(len(p) for _, _, p in work)
    done = 0
    for lab, kind, pairs in work:
        if not pairs:
            continue
        view, rename = (noref, NOREF_RENAME) if kind == "noref" else (paired, PAIRED_RENAME)
        start = done
        res = evaluate(replace(base, metrics=tuple(view.active),
                               reference=opts.out_dir if kind == "noref" else opts.reference),
                       store, prepared=view, pairs=pairs,
                       on_progress=(lambda d, t, s=start: on_progress(s + d, total)) if on_progress else None,
                       on_failure=lambda line, lab=lab: fail(f"{lab}: {line}"))
        done += len(pairs)
        result.failed += [f"{lab}: {line}" for line in res.failed]
        rows = result.values.setdefault(lab, {})
        for row in res.rows:
            dest = rows.setdefault(row["path"], {})
            for c, v in row.items():
                if c != "path" and v is not None and c in rename:
                    dest[rename[c]] = v
        means = result.means.setdefault(lab, {})
        for c, v in res.means.items():
            if c in rename:
                means[rename[c]] = v
        if kind == "noref":
            result.fid[lab] = res.fid
            result.notes += [n for n in res.notes if n not in result.notes]
            if "fid" in res.skipped:
                result.skipped.setdefault("fid", res.skipped["fid"])
    for run in runs:
        result.counts[run.setting.label] = len(result.values.get(run.setting.label, {}))
        if run.faces == 0:
            result.notes.append(f"{run.setting.label}: no faces were restored (see {run.out_dir}/summary.json)")
    return result


def _group_columns(g: str) -> tuple[str, ...]:
    from facerest_cli.metrics.evaluate import GROUPS

    return GROUPS[g]


def _empty_models():
    from facerest_cli.metrics.evaluate import _Models

    return _Models()


# ------------------------------------------------------------------------------------------------- writing


def summary_markdown(r: CompareResult, include_skipped: bool = True) -> str:
    """The mean table, one row per setting (as the settings were given), and the notes."""
    cols = r.table_columns
    lines = [f"| setting | faces | {' | '.join(column_title(c) for c in cols)} | restore s |",
             f"|---|---:|{'---:|' * len(cols)}---:|"]
    for run in r.runs:
        lab = run.setting.label
        vals = " | ".join(fmt(c, r.mean(lab, c)) for c in cols)
        lines.append(f"| {lab} | {r.counts.get(lab, 0)} | {vals} | {run.seconds:.1f} |")
    if r.models:
        lines += ["", "Computed with: " + "; ".join(f"{k}: {v}" for k, v in r.models.items()) + "."]
    for line in (list(r.skipped.values()) if include_skipped else []) + r.notes:
        lines += ["", f"Note: {line}"]
    return "\n".join(lines) + "\n"


def to_markdown(r: CompareResult) -> str:
    out = ["# facerest eval --restorers", "", "## Means", "", summary_markdown(r)]
    if r.faces and r.table_columns:
        cols = r.columns
        out += ["## Per face", "", f"| face | setting | {' | '.join(column_title(c) for c in cols)} |",
                f"|---|---|{'---:|' * len(cols)}"]
        for f in r.faces:
            for run in r.runs:
                row = r.values.get(run.setting.label, {}).get(f.label)
                if row is not None:
                    out.append(f"| {f.label} | {run.setting.label} | {' | '.join(fmt(c, row.get(c)) for c in cols)} |")
        out.append("")
    if r.failed:
        out += ["## Not scored", ""] + [f"- {line}" for line in r.failed] + [""]
    return "\n".join(out)


def _csv_num(v: float | None) -> str:
    if v is None:
        return ""
    return "inf" if math.isinf(v) else repr(float(v))


def to_csv(r: CompareResult) -> str:
    """One row per setting: its options, faces scored, each column's mean (FID included) and restore time."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = r.table_columns
    w.writerow(["setting", "restorer", "strength", "fidelity", "faces", *cols, "restore_seconds"])
    for run in r.runs:
        s = run.setting
        w.writerow([s.label, s.restorer, repr(s.strength), "" if s.fidelity is None else repr(s.fidelity),
                    r.counts.get(s.label, 0), *(_csv_num(r.mean(s.label, c)) for c in cols), f"{run.seconds:.3f}"])
    return buf.getvalue()


def faces_csv(r: CompareResult) -> str:
    """One row per (face, setting) with every per-face column."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["face", "setting", *r.columns])
    for f in r.faces:
        for run in r.runs:
            row = r.values.get(run.setting.label, {}).get(f.label)
            if row is not None:
                w.writerow([f.label, run.setting.label, *(_csv_num(row.get(c)) for c in r.columns)])
    return buf.getvalue()


def write_outputs(r: CompareResult, out_dir: Path, *, json_path: Path | None = None, csv_path: Path | None = None,
                  md_path: Path | None = None) -> dict[str, Path]:
    """``OUT/compare.{json,csv,md}``, ``OUT/compare_faces.csv``, ``OUT/compare.html`` with its thumbnails; and
    copies of the JSON/CSV/Markdown where the user asked for them. Every file is written atomically."""
    import json

    from facerest_cli.io.sinks import atomic_write_bytes
    from facerest_cli.metrics.compare_html import write_compare_html

    texts = {"json": json.dumps(r.to_dict(), indent=2, allow_nan=False) + "\n", "csv": to_csv(r), "md": to_markdown(r)}
    written: dict[str, Path] = {}
    for kind, extra in (("json", json_path), ("csv", csv_path), ("md", md_path)):
        for dest in (out_dir / f"compare.{kind}", extra):
            if dest is not None:
                atomic_write_bytes(Path(dest), texts[kind].encode("utf-8"))
        written[kind] = out_dir / f"compare.{kind}"
    atomic_write_bytes(out_dir / "compare_faces.csv", faces_csv(r).encode("utf-8"))
    written["faces_csv"] = out_dir / "compare_faces.csv"
    written["html"] = write_compare_html(r, out_dir)
    return written
