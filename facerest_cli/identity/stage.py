"""``IdentityStage``: ArcFace cosine between each input face and its restored face, and the identity guard.

After every restore batch the stage aligns the input faces (from the original frames) and the restored faces
(from the restored crops, through the crop matrix) to the ArcFace template and embeds them all in one
recognizer call. It then fills ``record.identity``::

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

The stage must run last among the batch stages: it must see the final crops (colour, masks) and it decides.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facerest_cli.identity.align import align_input, align_restored
from facerest_cli.identity.recognizers import Recognizer, cosine
from facerest_cli.report.thumbs import ThumbWriter, thumb_stem

if TYPE_CHECKING:
    from facerest_cli.config import IdentityConfig, RunConfig
    from facerest_cli.pipeline import FaceJob
    from facerest_cli.weights.cache import WeightsStore

RESTORED, LOWER, ORIGINAL = "restored", "lower strength", "original kept"
MAX_FLAGGED_LISTED = 1000  # summary.json lists at most this many flagged faces (the report lists them all)


@dataclass
class _Face:
    """What the stage keeps about one face while the guard retries it."""

    input_emb: np.ndarray
    requested: float  # the strength asked for (attempt 0)
    attempts: list[dict[str, Any]] = field(default_factory=list)


class IdentityStage:
    name = "identity"

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
        self._cosines: list[float] = []
        self._by_restorer: dict[str, list[float]] = defaultdict(list)
        self._decisions: Counter[str] = Counter()
        self._flagged: list[dict[str, Any]] = []
        self._n_flagged = 0

    @property
    def guard(self) -> float | None:
        return self.cfg.min_identity

    def before_restore(self, jobs: list["FaceJob"]) -> None:
        pass

    def after_restore(self, jobs: list["FaceJob"]) -> list["FaceJob"]:
        if not jobs:
            return []
        if self.recognizer is None:
            for j in jobs:
                j.record.identity = self._thumbs(j)
            return []
        new = [j for j in jobs if id(j) not in self._faces]
        inputs = [align_input(j.frame.image.pixels, j.face.detection.landmarks) for j in new]
        outputs = [align_restored(j.restored, j.face.detection.landmarks, j.face.matrix) for j in jobs]
        emb = self.recognizer.embed(np.stack(inputs + outputs))
        for j, e in zip(new, emb.vectors[: len(new)]):
            self._faces[id(j)] = _Face(input_emb=e, requested=float(j.strength))
        states = [self._faces[id(j)] for j in jobs]
        cos = cosine(np.stack([s.input_emb for s in states]), emb.vectors[len(new) :])
        cos = np.where(np.isfinite(cos), cos, -1.0)  # a NaN crop (broken restorer) is no longer the person
        retry: list[FaceJob] = []
        for j, st, c in zip(jobs, states, cos):
            c = round(float(c), 4)
            st.attempts.append({"strength": round(float(j.strength), 4), "cosine": c})
            if self.guard is None or c >= self.guard:
                self._finish(j, st, c, RESTORED if len(st.attempts) == 1 else LOWER)
                continue
            factors = self.cfg.retry_factors
            if len(st.attempts) <= len(factors) and st.requested > 0:
                j.strength = st.requested * factors[len(st.attempts) - 1]
                retry.append(j)
                continue
            self._keep_original(j)
            st.attempts.append({"strength": 0.0, "cosine": 1.0})
            self._finish(j, st, 1.0, ORIGINAL)
        return retry

    # ---------------------------------------------------------------------------------------------- decisions

    @staticmethod
    def _keep_original(j: "FaceJob") -> None:
        crop = j.crop
        maxval = 65535.0 if crop.dtype == np.uint16 else 255.0
        j.frame.restored[j.i] = crop.astype(np.float32) / np.float32(maxval)
        j.frame.masks[j.i] = np.zeros(crop.shape[:2], np.float32)  # paste-back leaves every input pixel as is
        j.strength = 0.0

    def _finish(self, j: "FaceJob", st: _Face, c: float, decision: str) -> None:
        del self._faces[id(j)]
        first = st.attempts[0]["cosine"]
        flag = bool(first < self.cfg.flag_below or decision != RESTORED)
        ident: dict[str, Any] = {"model": self.recognizer.name if self.recognizer else None, "cosine": c,
                                 "flag": flag, "threshold": self.cfg.flag_below}
        if self.guard is not None:
            ident["min_identity"] = self.guard
            j.record.attempts = st.attempts
        ident["decision"] = decision
        ident.update(self._thumbs(j))
        j.record.identity = ident
        self._cosines.append(c)
        self._by_restorer[j.record.restorer].append(c)
        self._decisions[decision] += 1
        if flag:
            self._n_flagged += 1
            if len(self._flagged) < MAX_FLAGGED_LISTED:
                self._flagged.append({"source": j.record.source, "face_index": j.record.face_index,
                                      **({"frame": j.frame.index} if j.frame.item.kind == "video" else {}),
                                      "cosine": c, "first_cosine": first, "decision": decision})

    def _thumbs(self, j: "FaceJob") -> dict[str, Any]:
        if self.thumbs is None:
            return {}
        frame = j.frame.index if j.frame.item.kind == "video" else None
        stem = thumb_stem(j.record.source, j.face.index, frame)
        return {"thumbs": self.thumbs.write(stem, j.crop, j.restored)}

    # ------------------------------------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        if self.thumbs is not None:
            self.thumbs.close()
        if self.recognizer is None:
            return {"identity": {"model": None, "skipped": self.skipped}} if self.skipped else {}
        c = np.asarray(self._cosines, np.float64)
        pct = {f"p{q}": round(float(np.percentile(c, q)), 4) for q in (5, 50, 95)} if len(c) else {}
        return {
            "identity": {
                "model": self.recognizer.name,
                "faces": len(c),
                "cosine": {**pct, "mean": round(float(c.mean()), 4)} if len(c) else {},
                "flag_below": self.cfg.flag_below,
                "min_identity": self.guard,
                "flagged": self._n_flagged,
                "flagged_faces": self._flagged,
                "decisions": dict(sorted(self._decisions.items())),
                "per_restorer": {
                    name: {"faces": len(v), "mean": round(float(np.mean(v)), 4)} for name, v in sorted(self._by_restorer.items())
                },
            }
        }


def build_identity_stage(cfg: "RunConfig", store: "WeightsStore", device: str) -> IdentityStage:
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
        recognizer = build_recognizer(name, store, device)
    except WeightsError as e:
        if icfg.recognizer != "auto" or icfg.min_identity is not None:
            raise  # asked for by name, or a guard was asked for: never run silently without it
        why = str(e).split(";")[0]
        hint = f"`facerest weights fetch {name}`, or `facerest weights import` its file"
        return IdentityStage(None, icfg, thumbs, skipped=f"identity report skipped: {why} ({hint})")
    return IdentityStage(recognizer, icfg, thumbs)
