"""Data handed from the 3D prior stage to restorers (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SgpnPrior:
    """What the ``sgpn`` restorer reads from ``Frame.priors[i]``.

    ``render``: ``(S, S, 3)`` float32 RGB in [0, 1], the rendered 3D face in the aligned crop's frame (S = the
    restorer's crop size), black background. ``coeff``: ``(257,)`` float32 Deep3DFaceRecon coefficients
    (identity 80 | expression 64 | texture 80 | angle 3 | SH lighting 27 | translation 3).
    ``source``: ``"bfm09"`` (textured, lit BFM09 face from the coefficients, as SGPN was trained with) or
    ``"3ddfa-mean-face"`` (BFM09 not installed: the 3DDFA mean-face geometry, posed by the 3DDFA regressor,
    rendered as a shaded grey image).
    """

    render: np.ndarray
    coeff: np.ndarray | None  # None when the restorer takes only the render (3diffusion, mean-face render)
    source: str = "bfm09"
