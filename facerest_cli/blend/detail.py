"""Detail-preserving paste for faces larger than the restorer's crop (``--detail keep|restored``).

A 600-2,000 px face in a scan goes through a 512 crop: the crop holds frequencies up to its own Nyquist only, so
pasting the restored crop back replaces the scan's finer detail (film grain, pores, hair strands) by an
interpolated, softer version, even when nothing was restored (``--restorer none`` gives 34.6-42.1 dB over the
changed region on ffhq-10's 450-620 px faces). ``keep`` splits the paste by frequency:

    output = up(restored) + (original - up(down(original)))        = original + up(restored - down(original))

* ``down``: the original face region sampled onto the crop grid in float32, exactly as the restorer's input was
  made (``align.warp.warp_to_crop``: area pre-shrink when the face is over 2x the crop, then bilinear, the same
  grey border), so ``down(original)`` is the restorer's input before its 8-bit rounding;
* ``up``: crop -> image with Lanczos-4 (``cv2.warpAffine``, inverse map), used for the restored crop and for the
  low-pass alike.

The filter: ``L = up . down`` is the crop round trip, the projection onto what a crop of scale ``s`` (crop pixels per
image pixel) can hold. Its response is ~1 below the crop's Nyquist (``0.5 * s`` cycles per image pixel along the
crop's axes, a square rotated with the face) and ~0 above it; ``original - L(original)`` is the band the crop cannot
hold. Because the same ``L`` makes both bands, they are complementary by construction: an identity restorer gives
the original back up to the crop's 8-bit rounding (>= 51.6 dB over the changed pixels on ffhq-10 at 1x and 2x,
many faces bit-identical), and a real restorer adds its change, band-limited to the crop, onto the original.
Lanczos-4 rather than the default paste's bilinear: bilinear interpolation images near-Nyquist content of the
restorer's change above the Nyquist (measured: 11 % of the high band's energy on a film-grain face vs 5 %, the
8-bit rounding floor, with Lanczos-4).

It is computed in the face's paste rectangle only (``crop_roi``), never on the whole image, and applies only where
the face is larger than the crop (``s < 1``); smaller faces are pasted as before (their crop already holds every
frequency of the face). The mask, blend and rounding are unchanged, so pixels outside every mask stay bit-identical.
"""

from __future__ import annotations

import numpy as np

DETAIL_MODES = ("keep", "restored")


def face_is_larger_than_crop(matrix: np.ndarray) -> bool:
    """True when the crop samples the face below the frame's resolution (crop pixels per frame pixel < 1)."""
    from facerest_cli.align.warp import affine_scale

    return affine_scale(matrix) < 1.0


def effective_detail(mode: str, matrix: np.ndarray) -> str:
    """What ``--detail mode`` does to the face with canvas matrix ``matrix`` (for report.jsonl): ``keep`` only
    where the face is larger than the crop, else ``restored``."""
    if mode not in DETAIL_MODES:
        raise ValueError(f"detail must be one of {DETAIL_MODES}, got {mode!r}")
    return "keep" if mode == "keep" and face_is_larger_than_crop(matrix) else "restored"


def _roi_matrix(matrix: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0 = roi[0], roi[1]
    m = np.asarray(matrix, np.float64).copy()
    # ROI pixel (u, v) is frame pixel (u + x0, v + y0)
    m[:, 2] = m[:, :2] @ np.array([x0, y0], np.float64) + m[:, 2]
    return m


def up_lanczos(crop: np.ndarray, m_roi: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Crop ``(S, S, C)`` float32 -> ``(h, w, C)`` region with ``m_roi`` (region -> crop), Lanczos-4, 0 outside."""
    import cv2

    h, w = out_hw
    out = cv2.warpAffine(crop, m_roi, (w, h), flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out[:, :, None] if out.ndim == 2 else out


def crop_lowpass(region: np.ndarray, m_roi: np.ndarray, size: int, maxval: float) -> np.ndarray:
    """``L(region)``: the crop round trip of ``region`` (``(h, w, C)`` float32 in ``[0, maxval]``)."""
    from facerest_cli.align.warp import BORDER_VALUE, warp_to_crop

    border = tuple(v * maxval / 255.0 for v in BORDER_VALUE)
    crop = warp_to_crop(region, m_roi, size, border_value=border)
    return up_lanczos(crop, m_roi, region.shape[:2])


def detail_layer(frame: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int], size: int,
                 channels: int | None = None) -> np.ndarray:
    """``frame[roi] - L(frame[roi])``: float32 ``(y1-y0, x1-x0, channels)`` in the frame's units (0..255 or
    0..65535). ``frame``: ``(H, W, C)`` uint8/uint16, the canvas the face is pasted onto; ``matrix``: frame ->
    crop; ``roi``: ``(x0, y0, x1, y1)`` from ``align.warp.crop_roi``; ``channels``: colour channels (default: all
    but an alpha channel)."""
    x0, y0, x1, y1 = roi
    c = channels if channels is not None else (1 if frame.shape[2] in (1, 2) else 3)
    region = frame[y0:y1, x0:x1, :c].astype(np.float32)
    maxval = 65535.0 if frame.dtype == np.uint16 else 255.0
    return region - crop_lowpass(region, _roi_matrix(matrix, roi), size, maxval)


def warp_keep_detail(crop_values: np.ndarray, frame: np.ndarray, matrix: np.ndarray,
                     roi: tuple[int, int, int, int], channels: int | None = None) -> np.ndarray:
    """The face values to blend in with ``--detail keep``: ``up(crop_values) + frame[roi] - L(frame[roi])``.

    ``crop_values``: ``(S, S, C)`` float32 restored crop already in the frame's units; returns the
    ``(y1-y0, x1-x0, C)`` float32 region (the ``keep`` counterpart of ``align.warp.warp_from_crop``).
    ``up`` is linear, so this is computed as ``frame[roi] + up(crop_values - down(frame[roi]))``: one Lanczos warp
    instead of two, and the identity restorer's result is the frame plus its crop's rounding error, warped."""
    from facerest_cli.align.warp import BORDER_VALUE, warp_to_crop

    x0, y0, x1, y1 = roi
    c = channels if channels is not None else (1 if frame.shape[2] in (1, 2) else 3)
    region = frame[y0:y1, x0:x1, :c].astype(np.float32)
    maxval = 65535.0 if frame.dtype == np.uint16 else 255.0
    m_roi = _roi_matrix(matrix, roi)
    border = tuple(v * maxval / 255.0 for v in BORDER_VALUE)
    down = warp_to_crop(region, m_roi, crop_values.shape[0], border_value=border)
    diff = np.ascontiguousarray(crop_values, np.float32).reshape(down.shape) - down
    region += up_lanczos(diff, m_roi, (y1 - y0, x1 - x0))
    return region


def paste_face_detail(image: np.ndarray, restored: np.ndarray, matrix: np.ndarray, mask: np.ndarray,
                      detail: str = "keep", gray: bool = False) -> np.ndarray:
    """Paste one restored crop into a copy of ``image`` with ``--detail`` ``keep`` or ``restored``.

    ``image``: ``(H, W, C)`` uint8/uint16 BGR(A)/gray; ``restored``: ``(S, S, 3)`` float32 BGR [0, 1];
    ``matrix``: image -> crop; ``mask``: ``(S, S)`` float32 [0, 1] crop-space blend mask.
    """
    from facerest_cli.blend.paste import PasteItem, paste_faces

    if detail not in DETAIL_MODES:
        raise ValueError(f"detail must be one of {DETAIL_MODES}, got {detail!r}")
    return paste_faces(image, [PasteItem(restored, matrix, mask, gray=gray, detail=detail)])
