"""What detection did, counted: passes, candidates, merges and every rejection with its reason.

``DetectStats`` is additive (``add``) so a run sums its images; ``to_dict()`` is the JSON form for summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

# Every reason a candidate can be rejected for (the keys of ``DetectStats.rejected``).
REJECT_REASONS = (
    "non_finite",  # a NaN/inf coordinate or score from the network (dropped before any NMS)
    "low_score",  # below --det-threshold after merging passes (and detectors, for auto)
    "eye_distance_floor",  # eyes closer than DetectConfig.min_eye_distance pixels: a degenerate box
    "landmarks_outside_box",  # a landmark far outside its own box
    "landmark_scale",  # landmarks far too small or too large for the box
    "eyes_swapped",  # the image-left eye is on the face's right
    "mouth_above_eyes",  # the mouth is not below the eye line
    "nose_outside",  # the nose is not between the eyes and the mouth
    "part_of_larger_face",  # a box mostly inside a larger, well-scoring face: an eye, a nose, a chin
    "duplicate",  # overlaps a better face after merging (final NMS)
)


@dataclass
class DetectStats:
    """Counts for one image or summed over a run.

    ``passes``: network calls (tiles and pyramid levels, every detector); ``candidates``: raw boxes above each
    network's candidate floor, before merging; ``merged``: candidates folded into a face found by another pass or
    detector; ``rejected``: reason -> count (``REJECT_REASONS``), never silent; ``kept_implausible``: candidates
    that failed the layout check but were kept because of ``--keep-all-detections``; ``faces``: detections
    returned (before ``--faces`` / ``--min-face`` selection); ``seconds``: wall time in detection.
    """

    key: ClassVar[str] = "detection"  # summary.json block (a ``types.StageSummary``)

    images: int = 0
    passes: int = 0
    candidates: int = 0
    merged: int = 0
    faces: int = 0
    kept_implausible: int = 0
    seconds: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, n: int = 1) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        if n:
            self.rejected[reason] = self.rejected.get(reason, 0) + int(n)

    def add(self, other: "DetectStats") -> None:
        self.images += other.images
        self.passes += other.passes
        self.candidates += other.candidates
        self.merged += other.merged
        self.faces += other.faces
        self.kept_implausible += other.kept_implausible
        self.seconds += other.seconds
        for k, v in other.rejected.items():
            self.rejected[k] = self.rejected.get(k, 0) + v

    def copy(self) -> "DetectStats":
        out = DetectStats()
        out.add(self)
        return out

    def to_dict(self) -> dict:
        """JSON-able: ``{"images", "passes", "candidates", "merged", "faces", "kept_implausible", "seconds",
        "rejected": {reason: count, ...}}`` (reasons in ``REJECT_REASONS`` order, zero counts left out)."""
        return {
            "images": self.images,
            "passes": self.passes,
            "candidates": self.candidates,
            "merged": self.merged,
            "faces": self.faces,
            "kept_implausible": self.kept_implausible,
            "seconds": round(self.seconds, 4),
            "rejected": {r: self.rejected[r] for r in REJECT_REASONS if self.rejected.get(r)},
        }

    def to_json(self) -> dict:
        return self.to_dict()

    # The tally protocol of the Ray engine's driver (``merge`` per task, ``summary`` once at the end).
    def merge(self, other: "DetectStats") -> None:
        self.add(other)

    def summary(self) -> "DetectStats":
        return self
