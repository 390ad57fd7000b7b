"""PSNR and SSIM exactly as BasicSR computes them (``basicsr/metrics/psnr_ssim.py``, ``metric_util.py``,
``utils/color_util.py`` at 1.4.2), the numbers face-restoration papers report.

Inputs are ``(H, W, 3)`` uint8 **BGR** images (as decoded), values in ``[0, 255]``.

* Cropping (``crop_border`` pixels from each edge) happens before the Y conversion.
* Y channel: ITU-R BT.601 studio range (MATLAB ``rgb2ycbcr``), not OpenCV's full-range YCrCb:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in ``[0, 1]``, computed in float64 from the
  float32 ``x / 255``, then ``/ 255`` cast to float32 and ``* 255`` (float32). Y is not rounded.
* PSNR: float64 MSE over every pixel and channel, ``10 log10(255^2 / mse)``, ``inf`` for identical images.
* SSIM: 11x11 Gaussian window (sigma 1.5, the outer product of ``cv2.getGaussianKernel``), ``cv2.filter2D`` in
  float64 then the valid ``[5:-5, 5:-5]`` crop, ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``; the map mean
  per channel, then the mean over channels.
"""

from __future__ import annotations

import numpy as np

_Y_BGR = (24.966, 128.553, 65.481)  # BGR order of BT.601's (65.481, 128.553, 24.966) for R, G, B


def to_y_channel(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` BGR uint8 (or float in [0, 255]) -> ``(H, W, 1)`` float32 Y in ``[16, 235]``."""
    x = np.asarray(img).astype(np.float32) / 255.0
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {x.shape}")
    # float32 pixels dotted with a float64 vector: numpy promotes to float64, as BasicSR's np.dot does.
    y = np.dot(x, _Y_BGR) + 16.0
    y = (y / 255.0).astype(np.float32)
    return y[..., None] * 255.0


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    if img.ndim != 3:
        raise ValueError(f"expected (H, W, C) images, got shape {img.shape}")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    return img.astype(np.float64), img2.astype(np.float64)


def psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """BasicSR ``calculate_psnr(img, img2, crop_border, 'HWC', test_y_channel)`` in dB (symmetric)."""
    a, b = _prepare(img, img2, crop_border, y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def _ssim_window() -> np.ndarray:
    import cv2

    k = cv2.getGaussianKernel(11, 1.5)
    return np.outer(k, k.transpose())


def _ssim_channel(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    import cv2

    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]  # valid part for the 11x11 window

    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = filt(a**2) - mu1_sq
    sigma2_sq = filt(b**2) - mu2_sq
    sigma12 = filt(a * b) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """BasicSR ``calculate_ssim(img, img2, crop_border, 'HWC', test_y_channel)`` (per-channel mean)."""
    a, b = _prepare(img, img2, crop_border, y_channel)
    window = _ssim_window()
    return float(np.array([_ssim_channel(a[..., i], b[..., i], window) for i in range(a.shape[2])]).mean())
