"""The default restorer batch size per backend, precision and device, from measured peak memory and work per face.

Measured with ``python -m facerest_cli.backend.memory --restorer gfpgan-1.4 --random-weights --batches 1,2,4,8``
(one process per configuration, kernel peak RSS; CPU seconds per face because the 2-core machine was shared,
load average 10-20, so wall-clock rates were not trustworthy):

==========  =========  ======================================  ===========================
backend     precision  peak RSS MB at batch 1 / 2 / 4 / 8      CPU s per face, 1 / 2 / 4 / 8
==========  =========  ======================================  ===========================
torch       fp32       1292 / 1852 / 2926 / 4988               9.1 / 8.5 / 7.7 / 7.5
torch       bf16        894 / 1143 / 1666 / 2448               5.1 / 4.0 / 3.6 / 3.1
openvino    fp32       1376 / 1770 / 1793 / 1826               4.0 / 4.0 / 4.0 / 3.9
openvino    bf16       1040 / 1265 / 1300 / 1320               2.0 / 1.9 / 1.9 / 1.9
==========  =========  ======================================  ===========================

* torch fp32: every face in a batch adds ~530 MB (its activations live at once) for at most 18% less work per
  face: batch 1.
* torch bf16: ~220 MB per face, and batching saves real work (oneDNN's bf16 kernels like wider GEMMs): batch 4,
  1.7 GB, 30% less work per face than batch 1 (batch 8: 39% for another 0.8 GB).
* OpenVINO (per-face requests over throughput streams): memory is bounded by the streams, not the batch
  (+56 MB fp32, +55 MB bf16 from 2 to 8 faces), and one stream per core needs at least that many faces per call:
  batch 8.
* CUDA / MPS: unchanged (8), the current default.
"""

from __future__ import annotations

GPU_DEFAULT = 8
OPENVINO_DEFAULT = 8
TORCH_CPU_DEFAULT = {"fp32": 1, "bf16": 4}


def default_batch_size(backend: str, device: str, precision: str) -> int:
    """Faces per restorer call when ``--batch-size`` is not given; ``backend`` and ``precision`` are resolved
    (torch/openvino; fp32/bf16/fp16), ``device`` is cpu, cuda[:N] or mps."""
    if device != "cpu":
        return GPU_DEFAULT
    if backend == "openvino":
        return OPENVINO_DEFAULT
    return TORCH_CPU_DEFAULT.get(precision, 1)
