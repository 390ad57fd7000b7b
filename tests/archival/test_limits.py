"""Resource limits (issue 8): decompression bombs refused from the header (acceptance 5), --max-pixels, CUDA
out-of-memory halving (a test double raising torch.OutOfMemoryError), and no full-size float copies of big images."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from facerest_cli.errors import FacerestError, InputError
from tests.archival._data import bomb_png, fast_options, small_photo
from tests.conftest import read_jsonl, run_images


def _run(src, out, **kw):
    return run_images(src, out, **fast_options(), **kw)


def test_bomb_header_refused_in_under_a_second_without_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    from facerest_cli.io.decode import decode_image

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(30000, 30000))  # 2.7 GB of pixels once inflated

    def no_decode(*a, **k):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    monkeypatch.setattr("cv2.imdecode", no_decode)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(InputError) as e:
        decode_image(bomb)
    dt = time.perf_counter() - t0
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert e.value.reason == "image is 30000x30000 = 900 MP, above the 250 MP limit (raise it with --max-pixels)"
    assert dt < 1.0, f"took {dt:.2f}s"
    assert peak < 1_000_000, f"{peak} bytes allocated for a header check"


def test_max_pixels_is_configurable(tmp_path):
    src = tmp_path / "in" / "photo.jpg"
    src.parent.mkdir()
    small_photo(400).save(src, quality=90)
    w, h = Image.open(src).size
    res = _run(src, tmp_path / "low", max_pixels=w * h - 1)
    assert res.processed == 0 and len(res.failed) == 1
    assert res.failed[0].error == f"image is {w}x{h} = {w * h / 1e6:.3g} MP, above the {(w * h - 1) / 1e6:.3g} MP limit (raise it with --max-pixels)"
    assert not (tmp_path / "low" / "photo.jpg").exists()
    assert _run(src, tmp_path / "exact", max_pixels=w * h).processed == 1
    assert _run(src, tmp_path / "off", max_pixels=0).processed == 1


class OomAbove:
    """Passthrough restorer that raises CUDA's out-of-memory error for batches larger than ``limit``."""

    name = "oom-double"
    size = 512
    template = "ffhq512"
    needs_prior = False

    def __init__(self, limit: int):
        self.limit = limit
        self.calls: list[int] = []

    def __call__(self, faces, prior=None):
        import torch

        n = int(faces.shape[0])
        self.calls.append(n)
        if n > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} GiB (test double)")
        return faces


def test_out_of_memory_halves_the_batch_and_the_report_says_so(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        small_photo(640).save(src / f"group{i}.jpg", quality=92)
    plain = _run(src, tmp_path / "plain", batch_size=8)
    double = OomAbove(limit=2)
    res = _run(src, tmp_path / "oom", restorer=double, batch_size=8)
    assert res.failed == [] and res.faces == plain.faces >= 12
    # 8 -> OOM, halves to 4 -> OOM, halves to 2; every later batch stays at 2.
    assert double.calls[:3] == [8, 4, 2] and max(double.calls[3:]) == 2
    for i in range(3):
        a = (tmp_path / "plain" / f"group{i}.jpg").read_bytes()
        assert (tmp_path / "oom" / f"group{i}.jpg").read_bytes() == a, "halving changed the output"
    import json

    s = json.loads((tmp_path / "oom" / "summary.json").read_text())
    assert s["restore_out_of_memory"] == {"events": 2, "batch_size_after": 2}
    recs = read_jsonl(tmp_path / "oom" / "report.jsonl")
    noted = [r for r in recs if any("out of memory" in n for n in r.get("notes", []))]
    assert len(noted) == 8  # the faces of the batch that ran out of memory
    assert "cpu out of memory with a batch of 8: halved to 4 and retried" in noted[0]["notes"]


def test_out_of_memory_on_a_single_crop_stops_with_a_clear_error(tmp_path):
    from facerest_cli.restore.runtime import RestoreRuntime

    rt = RestoreRuntime(OomAbove(limit=0), "cpu")
    crop = np.zeros((512, 512, 3), np.uint8)
    with pytest.raises(FacerestError, match="out of cpu memory restoring a single face crop"):
        rt.restore([crop, crop], [1.0, 1.0])


def test_big_image_is_processed_without_full_size_float_copies(tmp_path, monkeypatch):
    """A 6 MP scan with small faces: memory allocated while it is decoded, detected, pasted and encoded stays under
    3.5x its uint8 size (a float32 copy alone would be 4x)."""
    import facerest_cli.pipeline as pipeline_mod

    h, w = 2000, 3000
    y, x = np.mgrid[0:h, 0:w]
    canvas = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)
    photo = np.asarray(small_photo(1280))
    canvas[50 : 50 + photo.shape[0], 80 : 80 + photo.shape[1]] = photo
    src = tmp_path / "scan.jpg"
    Image.fromarray(canvas).save(src, quality=95)
    base = {}
    real = pipeline_mod.decode_image

    def measured_decode(*a, **k):
        base["bytes"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        return real(*a, **k)

    monkeypatch.setattr(pipeline_mod, "decode_image", measured_decode)
    tracemalloc.start()
    try:
        res = _run(src, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.failed == [] and res.faces >= 4
    ratio = (peak - base["bytes"]) / canvas.nbytes
    assert ratio < 3.5, f"peak allocation {ratio:.2f}x the image"


def test_16bit_detection_input_is_converted_in_bands():
    from facerest_cli.detect.base import to_detection_bgr

    a = np.random.default_rng(0).integers(0, 65536, (1500, 2000, 3)).astype(np.uint16)
    tracemalloc.start()
    try:
        out = to_detection_bgr(a)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, ((a.astype(np.uint32) + 128) // 257).astype(np.uint8))
    assert peak < 0.75 * a.nbytes, f"{peak / a.nbytes:.2f}x the 16-bit image"  # output 0.5x; a uint32 copy: 2x


def test_fifo_and_oversized_files_are_refused_without_reading(tmp_path):
    import os

    from facerest_cli.io.decode import decode_image

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(InputError, match="not a regular file"):
        decode_image(fifo)
    huge = tmp_path / "huge.tif"
    with open(huge, "wb") as f:
        f.truncate(300 << 20)  # sparse: 300 MiB that occupy no disk and are never read
    with pytest.raises(InputError, match=r"file is 0.3 GiB, more than any image within the 1e-06 MP limit"):
        decode_image(huge, max_pixels=1)
