"""The output of one frame: its background (as decoded, Lanczos-resized, or upscaled by a learned upsampler) with
every restored face pasted at the output scale. Built once per run (``job.run_job``) and called by the scheduler's
write step, in the write thread, so the upsampler's weights load once and its work overlaps detection and
restoration of the next frames.

Which path a frame takes (``BlendConfig``):

* **no upsampler** (the default): ``--upscale N`` > 1 resizes the frame with Lanczos-4, then the faces are pasted
  (``paste.paste_faces``, ``--detail``). Returns one array, exactly as before ``--bg-upsampler`` existed.
* **``--bg-upsampler NAME``, ``--tiling blend``**: the frame is upscaled tile by tile with blended tiles
  (``upsample.tiling.upscale_bands``), resized band by band to ``--upscale`` when that differs from the network's
  scale (``upsample.stream.resize_bands``), and the faces are pasted into the band stream
  (``upsample.stream.paste_faces_bands``). With ``bands=True`` (a sink that writes bands: TIFF, PNG) the result is
  a ``BandImage``: the output is never held whole, and no float copy of the frame or the output exists; otherwise
  the bands are collected into one integer array.
* **``--tiling official``**: ``RealESRGANer.enhance`` reproduced (``upsample.official``; the whole image is held as
  float32, as the official code does), then the faces are pasted.
* **``--compat gfpgan``**: GFPGANer.enhance's paste-back (``blend.gfpgan_compat.paste_back``): its masks, blur,
  float64 blend and truncation, onto ``RealESRGANer.enhance`` (tile 400, pad 10 by default, as GFPGAN) or a
  Lanczos-4 background.

Every face's ``record.paste`` says what was done to it (``types.Paste``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from facerest_cli.blend.detail import effective_detail
from facerest_cli.blend.paste import PasteItem, paste_faces, scale_matrix, upscale_frame
from facerest_cli.config import BlendConfig
from facerest_cli.types import Paste

if TYPE_CHECKING:
    from facerest_cli.registry import Model
    from facerest_cli.types import FaceState
    from facerest_cli.upsample.models import UpsamplerNet
    from facerest_cli.upsample.tiling import Band


@dataclass(eq=False)
class BandImage:
    """An output canvas produced band by band (``upsample.tiling.Band``: rows ``[y, y + n)``, top to bottom, in the
    canvas dtype and layout). Iterate it once. ``seconds`` accumulates the time spent producing bands (upsampling,
    resizing, pasting), so the scheduler can charge it to the paste stage rather than to the encoder."""

    shape: tuple[int, ...]  # (H, W, C) of the canvas
    dtype: np.dtype
    bands: Iterable["Band"]
    seconds: float = 0.0
    _used: bool = field(default=False, repr=False)

    def __iter__(self) -> Iterator["Band"]:
        if self._used:
            raise RuntimeError("a BandImage can be consumed once")
        self._used = True
        it = iter(self.bands)
        while True:
            t = time.perf_counter()
            try:
                band = next(it)
            except StopIteration:
                self.seconds += time.perf_counter() - t
                return
            self.seconds += time.perf_counter() - t
            yield band

    def array(self) -> np.ndarray:
        """The whole canvas as one array of ``dtype`` (never float)."""
        from facerest_cli.upsample.stream import collect_bands

        return collect_bands(self, self.shape, self.dtype)


class Composer:
    """``compose(pixels, faces)`` -> the output canvas. ``pixels``: the decoded frame ``(H, W, C)`` uint8/uint16;
    ``faces``: its ``FaceState``s with ``restored`` (and ``mask``) set. ``feather``: the crop-border mask used where
    a face has none. ``upsampler``: the loaded ``--bg-upsampler`` (None: Lanczos). ``parser``: ParseNet for
    ``--compat gfpgan``'s parse mask (None: its square mask)."""

    def __init__(self, cfg: BlendConfig, feather: np.ndarray, upsampler: "UpsamplerNet | None" = None,
                 parser: "Model | None" = None):
        self.cfg = cfg
        self.feather = feather
        self.upsampler = upsampler
        self.parser = parser
        if cfg.upsampling and upsampler is None:
            raise ValueError(f"--bg-upsampler {cfg.bg_upsampler}: the Composer needs the loaded upsampler")

    @property
    def scale(self) -> int:
        return self.cfg.upscale

    def compose(self, pixels: np.ndarray, faces: Sequence["FaceState"], *, bands: bool = False) -> "np.ndarray | BandImage":
        """The output canvas of one frame: an array, or a ``BandImage`` when ``bands`` and the path streams."""
        if self.cfg.compat == "gfpgan":
            return self._gfpgan(pixels, faces)
        items = self.paste_items(faces)
        if self.upsampler is None:
            frame = upscale_frame(pixels, self.scale) if self.scale > 1 else pixels
            return paste_faces(frame, items)
        if self.cfg.tiling == "official":
            return paste_faces(self._official_background(pixels), items)
        out = self._streamed(pixels, items)
        return out if bands else out.array()

    def paste_items(self, faces: Sequence["FaceState"]) -> list[PasteItem]:
        """One ``PasteItem`` per face, its matrix on the output canvas; records what ``--detail`` does to it."""
        n = self.scale
        items = []
        for f in faces:
            m = scale_matrix(f.face.matrix, n) if n > 1 else f.face.matrix
            items.append(PasteItem(restored=f.restored, matrix=m, mask=self.feather if f.mask is None else f.mask,
                                   gray=f.gray, detail=self.cfg.detail))
            f.record.paste = Paste(detail=effective_detail(self.cfg.detail, m))
        return items

    # ------------------------------------------------------------------------------------------ backgrounds

    def _tile_config(self):
        from facerest_cli.upsample.tiling import TileConfig

        return TileConfig(tile=self.cfg.tile_size, tile_pad=self.cfg.tile_context)

    def _streamed(self, pixels: np.ndarray, items: list[PasteItem]) -> BandImage:
        from facerest_cli.upsample.stream import paste_faces_bands, resize_bands
        from facerest_cli.upsample.tiling import upscale_bands

        assert self.upsampler is not None
        h, w = pixels.shape[:2]
        s, n = self.upsampler.scale, self.scale
        stream: Iterable[Band] = upscale_bands(pixels, self.upsampler, self._tile_config())
        if n != s:  # area average when shrinking, Lanczos-4 when enlarging, band by band
            stream = resize_bands(stream, (h * s, w * s), (h * n, w * n), pixels.dtype)
        if items:
            stream = paste_faces_bands(stream, items, (h * n, w * n))
        return BandImage((h * n, w * n, pixels.shape[2]), pixels.dtype, stream)

    def _official_background(self, pixels: np.ndarray) -> np.ndarray:
        """``RealESRGANer.enhance(img, outscale=--upscale)`` in the frame's layout and dtype. Gray+alpha (which
        the official code does not take) runs as two gray images, as it runs BGRA's alpha. The official
        ``max > 256`` rule may return 8-bit values for a dark 16-bit image: they are kept as values in 16 bits."""
        from facerest_cli.upsample.official import enhance_official

        assert self.upsampler is not None
        net, cfg = self.upsampler, self.cfg

        def run(img: np.ndarray) -> np.ndarray:
            out, _ = enhance_official(img, net.forward, net.scale, tile=cfg.tile_size, tile_pad=cfg.tile_context,
                                      pre_pad=cfg.pre_padding, outscale=float(self.scale))
            out = out[:, :, None] if out.ndim == 2 else out
            return out.astype(pixels.dtype) if out.dtype != pixels.dtype else out

        if pixels.shape[2] == 2:
            return np.ascontiguousarray(np.concatenate([run(pixels[:, :, :1]), run(pixels[:, :, 1:])], axis=2))
        return run(pixels)

    # -------------------------------------------------------------------------------------- --compat gfpgan

    def _gfpgan(self, pixels: np.ndarray, faces: Sequence["FaceState"]) -> np.ndarray:
        """GFPGANer.enhance after detection. ``pixels`` is the 8-bit BGR image ``gfpgan_compat.read_like_gfpgan``
        made; ``faces`` were aligned by ``gfpgan_compat.align_detections`` (LMEDS, eye-distance filter)."""
        from facerest_cli.blend.gfpgan_compat import paste_back, restored_uint8
        from facerest_cli.upsample.official import enhance_official

        live = []
        for f in faces:
            f.record.paste = Paste(detail="restored", compat="gfpgan")
            if f.mask is not None and not np.any(f.mask):
                f.record.notes.append("not pasted: the identity guard kept the original face")
                continue
            live.append(f)
        restored = np.stack([restored_uint8(f.restored) for f in live]) if live else np.zeros((0, 512, 512, 3), np.uint8)
        labels = self._parse(restored) if self.parser is not None and live else None
        if self.parser is None:
            for f in live:
                f.record.notes.append("--compat gfpgan: square mask (parsenet not installed or --mask feather)")
        background = None
        if self.upsampler is not None:
            net, cfg = self.upsampler, self.cfg
            background, _ = enhance_official(pixels, net.forward, net.scale, tile=cfg.tile_size,
                                             tile_pad=cfg.tile_context, pre_pad=cfg.pre_padding,
                                             outscale=float(self.scale))
        return paste_back(pixels, [f.face.matrix for f in live], restored, upscale=self.scale,
                          use_parse=self.parser is not None, labels=labels, background=background)

    def _parse(self, restored: np.ndarray) -> np.ndarray:
        """facexlib's parse of restored faces, as GFPGANer.enhance calls it: ``/255.`` float32, BGR -> RGB,
        ``(x - 0.5) / 0.5`` (the entry's normalisation), ParseNet, argmax over the 19 classes."""
        import torch

        assert self.parser is not None
        x = torch.from_numpy(np.ascontiguousarray((restored.astype(np.float32) / 255.0)[..., ::-1].transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            logits = self.parser(self.parser.normalise(x.to(self.parser.device)))
        return logits.argmax(dim=1).cpu().numpy()
