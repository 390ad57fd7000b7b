"""``--compat gfpgan``: GFPGAN's official paste-back path (``GFPGANer.enhance`` after detection), reproduced.

A user moving from GFPGAN scripts gets the same pixels. Every constant and call is the official one
(TencentARC/GFPGAN 7552a77 ``gfpgan/utils.py`` with xinntao/facexlib 260620a ``FaceRestoreHelper``), in the
official order, with the same OpenCV calls and the same float64 expressions, because the final
``astype(uint8)`` *truncates*: a blend that is numerically different but equivalent flips 6-14 % of the masked
pixels by one level. Checked bit for bit against ``../shared/checkpoint-formats/pipelines/gfpgan_pipeline.npz``.

The path, per image:

1. **Eye-distance filter**: a face whose eye distance (float32 ``norm(left_eye - right_eye)``) is ``< 5`` px is
   skipped (strict: exactly 5.0 is kept).
2. **Alignment**: ``cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)`` onto the FFHQ-512
   template (image -> crop; LMEDS may drop a landmark as an outlier), then ``cv2.warpAffine`` to 512x512,
   INTER_LINEAR, BORDER_CONSTANT with the grey ``(135, 133, 132)`` (BGR).
3. **Restore** every crop (uint8 BGR in and out, rounding as ``tensor2img``).
4. **Background**: ``cv2.resize(input or bg_img, (int(w*upscale), int(h*upscale)), INTER_LANCZOS4)``.
5. **Inverse matrix**: ``cv2.invertAffineTransform(M) * upscale``, plus ``0.5 * upscale`` on the translation when
   ``upscale > 1``; the restored face is warped back with it (INTER_LINEAR, border 0).
6. **Mask**, parse path (``use_parse=True``, GFPGAN's default): the parse labels of the *restored* face mapped by
   ``MASK_COLORMAP`` (255 for classes 1-13 and 15: skin, brows, eyes, glasses, ears, nose, mouth, lips, **hair**
   and **earrings**; 0 for background, hat, necklace, neck, cloth), ``GaussianBlur((101, 101), 11)`` twice
   (float64), a 10 px zero border, ``/255``, warped back with ``flags=3`` (INTER_AREA, which warpAffine runs as
   bilinear). Square path (``use_parse=False``): a warped all-ones float32 mask, eroded by a
   ``int(2*upscale)`` square, area-dependent erosion and blur (``w_edge = int(sqrt(area)) // 20``).
7. **Blend** onto the running image in face order, ``m * face + (1 - m) * img`` (float64; float32 on the square
   path), then ``astype(uint8)`` (truncation; uint16 if the result exceeds 256).

Where our own defaults differ (the pipeline's ``paste``): we fit the 5 landmarks by least squares (no outlier
rejection, deterministic across OpenCV builds), keep hair out of the mask, round instead of truncating, and never
make full-image float64 copies. See ``/work/notes/readme_upsample.md`` (README text) for the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from facerest_cli.types import AlignedFace, DecodedImage, Detection

# facexlib FaceRestoreHelper: the 5-point FFHQ template for 512x512 crops (image-left eye first), float64.
FACE_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043],
     [313.08905, 371.15118]],
    np.float64,
)
FACE_SIZE = 512
BORDER_VALUE = (135, 133, 132)  # BGR grey of the crop padding
EYE_DIST_THRESHOLD = 5
# Parse class -> mask value (ParseNet's 19 classes): hair (13) and earrings (15) are pasted.
MASK_COLORMAP = (0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0)
PARSE_BLUR_KSIZE = (101, 101)
PARSE_BLUR_SIGMA = 11
MASK_BORDER = 10

RestoreFn = Callable[[np.ndarray], np.ndarray]  # (N, 512, 512, 3) uint8 BGR -> same
ParseFn = Callable[[np.ndarray], np.ndarray]  # restored (N, 512, 512, 3) uint8 BGR -> (N, 512, 512) int labels


@dataclass(frozen=True)
class CompatFace:
    """One pasted face. Matrices are ``(2, 3)`` float64; ``affine`` maps input image -> crop, ``inverse_affine``
    maps crop -> output canvas (after ``upscale`` and the ``0.5 * upscale`` offset), as the official warps use it."""

    row: int  # index of the detection (landmark set) it came from
    affine: np.ndarray
    inliers: np.ndarray  # (5,) uint8: which landmarks LMEDS kept
    inverse_affine: np.ndarray
    crop: np.ndarray  # (512, 512, 3) uint8 BGR
    restored: np.ndarray  # (512, 512, 3) uint8 BGR


@dataclass(frozen=True)
class CompatResult:
    output: np.ndarray  # (int(h*upscale), int(w*upscale), 3) uint8 BGR
    faces: tuple[CompatFace, ...]
    eye_dist: np.ndarray  # (N,) float32, one per input landmark set
    kept_rows: tuple[int, ...]


def eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 5, 2)`` -> ``(N,)`` float32 eye distances computed as the official filter does (float32 norm)."""
    lm = np.asarray(landmarks, np.float32)
    return np.array([np.linalg.norm(np.array([p[0, 0] - p[1, 0], p[0, 1] - p[1, 1]], np.float32)) for p in lm],
                    np.float32).reshape(len(lm))


def align_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LMEDS similarity onto the template and the 512 crop: returns ``(affine, inliers, crop)``."""
    import cv2

    lm = np.asarray(landmarks, np.float32).reshape(5, 2)
    affine, inliers = cv2.estimateAffinePartial2D(lm, FACE_TEMPLATE_512, method=cv2.LMEDS)
    if affine is None:
        raise UsageError("--compat gfpgan: LMEDS found no similarity for a face's landmarks (degenerate points)")
    crop = cv2.warpAffine(image, affine, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER_VALUE)
    return affine, inliers.reshape(-1).astype(np.uint8), crop


def inverse_affine(affine: np.ndarray, upscale: float) -> np.ndarray:
    """crop -> output canvas: ``invertAffineTransform(M) * upscale`` and ``+0.5*upscale`` when upscaling."""
    import cv2

    inv = cv2.invertAffineTransform(affine)
    inv *= upscale
    if upscale > 1:
        inv[:, 2] += 0.5 * upscale
    return inv


def parse_mask_crop(labels: np.ndarray) -> np.ndarray:
    """``(512, 512)`` parse labels -> the crop-space soft mask, float64 in [0, 1] (official steps, in order)."""
    import cv2

    mask = np.asarray(MASK_COLORMAP, np.float64)[np.asarray(labels, np.int64)]
    mask = cv2.GaussianBlur(mask, PARSE_BLUR_KSIZE, PARSE_BLUR_SIGMA)
    mask = cv2.GaussianBlur(mask, PARSE_BLUR_KSIZE, PARSE_BLUR_SIGMA)
    t = MASK_BORDER
    mask[:t, :] = 0
    mask[-t:, :] = 0
    mask[:, :t] = 0
    mask[:, -t:] = 0
    return mask / 255.0


def _square_soft_mask(inv: np.ndarray, size_hw: tuple[int, int], upscale: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``use_parse=False`` mask: returns ``(inv_soft_mask (h, w) float32, inv_mask_erosion (h, w) float32)``."""
    import cv2

    h_up, w_up = size_hw
    inv_mask = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), inv, (w_up, h_up))
    k = int(2 * upscale)
    erosion = cv2.erode(inv_mask, np.ones((k, k), np.uint8))
    total_face_area = np.sum(erosion)
    w_edge = int(total_face_area**0.5) // 20
    erosion_radius = w_edge * 2
    center = cv2.erode(erosion, np.ones((erosion_radius, erosion_radius), np.uint8))
    blur_size = w_edge * 2
    soft = cv2.GaussianBlur(center, (blur_size + 1, blur_size + 1), 0)
    return soft, erosion


def gfpgan_paste(image: np.ndarray, landmarks: np.ndarray, restore: RestoreFn, *, upscale: float = 1,
                 use_parse: bool = True, parse: ParseFn | Sequence[np.ndarray] | None = None,
                 background: np.ndarray | None = None) -> CompatResult:
    """``GFPGANer.enhance(img, paste_back=True)`` after detection.

    ``image``: ``(H, W, 3)`` uint8 BGR (``(H, W)``/``(H, W, 1)`` gray is converted with GRAY2BGR, as facexlib
    does). ``landmarks``: ``(N, 5, 2)`` float32, the detector's rows in its order (image-left eye first).
    ``restore``: all kept crops in one call, ``(F, 512, 512, 3)`` uint8 BGR -> same. ``parse`` (needed when
    ``use_parse``): label maps per kept face (in face order) or a callable on the restored crops.
    ``background``: an upsampled background (e.g. ``RealESRGANer.enhance(img, outscale=upscale)``); it is resized
    to the canvas with Lanczos-4 as the official code does (a no-op when the size already matches).
    """
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise UsageError(f"--compat gfpgan reproduces GFPGAN's 8-bit path; got {img.dtype} pixels")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise UsageError(f"--compat gfpgan takes gray or BGR images, got shape {image.shape}")
    lms = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    dist = eye_distance(lms)
    kept = tuple(int(i) for i in np.flatnonzero(~(dist < EYE_DIST_THRESHOLD)))

    aligned = [align_face(img, lms[i]) for i in kept]
    crops = np.stack([a[2] for a in aligned]) if aligned else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    restored = np.asarray(restore(crops)) if len(crops) else crops
    if restored.shape != crops.shape or restored.dtype != np.uint8:
        raise ValueError(f"restore returned {restored.shape} {restored.dtype}, expected {crops.shape} uint8")

    labels: Sequence[np.ndarray] | np.ndarray | None = None
    if use_parse and len(kept):
        if parse is None:
            raise UsageError("--compat gfpgan with the parse mask needs a face parser (parsenet) or parse maps")
        labels = parse(restored) if callable(parse) else list(parse)
        if len(labels) != len(kept):
            raise ValueError(f"{len(labels)} parse maps for {len(kept)} faces")

    out = paste_back(img, [a[0] for a in aligned], restored, upscale=upscale, use_parse=use_parse, labels=labels,
                     background=background)
    faces = tuple(
        CompatFace(row=row, affine=affine, inliers=inliers, inverse_affine=inverse_affine(affine, upscale), crop=crop,
                   restored=restored[k])
        for k, (row, (affine, inliers, crop)) in enumerate(zip(kept, aligned))
    )
    return CompatResult(output=out, faces=faces, eye_dist=dist, kept_rows=kept)


def paste_back(img: np.ndarray, affines: Sequence[np.ndarray], restored: Sequence[np.ndarray] | np.ndarray, *,
               upscale: float = 1, use_parse: bool = True, labels: Sequence[np.ndarray] | None = None,
               background: np.ndarray | None = None) -> np.ndarray:
    """Steps 4-7 (``FaceRestoreHelper.paste_faces_to_input_image``): paste restored faces onto the input.

    ``img``: ``(H, W, 3)`` uint8 BGR; ``affines``: the image -> crop matrices of ``align_face``; ``restored``:
    ``(512, 512, 3)`` uint8 BGR per face, in face order; ``labels``: ``(512, 512)`` parse labels per face (when
    ``use_parse``); ``background``: the upsampled background or None. Returns the output canvas
    ``(int(h*upscale), int(w*upscale), 3)``, uint8 (uint16 if a value exceeds 256, as the official code)."""
    import cv2

    h, w = img.shape[:2]
    h_up, w_up = int(h * upscale), int(w * upscale)
    bg = img if background is None else np.asarray(background)
    up = cv2.resize(bg, (w_up, h_up), interpolation=cv2.INTER_LANCZOS4)
    if use_parse and len(affines) and (labels is None or len(labels) != len(affines)):
        raise ValueError(f"{0 if labels is None else len(labels)} parse maps for {len(affines)} faces")
    for k, affine in enumerate(affines):
        inv = inverse_affine(affine, upscale)
        face = restored[k]
        inv_restored = cv2.warpAffine(face, inv, (w_up, h_up))
        if use_parse:
            mask = parse_mask_crop(labels[k])
            mask = cv2.resize(mask, face.shape[:2])
            mask = cv2.warpAffine(mask, inv, (w_up, h_up), flags=3)
            soft = mask[:, :, None]
            pasted = inv_restored
        else:
            soft2d, erosion = _square_soft_mask(inv, (h_up, w_up), upscale)
            soft = soft2d[:, :, None]
            pasted = erosion[:, :, None] * inv_restored
        # The official expression, onto the running image (uint8 at first, then float64/float32).
        up = soft * pasted + (1 - soft) * up
    return up.astype(np.uint16) if np.max(up) > 256 else up.astype(np.uint8)


def restore_fn_from_restorer(restorer, device: str = "cpu") -> RestoreFn:
    """Wrap one of our restorers (``(N, 3, S, S)`` RGB [0, 1] in and out, see ``restore.base``) with GFPGANer's
    pre/post-processing: ``crop / 255.`` (float64 -> float32), BGR -> RGB; the output clamped and
    ``(x * 255).round()`` to uint8 BGR, as ``tensor2img(min_max=(-1, 1))`` does. (Our adapters map [0, 1] to the
    network's [-1, 1] as ``x * 2 - 1``, which equals the official ``(x - 0.5) / 0.5`` in float32.)"""

    def fn(crops: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray((crops / 255.0).astype(np.float32)[..., ::-1].transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            y = restorer(x.to(device)).float().clamp_(0, 1).cpu().numpy()
        return (y.transpose(0, 2, 3, 1)[..., ::-1] * np.float32(255.0)).round().astype(np.uint8)

    return fn


def parse_fn_from_parsenet(net: "torch.nn.Module", device: str = "cpu") -> ParseFn:
    """facexlib's parse call on restored crops: ``/255.`` float32, BGR -> RGB, ``(x - 0.5) / 0.5``, ParseNet,
    argmax over the 19 classes."""

    def fn(restored: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray((restored.astype(np.float32) / 255.0)[..., ::-1].transpose(0, 3, 1, 2)))
        x = (x - 0.5) / 0.5
        with torch.inference_mode():
            out = net.parse(x.to(device)) if hasattr(net, "parse") else net(x.to(device))[0]
        return out.argmax(dim=1).cpu().numpy()

    return fn


# ------------------------------------------------------------------------------ facerest run --compat gfpgan
# The run keeps its own detector and batched restorer; these are the official steps around them.


def read_like_gfpgan(img: "DecodedImage") -> "DecodedImage":
    """The input as GFPGAN's ``inference_gfpgan.py`` reads it: ``cv2.imread(path, cv2.IMREAD_COLOR)``, i.e. 8-bit
    BGR, upright (EXIF orientation applied), alpha dropped, gray replicated to 3 channels, 16-bit samples reduced
    by OpenCV's decoder (``v >> 8`` for PNG, ``v / 257`` rounded for TIFF). ``img`` is our own decode of the same
    file (metadata, size checks); its pixels are replaced, with a warning for anything GFPGAN's read drops."""
    import cv2

    from facerest_cli.errors import InputError
    from facerest_cli.types import DecodedImage, ImageMeta

    # Read again with OpenCV even when our decode has the same layout: JPEG and WebP decoders differ in their
    # IDCT/upsampling, and exactness is the point of this mode.
    px = cv2.imread(str(img.path), cv2.IMREAD_COLOR)
    if px is None:
        raise InputError(img.path, "--compat gfpgan: OpenCV cannot read this file (GFPGAN reads with cv2.imread)")
    if px.shape[:2] != img.pixels.shape[:2]:
        raise InputError(img.path, f"--compat gfpgan: OpenCV decodes {px.shape[1]}x{px.shape[0]} pixels, our "
                                   f"decoder {img.pixels.shape[1]}x{img.pixels.shape[0]} (orientation?)")
    warnings = list(img.meta.warnings)
    if img.pixels.dtype == np.uint16:
        warnings.append("--compat gfpgan: read as 8-bit (cv2.imread IMREAD_COLOR, as GFPGAN): written as 8-bit")
    if img.pixels.shape[2] in (2, 4):
        warnings.append("--compat gfpgan: alpha channel dropped (cv2.imread IMREAD_COLOR, as GFPGAN)")
    icc = img.meta.icc_profile
    if icc and icc[16:20] == b"GRAY":  # a gray profile cannot describe the 3-channel output GFPGAN writes
        icc = None
        warnings.append("--compat gfpgan: gray input written as BGR (as GFPGAN); its gray ICC profile was dropped")
    meta = ImageMeta(**{**img.meta.__dict__, "bit_depth": 8, "channels": 3, "icc_profile": icc,
                        "warnings": tuple(warnings)})
    return DecodedImage(img.path, img.rel_path, np.ascontiguousarray(px), meta)


def align_detections(image: np.ndarray, detections: Sequence["Detection"]) -> list["AlignedFace"]:
    """Steps 1-2 on our detections, in their order: faces whose eye distance is below 5 px are dropped, the rest
    are aligned with LMEDS onto the FFHQ-512 template and warped with the grey border. ``image``: ``(H, W, 3)``
    uint8 BGR (``read_like_gfpgan``). Face indices stay the detection indices."""
    from facerest_cli.types import AlignedFace

    if not len(detections):
        return []
    dist = eye_distance(np.stack([np.asarray(d.landmarks, np.float32) for d in detections]))
    out = []
    for i, (d, e) in enumerate(zip(detections, dist)):
        if e < EYE_DIST_THRESHOLD:
            continue
        affine, _, crop = align_face(image, d.landmarks)
        out.append(AlignedFace(index=i, detection=d, crop=crop, matrix=np.asarray(affine, np.float64)))
    return out


def restored_uint8(restored: np.ndarray) -> np.ndarray:
    """Our restorer output (``(S, S, 3)`` float32 BGR [0, 1]) as GFPGAN's ``tensor2img`` rounds it: clamp,
    ``(x * 255.0).round()``, uint8."""
    r = np.clip(np.asarray(restored, np.float32), 0.0, 1.0)
    return (r * np.float32(255.0)).round().astype(np.uint8)
