"""Deep3DFaceRecon (``d3dfr``): a face -> 257 BFM09 coefficients, with Deep3DFaceRecon's 5-point alignment.

Alignment (Deep3DFaceRecon ``util/preprocess.py`` ``align_img``, as SGPN applies it, re-implemented): the five
landmarks are fitted to the 3D reference landmarks of ``similarity_Lm3D_all.mat`` by an orthographic least-squares
camera (``POS``), giving a translation ``t`` and scale ``s``; the image is scaled by ``102 / s`` and cut to
224 x 224 around ``t``. SGPN expresses this as a similarity from the detected landmarks to the landmarks' place in
that 224 crop; we do the same and warp the image once with it. Input to the network: RGB in [0, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from facerest_cli.errors import WeightsError

if TYPE_CHECKING:
    import torch

    from facerest_cli.registry import Execution, Model
    from facerest_cli.weights.cache import WeightsStore

CROP = 224
RESCALE = 102.0


def reference_five(lm68_3d: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon's 5 reference points (eye centres, nose, mouth corners) from its 68 3D landmarks."""
    lm = np.asarray(lm68_3d, np.float64)
    idx = np.array([31, 37, 40, 43, 46, 49, 55]) - 1
    five = np.stack([lm[idx[0]], lm[idx[[1, 2]]].mean(0), lm[idx[[3, 4]]].mean(0), lm[idx[5]], lm[idx[6]]])
    return five[[1, 2, 0, 3, 4]]


def pos(xp: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares orthographic camera from 3D points ``x`` (N, 3) to 2D ``xp`` (N, 2): (translation, scale)."""
    n = xp.shape[0]
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = x
    a[0::2, 3] = 1
    a[1::2, 4:7] = x
    a[1::2, 7] = 1
    k, *_ = np.linalg.lstsq(a, xp.reshape(-1), rcond=None)
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2.0
    return np.array([k[3], k[7]]), float(s)


def align_matrix(lm5: np.ndarray, ref5: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(2, 3) image -> 224 D3DFR crop for detected landmarks ``lm5`` (5, 2) in the detector's order."""
    from facerest_cli.align.warp import estimate_similarity

    h, w = image_hw
    lm = np.asarray(lm5, np.float64).copy()
    lm[:, 1] = h - 1 - lm[:, 1]  # POS works with y up
    t, s = pos(lm, ref5)
    s = RESCALE / s
    w1, h1 = int(w * s), int(h * s)
    target = np.stack([lm[:, 0] - t[0] + w / 2, lm[:, 1] - t[1] + h / 2], 1) * s
    target -= np.array([w1 / 2 - CROP / 2, h1 / 2 - CROP / 2])
    target[:, 1] = CROP - 1 - target[:, 1]
    return estimate_similarity(np.asarray(lm5, np.float64), target)


class D3dfr:
    """The ResNet-50 coefficient regressor with its alignment reference."""

    def __init__(self, model: "Model", ref5: np.ndarray):
        import torch

        self.model = model
        self.device = torch.device(model.device)
        self.ref5 = ref5

    @classmethod
    def load(cls, store: "WeightsStore", device: str = "cpu", execution: "Execution | None" = None) -> "D3dfr":
        from scipy.io import loadmat

        from facerest_cli.registry import build

        model = build("d3dfr", store, device, execution=execution, role="prior")
        mat = store.ensure("d3dfr", "similarity_Lm3D_all.mat", progress=False)
        try:
            lm = loadmat(str(mat))["lm"]
        except (KeyError, ValueError, OSError) as e:
            raise WeightsError(f"{mat}: no 68x3 'lm' array ({e})") from None
        return cls(model, reference_five(lm))

    def crops(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Aligned 224 crops (N, 224, 224, 3) uint8 BGR and their image -> crop matrices."""
        import cv2

        from facerest_cli.detect.base import to_detection_bgr

        out, mats = [], []
        for img, lm5 in zip(images, landmarks):
            m = align_matrix(lm5, self.ref5, img.shape[:2])
            crop = cv2.warpAffine(img, m, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            crop = crop[:, :, None] if crop.ndim == 2 else crop
            out.append(to_detection_bgr(crop))
            mats.append(m)
        return np.stack(out), mats

    def coeffs(self, crops_bgr: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 BGR -> (N, 257) float32."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(crops_bgr[..., ::-1].transpose(0, 3, 1, 2))).to(self.device)
        with torch.inference_mode():
            return self.model(self.model.normalise_uint8(x)).float().cpu().numpy()
