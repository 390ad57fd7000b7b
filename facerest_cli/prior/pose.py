"""Head pose from a 3DDFA camera, and the pose-adaptive strength curve.

Pose (3DDFA_V2 ``utils/pose.py`` conventions, written afresh): the 3x4 camera ``P = [s R | t]`` maps model space
(BFM: y up, z towards the viewer) into the 120x120 crop frame (x right, y up; 3DDFA flips y afterwards). ``R`` is rebuilt from the first two rows (normalised, third = their cross product) and read as
Euler angles: yaw = asin(R[2, 0]), pitch = atan2(R[2, 1], R[2, 2]), roll = atan2(R[1, 0], R[0, 0]) (degrees),
with 3DDFA_V2's gimbal-lock branches at |R[2, 0]| > 0.998. A horizontally mirrored image gives the opposite yaw
and roll.

Pose-adaptive strength: the restorer's strength is multiplied by ``pose_factor(|yaw|, knots)``. ``knots`` is a
list of ``(degrees, factor)`` points with increasing degrees; the factor is the first knot's below it, the last
knot's beyond it, and between two knots it follows a smoothstep ``f0 + (f1 - f0) * (3u^2 - 2u^3)`` with
``u = (|yaw| - d0) / (d1 - d0)`` -- flat at every knot, so the strength never jumps. The default
``((30, 1.0), (75, 0.3))`` keeps full strength up to 30 degrees and falls smoothly to 0.3 at 75 degrees and beyond.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEFAULT_KNOTS: tuple[tuple[float, float], ...] = ((30.0, 1.0), (75.0, 0.3))


def decompose_camera(p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """3x4 camera -> (scale, rotation 3x3, translation 3)."""
    p = np.asarray(p, np.float64).reshape(3, 4)
    r1, r2 = p[0, :3], p[1, :3]
    n1, n2 = np.linalg.norm(r1), np.linalg.norm(r2)
    r1, r2 = r1 / n1, r2 / n2
    return (n1 + n2) / 2.0, np.stack([r1, r2, np.cross(r1, r2)]), p[:, 3].copy()


def rotation_to_angles(r: np.ndarray) -> tuple[float, float, float]:
    """Rotation matrix -> (yaw, pitch, roll) in degrees (3DDFA_V2 order and branches)."""
    if r[2, 0] > 0.998:
        yaw, roll = math.pi / 2, 0.0
        pitch = roll + math.atan2(-r[0, 1], -r[0, 2])
    elif r[2, 0] < -0.998:
        yaw, roll = -math.pi / 2, 0.0
        pitch = -roll + math.atan2(r[0, 1], r[0, 2])
    else:
        yaw = math.asin(r[2, 0])
        c = math.cos(yaw)
        pitch = math.atan2(r[2, 1] / c, r[2, 2] / c)
        roll = math.atan2(r[1, 0] / c, r[0, 0] / c)
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def camera_angles(p: np.ndarray) -> tuple[float, float, float]:
    return rotation_to_angles(decompose_camera(p)[1])


def parse_knots(text: str) -> tuple[tuple[float, float], ...]:
    """``"30:1,75:0.3"`` -> ((30.0, 1.0), (75.0, 0.3)); raises ValueError with a one-line reason."""
    knots = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        deg, sep, fac = part.partition(":")
        if not sep:
            raise ValueError(f"knot {part!r} is not DEGREES:FACTOR")
        knots.append((float(deg), float(fac)))
    check_knots(knots)
    return tuple(knots)


def check_knots(knots: Sequence[tuple[float, float]]) -> None:
    if not knots:
        raise ValueError("at least one knot DEGREES:FACTOR is needed")
    degs = [d for d, _ in knots]
    if any(not 0.0 <= d <= 90.0 for d in degs) or any(b <= a for a, b in zip(degs, degs[1:])):
        raise ValueError(f"knot degrees must increase strictly within [0, 90], got {degs}")
    if any(not 0.0 <= f <= 1.0 for _, f in knots):
        raise ValueError(f"knot factors must be within [0, 1], got {[f for _, f in knots]}")


def pose_factor(abs_yaw: float, knots: Sequence[tuple[float, float]] = DEFAULT_KNOTS) -> float:
    """Strength multiplier for a face turned ``abs_yaw`` degrees (see module docstring)."""
    y = abs(float(abs_yaw))
    if y <= knots[0][0]:
        return float(knots[0][1])
    for (d0, f0), (d1, f1) in zip(knots, knots[1:]):
        if y <= d1:
            u = (y - d0) / (d1 - d0)
            return float(f0 + (f1 - f0) * u * u * (3.0 - 2.0 * u))
    return float(knots[-1][1])
