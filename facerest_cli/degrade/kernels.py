"""Blur kernels of the degradation recipes: BasicSR's bivariate Gaussian, and a seeded motion-blur generator.

Gaussian (``basicsr/data/degradations.py``: ``mesh_grid``, ``sigma_matrix2``, ``pdf2``, ``bivariate_Gaussian``):
a ``k x k`` grid centred on 0, ``exp(-0.5 x^T S^-1 x)`` with ``S = R diag(sx^2, sy^2) R^T`` (R a rotation by
``theta``; isotropic: ``S = sx^2 I``), normalised to sum 1. ``sigma = 0`` gives the identity kernel (a single 1):
the limit of a Gaussian, and how recipes whose sigma grid starts at 0 (SGPN, FREx) mean "no blur".

Motion blur: the 32 kernels SGPN used are not public, so ``motion_kernel(size, seed)`` generates camera-shake
kernels in the spirit of Boracchi & Foi (2012), "Modeling the performance of image restoration from motion
blur" (the random-trajectory model DeblurGAN also uses), written from the description, not from code:

1. From ``np.random.default_rng(seed)``: the path length ``L = U(0.3, 1.0) * (size - 1)`` pixels, the start
   direction ``theta0 = U(0, 2 pi)``, a curviness ``omega_sd = U(0, 0.35)`` rad per step, and a shake
   probability ``p_shake = U(0, 0.1)``.
2. A 96-step walk with inertia: each step turns by ``N(0, omega_sd)`` and, with probability ``p_shake``, by an
   extra ``U(-pi/2, pi/2)`` jerk; step lengths are ``exp(N(0, 0.25))`` (uneven speed), scaled so the path is
   ``L`` long.
3. The path is centred on its mean (the kernel does not shift the image), rasterised by bilinear splatting of
   each of 8 sub-samples per step into the ``size x size`` grid (points outside are dropped, never wrapped),
   and normalised to sum 1.

The same ``(size, seed)`` always gives the same kernel; the recipes record both (and the drawn path parameters)
in each output's sidecar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MOTION_STEPS = 96
MOTION_SUBSAMPLES = 8


def mesh_grid(size: int) -> np.ndarray:
    """``(size, size, 2)`` coordinates (x, y) centred on 0 (BasicSR ``mesh_grid``)."""
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Normalised ``(size, size)`` float64 bivariate Gaussian; ``sigma_y=None`` is isotropic."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    if sigma_x <= 0 and (sigma_y is None or sigma_y <= 0):
        k = np.zeros((size, size))
        k[size // 2, size // 2] = 1.0
        return k
    if sigma_y is None:
        cov = np.array([[sigma_x**2, 0.0], [0.0, sigma_x**2]])
    else:
        d = np.array([[sigma_x**2, 0.0], [0.0, sigma_y**2]])
        u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        cov = u @ d @ u.T
    grid = mesh_grid(size)
    k = np.exp(-0.5 * np.sum((grid @ np.linalg.inv(cov)) * grid, axis=2))
    return k / np.sum(k)


@dataclass(frozen=True)
class MotionPath:
    """The drawn parameters of one motion kernel (recorded in the sidecar)."""

    length: float
    theta0: float
    omega_sd: float
    p_shake: float
    shakes: int

    def to_dict(self) -> dict:
        return {"length_px": round(self.length, 6), "theta0": round(self.theta0, 6),
                "omega_sd": round(self.omega_sd, 6), "p_shake": round(self.p_shake, 6), "shakes": self.shakes}


def motion_kernel(size: int, seed: int) -> tuple[np.ndarray, MotionPath]:
    """A ``(size, size)`` float64 camera-shake kernel (sum 1) and the path parameters drawn for it."""
    if size < 3 or size % 2 != 1:
        raise ValueError(f"motion kernel size must be odd and >= 3, got {size}")
    rng = np.random.default_rng(seed)
    length = rng.uniform(0.3, 1.0) * (size - 1)
    theta = theta0 = rng.uniform(0.0, 2 * math.pi)
    omega_sd = rng.uniform(0.0, 0.35)
    p_shake = rng.uniform(0.0, 0.1)
    turns = rng.normal(0.0, 1.0, MOTION_STEPS) * omega_sd
    shake = rng.uniform(size=MOTION_STEPS) < p_shake
    jerks = rng.uniform(-math.pi / 2, math.pi / 2, MOTION_STEPS) * shake
    speeds = np.exp(rng.normal(0.0, 0.25, MOTION_STEPS))
    speeds *= length / speeds.sum()
    pts = [np.zeros(2)]
    for t in range(MOTION_STEPS):
        theta += turns[t] + jerks[t]
        pts.append(pts[-1] + speeds[t] * np.array([math.cos(theta), math.sin(theta)]))
    path = np.array(pts)
    # Sub-samples along each segment, so a long fast step still leaves a continuous streak.
    f = np.linspace(0.0, 1.0, MOTION_SUBSAMPLES, endpoint=False)[:, None]
    samples = np.concatenate([path[:-1][i] + f * (path[i + 1] - path[i]) for i in range(MOTION_STEPS)] + [path[-1:]])
    samples = samples - samples.mean(axis=0) + (size - 1) / 2.0
    k = np.zeros((size, size))
    x0, y0 = np.floor(samples[:, 0]).astype(int), np.floor(samples[:, 1]).astype(int)
    fx, fy = samples[:, 0] - x0, samples[:, 1] - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xs, ys = x0 + dx, y0 + dy
        ok = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
        np.add.at(k, (ys[ok], xs[ok]), w[ok])
    if k.sum() <= 0:  # cannot happen for a centred path shorter than the kernel; kept as a guard
        k[size // 2, size // 2] = 1.0
    return k / k.sum(), MotionPath(float(length), float(theta0), float(omega_sd), float(p_shake), int(shake.sum()))
