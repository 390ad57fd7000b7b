"""The degradation operations, each a pure function of the image and its recorded parameters.

Images are ``(H, W, 3)`` float32 **BGR** in ``[0, 1]`` (GFPGAN's ``imfrombytes(float32=True)`` convention) until
``to_uint8``. A step is a dict ``{"op": NAME, ...params}`` exactly as written in the sidecar JSON, so
``apply_steps(image, steps)`` replays a sidecar to the same bytes.

Operation semantics follow the code each recipe cites (GFPGAN ``ffhq_degradation_dataset.py``, BasicSR
``degradations.py``, CodeFormer ``ffhq_blind_joint_dataset.py``):

* ``blur`` / ``motion_blur``: ``cv2.filter2D(img, -1, kernel)`` (border reflect-101).
* ``resize``: ``cv2.resize`` to ``size = [w, h]`` with ``interpolation`` linear (the recipes' down- and
  up-sampling) or MATLAB ``bicubic`` (``metrics.imresize``, antialiased when shrinking: ``bicubic-xN``).
* ``noise``: ``img + float32(N(0, 1)) * sigma / 255`` (per pixel and channel; ``gray`` = one field for all
  channels), the normal field drawn from ``np.random.default_rng(seed)``, then clipped to ``[0, 1]``.
* ``jpeg``: clip to ``[0, 1]``, round to 8 bits, ``cv2.imencode('.jpg', quality=q)``, decode, ``/ 255``.
* ``color_jitter``: add ``shift`` (B, G, R) and clip (GFPGAN ``color_jitter``).
* ``color_jitter_pt``: brightness, contrast, saturation and hue adjustments in ``order`` as torchvision's
  functional ops compute them on RGB (GFPGAN ``color_jitter_pt``), re-implemented in numpy.
* ``gray``: ``cv2.COLOR_BGR2GRAY`` replicated to 3 channels.
* Output: ``clip(round(x * 255), 0, 255)`` as uint8 (GFPGAN's final "round and clip").
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from facerest_cli.degrade.kernels import gaussian_kernel, motion_kernel

Step = Mapping[str, Any]


def to_float(img_u8: np.ndarray) -> np.ndarray:
    return img_u8.astype(np.float32) / np.float32(255.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * np.float32(255.0)), 0, 255).astype(np.uint8)


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.filter2D(img, -1, kernel)


def resize(img: np.ndarray, size: Sequence[int], interpolation: str) -> np.ndarray:
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"resize to {w}x{h}")
    if interpolation == "bicubic":
        from facerest_cli.metrics.imresize import imresize

        return np.ascontiguousarray(imresize(img, size=(h, w), antialiasing=True), np.float32)
    import cv2

    flags = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}[interpolation]
    return cv2.resize(img, (w, h), interpolation=flags)


def add_noise(img: np.ndarray, sigma: float, seed: int, gray: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = img.shape[:2] if gray else img.shape
    noise = np.float32(rng.standard_normal(shape)) * np.float32(sigma) / np.float32(255.0)
    if gray:
        noise = np.repeat(noise[:, :, None], img.shape[2], axis=2)
    return np.clip(img + noise, 0, 1)


def jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    """The JPEG bitstream of ``img`` at ``quality`` (what the ``jpeg`` step decodes; ``--keep-stages`` saves it)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", to_uint8(np.clip(img, 0, 1)), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode('.jpg') failed")
    return buf.tobytes()


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    data = jpeg_bytes(img, quality)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(np.float32) / np.float32(255.0)


# torchvision.transforms.functional (tensor backend) colour adjustments, on RGB float in [0, 1].
def _gray_rgb(rgb: np.ndarray) -> np.ndarray:
    return (0.2989 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)[..., None]


def _blend(a: np.ndarray, b: np.ndarray | float, ratio: float) -> np.ndarray:
    return np.clip(ratio * a + (1.0 - ratio) * b, 0, 1).astype(np.float32)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc, minc = rgb.max(axis=-1), rgb.min(axis=-1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = np.ones_like(maxc)
    s = cr / np.where(eqc, ones, maxc)
    cr_div = np.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = np.mod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return np.stack([h, s, maxc], axis=-1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int32) % 6
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(hsv.shape, np.float32)
    for k, (a, b, c) in enumerate(table):
        m = i == k
        out[m] = np.stack([a[m], b[m], c[m]], axis=-1)
    return out


def color_jitter_pt(img_bgr: np.ndarray, order: Sequence[str], factors: Mapping[str, float]) -> np.ndarray:
    rgb = img_bgr[..., ::-1].astype(np.float32)
    for name in order:
        f = float(factors[name])
        if name == "brightness":
            rgb = _blend(rgb, 0.0, f)
        elif name == "contrast":
            rgb = _blend(rgb, float(np.mean(_gray_rgb(rgb))), f)
        elif name == "saturation":
            rgb = _blend(rgb, _gray_rgb(rgb), f)
        elif name == "hue":
            hsv = _rgb_to_hsv(rgb)
            hsv[..., 0] = np.mod(hsv[..., 0] + f, 1.0)
            rgb = _hsv_to_rgb(hsv)
    return np.ascontiguousarray(rgb[..., ::-1], np.float32)


def kernel_of(step: Step) -> np.ndarray:
    if step["op"] == "blur":
        sy = step.get("sigma_y")
        return gaussian_kernel(int(step["kernel_size"]), float(step["sigma_x"]), None if sy is None else float(sy),
                               float(step.get("theta", 0.0)))
    k, _ = motion_kernel(int(step["kernel_size"]), int(step["seed"]))
    return k


def apply_step(img: np.ndarray, step: Step) -> np.ndarray:
    op = step["op"]
    if op in ("blur", "motion_blur"):
        return filter2d(img, kernel_of(step))
    if op == "resize":
        return resize(img, step["size"], step["interpolation"])
    if op == "noise":
        return add_noise(img, float(step["sigma"]), int(step["seed"]), bool(step.get("gray", False)))
    if op == "jpeg":
        return jpeg(img, int(step["quality"]))
    if op == "color_jitter":
        return np.clip(img + np.asarray(step["shift"], np.float32), 0, 1)
    if op == "color_jitter_pt":
        return color_jitter_pt(img, step["order"], step["factors"])
    if op == "gray":
        import cv2

        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    raise ValueError(f"unknown degradation op {op!r}")


def apply_steps(img_u8: np.ndarray, steps: Sequence[Step],
                on_stage: Callable[[int, Step, np.ndarray], None] | None = None) -> np.ndarray:
    """uint8 BGR ``(H, W, 3)`` -> degraded uint8 BGR; ``on_stage(i, step, image)`` after each step."""
    x = to_float(img_u8)
    for i, step in enumerate(steps):
        x = apply_step(x, step)
        if on_stage is not None:
            on_stage(i, step, x)
    return to_uint8(x)
