"""Whole-image background upsampling (Real-ESRGAN) for ``--bg-upsampler``.

* ``models``   -- which upsamplers exist, loading them (with ``--denoise-strength`` weight interpolation) and
  running a batch of tiles on a device/precision (:class:`UpsamplerNet`);
* ``official`` -- an exact reproduction of ``RealESRGANer.enhance`` (``--tile/--tile-pad/--pre-pad``);
* ``tiling``   -- our default tiler: overlapping tiles blended with a smooth window, streamed band by band;
* ``stream``   -- band consumers: a full array, a TIFF (strips) or PNG writer that never holds the whole image,
  and a streaming resize for an ``--upscale`` that differs from the network's scale;
* ``bench``    -- megapixels/s and peak RSS per backend and precision.

Nothing here is imported by ``import facerest_cli``; torch and cv2 are imported inside functions.
"""
