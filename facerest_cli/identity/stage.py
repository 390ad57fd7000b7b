"""``IdentityStage``: ArcFace cosine between each input face and its restored face, and the identity guard.

After every restore batch the stage aligns the input faces (from the original frames) and the restored faces
(from the restored crops, through the crop matrix) to the ArcFace template and embeds them all in one
recognizer call. It then fills ``record.identity`` (``types.Identity``), in report.jsonl::

    {"model": "arcface-mobilefacenet", "cosine": 0.87, "flag": false, "threshold": 0.5,
     "decision": "restored", "thumbs": {"input": "report_thumbs/..._in.jpg", "restored": "..._out.jpg"}}

* ``cosine`` is the similarity of the face that ends up in the output (after the guard);
* ``flag`` marks faces to review: the full-strength result was below ``--identity-flag``, or the guard acted;
* ``decision``: ``restored`` (first result kept), ``lower strength`` (a retry passed the guard) or
  ``original kept`` (no retry passed: the output shows the input face, pixel for pixel).

The guard (``--min-identity T``): a face below T is handed back to the pipeline with a lower strength (by
default 0.75, then 0.5 times the requested one); the retries are batched with the next faces. When the last
retry is still below T the original face is kept: the restored crop becomes the input crop and the blend mask
is zero, so paste-back leaves the input pixels untouched (cosine 1 by construction). Every attempt is listed in
``record.attempts`` (``strength``, ``cosine``), and ``record.strength`` is the strength applied in the output.

The stage finalizes the restored crop, its mask and its strength (``BatchStage.finalizes``): it must see the final
crops (colour, masks) and it decides, so the scheduler refuses any stage after it that would change them.

Suggested threshold, 0.5 (the ``--identity-flag`` default, and the value ``--min-identity`` suggests), measured
with arcface-mobilefacenet, YuNet landmarks and this alignment (tests/identity/test_auc.py, test_stage.py):

* two *different photos* of the same person: 37 of the 38 deepface same-person pairs score >= 0.5 (p5 0.523,
  median 0.73); none of the 262 different-person pairs does (max 0.352; 0.36 separates them, ROC AUC 1.000);
* the *same photo* through a passthrough restorer: >= 0.997 (Solvay, 29 faces of 40-52 px);
* a heavy Gaussian blur (sigma 6 px in the 512 crop): median 0.88, lowest 0.64 (Solvay), 0.39 on one 103 px face.

So a restored face below 0.5 resembles its own input less than almost any other photo of that person does: it
has likely become someone else. Cosines are recognizer-specific; 0.5 is calibrated for arcface-mobilefacenet.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from facerest_cli.identity.align import align_input, align_restored
from facerest_cli.identity.recognizers import Recognizer, cosine
from facerest_cli.pixels import to_float
from facerest_cli.report.thumbs import ThumbWriter, thumb_stem
from facerest_cli.types import Attempt, FaceState, Identity

if TYPE_CHECKING:
    from facerest_cli.config import IdentityConfig, RunConfig
    from facerest_cli.registry import Execution
    from facerest_cli.weights.cache import WeightsStore

RESTORED, LOWER, ORIGINAL = "restored", "lower strength", "original kept"
MAX_FLAGGED_LISTED = 1000  # summary.json lists at most this many flagged faces (the report lists them all)


@dataclass
class _Face:
    """What the stage keeps about one face while the guard retries it."""

    input_emb: np.ndarray
    requested: float  # the strength asked for (attempt 0)
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class IdentitySummary:
    """summary.json ``identity``: cosine percentiles, flags, guard decisions, per-restorer means (or why the
    report was skipped)."""

    key: ClassVar[str] = "identity"
    model: str | None
    skipped: str | None = None
    faces: int | None = None
    cosine: dict[str, float] | None = None
    flag_below: float | None = None
    min_identity: float | None = None
    flagged: int | None = None
    flagged_faces: list[dict[str, Any]] | None = None
    decisions: dict[str, int] | None = None
    per_restorer: dict[str, dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.model is None:
            return {"model": None, "skipped": self.skipped}
        d = asdict(self)
        del d["skipped"]
        return d


@dataclass
class IdentityTally:
    """The per-face results summary.json's ``identity`` block is computed from (``summary``). An engine that
    splits a run across workers takes each worker's tally after each task (``IdentityStage.take_tally``) and
    ``merge``s them on its driver: the summary is then the one a single process would have written."""

    model: str | None
    skipped: str | None
    flag_below: float
    min_identity: float | None
    cosines: list[float] = field(default_factory=list)
    by_restorer: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    decisions: Counter[str] = field(default_factory=Counter)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    n_flagged: int = 0

    def fresh(self) -> "IdentityTally":
        """An empty tally for the same recognizer and thresholds."""
        return IdentityTally(self.model, self.skipped, self.flag_below, self.min_identity)

    def add(self, restorer: str, c: float, decision: str, flagged: dict[str, Any] | None) -> None:
        self.cosines.append(c)
        self.by_restorer[restorer].append(c)
        self.decisions[decision] += 1
        if flagged is not None:
            self.n_flagged += 1
            if len(self.flagged) < MAX_FLAGGED_LISTED:
                self.flagged.append(flagged)

    def merge(self, other: "IdentityTally") -> None:
        self.cosines += other.cosines
        for name, v in other.by_restorer.items():
            self.by_restorer[name] += v
        self.decisions.update(other.decisions)
        self.n_flagged += other.n_flagged
        self.flagged += other.flagged[: max(0, MAX_FLAGGED_LISTED - len(self.flagged))]

    def summary(self) -> IdentitySummary | None:
        if self.model is None:
            return IdentitySummary(model=None, skipped=self.skipped) if self.skipped else None
        # Sorted: the mean does not depend on the order faces finished in (one process or many workers).
        c = np.sort(np.asarray(self.cosines, np.float64))
        pct = {f"p{q}": round(float(np.percentile(c, q)), 4) for q in (5, 50, 95)} if len(c) else {}
        return IdentitySummary(
            model=self.model,
            faces=len(c),
            cosine={**pct, "mean": round(float(c.mean()), 4)} if len(c) else {},
            flag_below=self.flag_below,
            min_identity=self.min_identity,
            flagged=self.n_flagged,
            flagged_faces=self.flagged,
            decisions=dict(sorted(self.decisions.items())),
            per_restorer={
                name: {"faces": len(v), "mean": round(float(np.mean(sorted(v))), 4)}
                for name, v in sorted(self.by_restorer.items())
            },
        )


class IdentityStage:
    name = "identity"
    needs: frozenset[str] = frozenset({"crop", "restored", "mask", "strength", "record"})
    provides: frozenset[str] = frozenset({"restored", "mask", "strength"})
    finalizes: frozenset[str] = frozenset({"restored", "mask", "strength"})

    def __init__(
        self,
        recognizer: Recognizer | None,
        cfg: "IdentityConfig",
        thumbs: ThumbWriter | None = None,
        skipped: str | None = None,
    ):
        self.recognizer = recognizer
        self.cfg = cfg
        self.thumbs = thumbs
        self.skipped = skipped  # why there is no recognizer (reported in summary.json)
        self._faces: dict[int, _Face] = {}  # id(job) -> state, only while a face is being retried
        self.tally = IdentityTally(recognizer.name if recognizer is not None else None, skipped, cfg.flag_below,
                                   cfg.min_identity)

    @property
    def guard(self) -> float | None:
        return self.cfg.min_identity

    @property
    def retries(self) -> bool:
        """Only the guard restores faces again; without it the stage may run in the write thread (BatchStage)."""
        return self.recognizer is not None and self.cfg.min_identity is not None

    def before_restore(self, jobs: list[FaceState]) -> None:
        pass

    def after_restore(self, jobs: list[FaceState]) -> list[FaceState]:
        if not jobs:
            return []
        if self.recognizer is None:
            for j in jobs:
                j.record.identity = Identity(thumbs=self._thumbs(j))
            return []
        new = [j for j in jobs if id(j) not in self._faces]
        inputs = [align_input(j.frame.pixels, j.face.detection.landmarks) for j in new]
        outputs = [align_restored(j.restored, j.face.detection.landmarks, j.face.matrix) for j in jobs]
        emb = self.recognizer.embed(np.stack(inputs + outputs))
        for j, e in zip(new, emb.vectors[: len(new)]):
            self._faces[id(j)] = _Face(input_emb=e, requested=float(j.strength))
        states = [self._faces[id(j)] for j in jobs]
        cos = cosine(np.stack([s.input_emb for s in states]), emb.vectors[len(new) :])
        cos = np.where(np.isfinite(cos), cos, -1.0)  # a NaN crop (broken restorer) is no longer the person
        retry: list[FaceState] = []
        for j, st, c in zip(jobs, states, cos):
            c = round(float(c), 4)
            st.attempts.append(Attempt(strength=round(float(j.strength), 4), cosine=c))
            if self.guard is None or c >= self.guard:
                self._finish(j, st, c, RESTORED if len(st.attempts) == 1 else LOWER)
                continue
            factors = self.cfg.retry_factors
            if len(st.attempts) <= len(factors) and st.requested > 0:
                j.set_strength(st.requested * factors[len(st.attempts) - 1])
                retry.append(j)
                continue
            self._keep_original(j)
            st.attempts.append(Attempt(strength=0.0, cosine=1.0))
            self._finish(j, st, 1.0, ORIGINAL)
        return retry

    # ---------------------------------------------------------------------------------------------- decisions

    @staticmethod
    def _keep_original(j: FaceState) -> None:
        j.restored = to_float(j.crop)
        j.mask = np.zeros(j.crop.shape[:2], np.float32)  # paste-back leaves every input pixel as is
        j.set_strength(0.0)

    def _finish(self, j: FaceState, st: _Face, c: float, decision: str) -> None:
        del self._faces[id(j)]
        first = st.attempts[0].cosine
        flag = bool(first < self.cfg.flag_below or decision != RESTORED)
        if self.guard is not None:
            j.record.attempts = st.attempts
        assert self.recognizer is not None
        j.record.identity = Identity(model=self.recognizer.name, cosine=c, flag=flag, threshold=self.cfg.flag_below,
                                     min_identity=self.guard, decision=decision, thumbs=self._thumbs(j))
        flagged = {"source": j.record.source, "face_index": j.record.face_index,
                   **({"frame": j.frame.index} if j.frame.kind == "video" else {}),
                   "cosine": c, "first_cosine": first, "decision": decision} if flag else None
        self.tally.add(j.record.restorer, c, decision, flagged)

    def _thumbs(self, j: FaceState) -> dict[str, str] | None:
        if self.thumbs is None:
            return None
        frame = j.frame.index if j.frame.kind == "video" else None
        stem = thumb_stem(j.record.source, j.face.index, frame)
        return self.thumbs.write(stem, j.crop, j.restored)

    # ------------------------------------------------------------------------------------------------ summary

    def summary(self) -> IdentitySummary | None:
        if self.thumbs is not None:
            self.thumbs.close()
        return self.tally.summary()

    def take_tally(self) -> IdentityTally:
        """The faces finished since the last call (their thumbnails written), and a fresh tally for the next ones."""
        if self.thumbs is not None:
            self.thumbs.close()  # waits for every queued thumbnail; the next write starts a new writer thread
        tally, self.tally = self.tally, self.tally.fresh()
        return tally


def build_identity_stage(cfg: "RunConfig", store: "WeightsStore", device: str,
                         execution: "Execution | None" = None) -> IdentityStage:
    """The stage for a run: recognizer per ``--recognizer`` (``auto`` degrades to no identity, with a reason in
    summary.json, when no recognizer can be had, e.g. offline), thumbnails next to report.html."""
    from facerest_cli.errors import WeightsError
    from facerest_cli.identity.recognizers import build_recognizer, resolve

    icfg = cfg.identity
    thumbs = ThumbWriter(Path(cfg.output.out_dir))
    name = resolve(icfg.recognizer, store)
    if name is None:
        if icfg.min_identity is not None:
            from facerest_cli.errors import UsageError

            raise UsageError("--min-identity needs a recognizer; --recognizer none turns identity off")
        return IdentityStage(None, icfg, thumbs)
    try:
        recognizer = build_recognizer(name, store, device, execution)
    except WeightsError as e:
        if icfg.recognizer != "auto" or icfg.min_identity is not None:
            raise  # asked for by name, or a guard was asked for: never run silently without it
        why = str(e).split(";")[0]
        hint = f"`facerest weights fetch {name}`, or `facerest weights import` its file"
        return IdentityStage(None, icfg, thumbs, skipped=f"identity report skipped: {why} ({hint})")
    return IdentityStage(recognizer, icfg, thumbs)
