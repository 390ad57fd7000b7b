"""NIQE (Mittal et al., "Making a completely blind image quality analyzer") exactly as BasicSR 1.4.2 computes it
(``basicsr/metrics/niqe.py``), with the official pristine parameters (``niqe_pris_params.npz``, weights.toml entry
``niqe-params``). Lower is better (natural images score about 3-5 on faces here, blurred/JPEG'd ones 9-11).

The float32 steps matter: the AGGD shape ``alpha`` is an argmin over the grid 0.2:0.001:10, and float64
arithmetic moves 0-42 of an image's 250 alphas to a neighbouring grid point (up to 1.5e-3 on the score). So this
port keeps every dtype of the official code:

1. Y = BasicSR's BT.601 Y of the BGR uint8 image (``psnr_ssim.to_y_channel``, float32), rounded half to even,
   cropped to whole 96x96 blocks.
2. Per scale: ``mu`` and ``sigma`` by a 7x7 Gaussian window, ``scipy.ndimage.convolve(mode='nearest')`` with a
   float32 output; MSCN ``(img - mu) / (sigma + 1)`` in float32.
3. Per block (column-major: width index outer, height index inner), 18 features: AGGD (alpha, mean of the two
   betas) of the MSCN block, then (alpha, mean, beta_l, beta_r) of its products with the block shifted by
   (0,1), (1,0), (1,1), (1,-1) (``np.roll``). Block statistics are float32 numpy means, as in the official code.
4. Scale 2: ``imresize(img / 255, 0.5)`` (MATLAB bicubic with antialiasing, torch float32) ``* 255``.
5. The 36-d features of all blocks -> mean and covariance (blocks with NaN dropped from the covariance) ->
   ``sqrt((mu_p - mu)^T pinv((cov_p + cov)/2) (mu_p - mu))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 96
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass(frozen=True)
class NiqeParams:
    """The pristine model: ``mu`` (1, 36), ``cov`` (36, 36) and the 7x7 ``window``, all float64."""

    mu: np.ndarray
    cov: np.ndarray
    window: np.ndarray

    @classmethod
    def load(cls, path: Path | str) -> "NiqeParams":
        from facerest_cli.errors import WeightsError

        try:
            with np.load(Path(path), allow_pickle=False) as z:
                mu, cov, win = z["mu_pris_param"], z["cov_pris_param"], z["gaussian_window"]
        except (OSError, KeyError, ValueError) as e:
            raise WeightsError(f"{path}: not a NIQE parameter file (mu_pris_param, cov_pris_param, "
                               f"gaussian_window): {e}") from None
        if mu.shape != (1, 36) or cov.shape != (36, 36) or win.shape != (7, 7):
            raise WeightsError(f"{path}: NIQE parameters of shapes {mu.shape}, {cov.shape}, {win.shape}; "
                               "expected (1, 36), (36, 36), (7, 7)")
        return cls(mu, cov, win)


def _aggd_grid() -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import gamma

    gam = np.arange(0.2, 10.001, 0.001)  # 9801 candidate shapes
    r = 1.0 / gam
    return gam, np.square(gamma(r * 2)) / (gamma(r) * gamma(r * 3))


def _aggd(block: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float]:
    """(alpha, beta_l, beta_r) of an asymmetric generalised Gaussian fitted by moment matching."""
    from scipy.special import gamma

    gam, r_gam = grid
    b = block.flatten()
    left_std = np.sqrt(np.mean(b[b < 0] ** 2))
    right_std = np.sqrt(np.mean(b[b > 0] ** 2))
    gammahat = left_std / right_std
    rhat = (np.mean(np.abs(b))) ** 2 / np.mean(b**2)
    rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / ((gammahat**2 + 1) ** 2)
    alpha = gam[np.argmin((r_gam - rhatnorm) ** 2)]
    k = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * k, right_std * k


def block_features(block: np.ndarray, grid: tuple[np.ndarray, np.ndarray] | None = None) -> list[float]:
    """The 18 NIQE features of one float32 MSCN block."""
    from scipy.special import gamma

    grid = grid or _aggd_grid()
    alpha, bl, br = _aggd(block, grid)
    feat = [alpha, (bl + br) / 2]
    for shift in _SHIFTS:
        alpha, bl, br = _aggd(block * np.roll(block, shift, axis=(0, 1)), grid)
        feat += [alpha, (br - bl) * (gamma(2 / alpha) / gamma(1 / alpha)), bl, br]
    return feat


def niqe_features(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``(h, w)`` float32 Y (rounded, [0, 255]) -> ``(n_blocks, 36)`` float64: scale-1 then scale-2 features."""
    from scipy.ndimage import convolve

    from facerest_cli.metrics.imresize import imresize

    nh, nw = math.floor(y.shape[0] / BLOCK), math.floor(y.shape[1] / BLOCK)
    if nh == 0 or nw == 0:
        raise ValueError(f"NIQE needs at least one {BLOCK}x{BLOCK} block, got an image of {y.shape[1]}x{y.shape[0]}")
    img = y[: nh * BLOCK, : nw * BLOCK]
    grid = _aggd_grid()
    scales = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(np.square(img), window, mode="nearest") - np.square(mu)))
        mscn = (img - mu) / (sigma + 1)
        bh, bw = BLOCK // scale, BLOCK // scale
        feats = [block_features(mscn[ih * bh : (ih + 1) * bh, iw * bw : (iw + 1) * bw], grid)
                 for iw in range(nw) for ih in range(nh)]
        scales.append(np.array(feats))
        if scale == 1:
            img = imresize(img / 255.0, scale=0.5, antialiasing=True) * 255.0
    return np.concatenate(scales, axis=1)


def niqe_score(features: np.ndarray, params: NiqeParams) -> float:
    """Distance of the image's feature Gaussian to the pristine one (NIQE, Eq. 10)."""
    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    inv = np.linalg.pinv((params.cov + cov) / 2)
    d = params.mu - mu
    return float(np.sqrt(np.squeeze(np.matmul(np.matmul(d, inv), np.transpose(d)))))


def y_for_niqe(img_bgr: np.ndarray, crop_border: int = 0) -> np.ndarray:
    """BGR uint8 ``(H, W, 3)`` (or gray ``(H, W)``) -> the rounded float32 Y that ``niqe()`` receives."""
    from facerest_cli.metrics.psnr_ssim import to_y_channel

    a = np.asarray(img_bgr)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1):
        # A gray image is its own luminance; /255 *255 in float32 as BasicSR's to_y_channel does for 1 channel.
        y = a.reshape(a.shape[0], a.shape[1]).astype(np.float32) / 255.0 * 255.0
    else:
        y = np.squeeze(to_y_channel(a), axis=2)
    if crop_border:
        y = y[crop_border:-crop_border, crop_border:-crop_border]
    return y.round()  # half to even, as MATLAB's results need


def niqe(img_bgr: np.ndarray, params: NiqeParams, crop_border: int = 0) -> float:
    """BasicSR ``calculate_niqe(img, crop_border, input_order='HWC', convert_to='y')``."""
    with np.errstate(divide="ignore", invalid="ignore"):  # empty-side blocks give NaN, dropped as officially
        return niqe_score(niqe_features(y_for_niqe(img_bgr, crop_border), params.window), params)
