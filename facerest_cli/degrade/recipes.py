"""Degradation recipes: how each paper made its low-quality faces, as a random draw of recorded steps.

``draw(recipe, rng, width, height)`` returns the list of steps (``degrade.ops``) with every random value already
drawn, so the sidecar JSON holds the complete recipe instance and ``ops.apply_steps`` replays it exactly. Ranges
``U(a, b)`` are continuous uniform; ``{a:b}`` is the integer grid a, a+1, ..., b and ``{a:s:b}`` the grid with
step s (MATLAB colon notation, as the papers write them).

* ``gfpgan`` -- GFPGAN ``options/train_gfpgan_v1.yml`` with ``gfpgan/data/ffhq_degradation_dataset.py``: blur
  kernel 41x41, iso/aniso Gaussian 50/50 with sigma U(0.1, 10) (aniso: sigma_x, sigma_y and a rotation
  U(-pi, pi)); downsample by r ~ U(0.8, 8) to ``(int(w // r), int(h // r))`` (bilinear); Gaussian noise sigma
  U(0, 20); JPEG q = int(U(60, 100)); bilinear back to the input size; colour jitter (shift U(-20, 20)/255 per
  channel) with p 0.3; grayscale with p 0.01; torchvision-style brightness (0.5, 1.5), contrast (0.5, 1.5),
  saturation (0, 1.5), hue (-0.1, 0.1) jitter in random order with p 0.3 (``color_jitter_pt_prob``).
* ``codeformer`` -- CodeFormer ``options/CodeFormer_stage3.yml`` (stage III, "small" degradation) with
  ``basicsr/data/ffhq_blind_joint_dataset.py``: the same form, sigma U(0.1, 10), r ~ U(1, 12), noise U(0, 15),
  JPEG int(U(60, 100)); no colour jitter or gray (not set in that config).
* ``codeformer-large`` -- the same file's ``*_large`` ranges (stage II): sigma U(1, 15), r ~ U(4, 30), noise
  U(0, 20), JPEG int(U(30, 80)).
* ``sgpn`` -- SGPN (Zhu et al., "Blind face restoration via integrating face shape and generative priors", CVPR
  2022), ``I_LQ = ((I_HQ * k) down_r + n_sigma)_JPEG_q``: k is an isotropic Gaussian with rho in {0:0.1:5} or
  (50/50) a generated motion-blur kernel (``kernels.motion_kernel``, 41x41: SGPN's 32 kernels are not public);
  r in {1:20}; sigma in {0:10}; q in {30:70}. The whole degradation, back to the input size (bilinear), is
  applied once or twice (50/50).
* ``frex`` -- the same form with FREx's ranges: Gaussian sigma in {0:20}, motion blur of kernel size
  {21:10:71}, r in {0:16} (r <= 1: no resampling), noise delta in {0:50}, q in {50:100}; "several degradations
  at random": each of the five is applied with p 0.5 (if none is drawn, one is chosen uniformly), in the order
  blur, motion blur, downsample, noise, JPEG, then back to the input size.
* ``bicubic-xN`` -- face super-resolution: MATLAB bicubic (antialiased) down by N, then bicubic back up.

Choices not fixed by the sources are stated above (motion kernels, sgpn/frex blur-vs-motion and per-operation
probabilities, bilinear resampling) and recorded per output.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from facerest_cli.errors import UsageError

RECIPES = ("gfpgan", "codeformer", "codeformer-large", "sgpn", "frex", "bicubic-xN")
SOURCES = {
    "gfpgan": "GFPGAN options/train_gfpgan_v1.yml + gfpgan/data/ffhq_degradation_dataset.py",
    "codeformer": "CodeFormer options/CodeFormer_stage3.yml (blur_sigma, downsample_range, noise_range, jpeg_range)",
    "codeformer-large": "CodeFormer options/CodeFormer_stage3.yml (*_large ranges)",
    "sgpn": "SGPN (Zhu et al., CVPR 2022), Sec. 4: ((I*k)down_r + n_sigma)_JPEG_q, repeated once or twice",
    "frex": "FREx degradation ranges (Gaussian/motion blur, down r, noise, JPEG applied at random)",
    "bicubic": "face super-resolution: MATLAB bicubic (BasicSR imresize) down xN and back up",
}

_GAUSS = {"gfpgan": (0.1, 10.0), "codeformer": (0.1, 10.0), "codeformer-large": (1.0, 15.0)}
_DOWN = {"gfpgan": (0.8, 8.0), "codeformer": (1.0, 12.0), "codeformer-large": (4.0, 30.0)}
_NOISE = {"gfpgan": (0.0, 20.0), "codeformer": (0.0, 15.0), "codeformer-large": (0.0, 20.0)}
_JPEG = {"gfpgan": (60, 100), "codeformer": (60, 100), "codeformer-large": (30, 80)}


def check_recipe(name: str) -> tuple[str, int | None]:
    """``name`` -> (family, N for bicubic-xN); a ``UsageError`` for unknown names."""
    m = re.fullmatch(r"bicubic-x(\d+)", name)
    if m:
        n = int(m.group(1))
        if n < 2:
            raise UsageError(f"--recipe {name}: the factor must be 2 or more")
        return "bicubic", n
    if name in _GAUSS or name in ("sgpn", "frex"):
        return name, None
    raise UsageError(f"unknown --recipe {name!r}; choose gfpgan, codeformer, codeformer-large, sgpn, frex or "
                     "bicubic-xN (e.g. bicubic-x8)")


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _gaussian_step(rng: np.random.Generator, lo: float, hi: float) -> dict[str, Any]:
    """BasicSR ``random_mixed_kernels(['iso', 'aniso'], [0.5, 0.5], 41, sigma, sigma, [-pi, pi])``."""
    if rng.uniform() < 0.5:
        return {"op": "blur", "kind": "iso", "kernel_size": 41, "sigma_x": float(rng.uniform(lo, hi))}
    sx, sy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    return {"op": "blur", "kind": "aniso", "kernel_size": 41, "sigma_x": sx, "sigma_y": sy,
            "theta": float(rng.uniform(-math.pi, math.pi))}


def _basicsr_family(name: str, rng: np.random.Generator, w: int, h: int) -> list[dict[str, Any]]:
    steps = [_gaussian_step(rng, *_GAUSS[name])]
    r = float(rng.uniform(*_DOWN[name]))
    # int(w // r) as the datasets compute it; at least one pixel.
    steps.append({"op": "resize", "role": "downsample", "factor": r, "size": [max(1, int(w // r)), max(1, int(h // r))],
                  "interpolation": "linear"})
    steps.append({"op": "noise", "sigma": float(rng.uniform(*_NOISE[name])), "seed": _seed(rng), "gray": False})
    steps.append({"op": "jpeg", "quality": int(rng.uniform(*_JPEG[name]))})
    steps.append({"op": "resize", "role": "restore_size", "size": [w, h], "interpolation": "linear"})
    if name == "gfpgan":
        if rng.uniform() < 0.3:
            shift = rng.uniform(-20 / 255.0, 20 / 255.0, 3).astype(np.float32)
            steps.append({"op": "color_jitter", "shift": [float(v) for v in shift]})
        if rng.uniform() < 0.01:
            steps.append({"op": "gray"})
        if rng.uniform() < 0.3:
            order = [["brightness", "contrast", "saturation", "hue"][i] for i in rng.permutation(4)]
            factors = {"brightness": float(rng.uniform(0.5, 1.5)), "contrast": float(rng.uniform(0.5, 1.5)),
                       "saturation": float(rng.uniform(0.0, 1.5)), "hue": float(rng.uniform(-0.1, 0.1))}
            steps.append({"op": "color_jitter_pt", "order": order, "factors": factors})
    return steps


def _iso_gaussian(sigma: float) -> dict[str, Any]:
    size = max(3, 2 * math.ceil(3 * sigma) + 1)  # +-3 sigma holds 99.7% of the mass
    return {"op": "blur", "kind": "iso", "kernel_size": size, "sigma_x": float(sigma)}


def _down(r: int, w: int, h: int) -> dict[str, Any]:
    return {"op": "resize", "role": "downsample", "factor": int(r), "size": [max(1, w // r), max(1, h // r)],
            "interpolation": "linear"}


def _sgpn(rng: np.random.Generator, w: int, h: int) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    repeats = int(rng.integers(1, 3))
    for rep in range(repeats):
        if rng.uniform() < 0.5:
            steps.append({**_iso_gaussian(round(float(rng.integers(0, 51)) * 0.1, 1)), "repeat": rep})
        else:
            steps.append({"op": "motion_blur", "kernel_size": 41, "seed": _seed(rng), "repeat": rep})
        r = int(rng.integers(1, 21))
        if r > 1:
            steps.append({**_down(r, w, h), "repeat": rep})
        steps.append({"op": "noise", "sigma": float(rng.integers(0, 11)), "seed": _seed(rng), "gray": False,
                      "repeat": rep})
        steps.append({"op": "jpeg", "quality": int(rng.integers(30, 71)), "repeat": rep})
        steps.append({"op": "resize", "role": "restore_size", "size": [w, h], "interpolation": "linear", "repeat": rep})
    return steps


def _frex(rng: np.random.Generator, w: int, h: int) -> list[dict[str, Any]]:
    names = ("blur", "motion_blur", "downsample", "noise", "jpeg")
    chosen = [n for n in names if rng.uniform() < 0.5]
    if not chosen:
        chosen = [names[int(rng.integers(0, len(names)))]]
    steps: list[dict[str, Any]] = []
    for n in names:
        if n not in chosen:
            continue
        if n == "blur":
            steps.append(_iso_gaussian(float(rng.integers(0, 21))))
        elif n == "motion_blur":
            size = int(rng.choice([21, 31, 41, 51, 61, 71]))
            steps.append({"op": "motion_blur", "kernel_size": size, "seed": _seed(rng)})
        elif n == "downsample":
            r = int(rng.integers(0, 17))
            if r > 1:
                steps.append(_down(r, w, h))
            else:
                steps.append({"op": "resize", "role": "downsample", "factor": r, "size": [w, h],
                              "interpolation": "linear"})
        elif n == "noise":
            steps.append({"op": "noise", "sigma": float(rng.integers(0, 51)), "seed": _seed(rng), "gray": False})
        else:
            steps.append({"op": "jpeg", "quality": int(rng.integers(50, 101))})
    steps.append({"op": "resize", "role": "restore_size", "size": [w, h], "interpolation": "linear"})
    return steps


def _bicubic(n: int, w: int, h: int) -> list[dict[str, Any]]:
    return [
        {"op": "resize", "role": "downsample", "factor": n, "size": [math.ceil(w / n), math.ceil(h / n)],
         "interpolation": "bicubic"},
        {"op": "resize", "role": "restore_size", "size": [w, h], "interpolation": "bicubic"},
    ]


def draw(recipe: str, rng: np.random.Generator, width: int, height: int) -> list[dict[str, Any]]:
    """Every step of one degradation of a ``width x height`` image, with its random values drawn from ``rng``."""
    family, n = check_recipe(recipe)
    if family == "bicubic":
        assert n is not None
        return _bicubic(n, width, height)
    if family == "sgpn":
        return _sgpn(rng, width, height)
    if family == "frex":
        return _frex(rng, width, height)
    return _basicsr_family(family, rng, width, height)


def source(recipe: str) -> str:
    return SOURCES[check_recipe(recipe)[0]]
