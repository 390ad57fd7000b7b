"""How fast this CPU can run a restorer at best: its measured dense peak and a network's FLOPs per face.

A restorer is dense convolutions (a StyleGAN2 decoder, a VQGAN encoder-decoder), so seconds per face cannot drop
below ``GFLOP per face / peak GFLOPS``, and the speed-up over the official loop (torch fp32, one face per call)
below ``peak / GFLOPS the loop achieves``. The peak is measured, not looked up: the 3x3 convolution 256 -> 256 at
128 x 128 that carries most of these networks' work, through each backend and precision the bench compares, best
of five runs. On a CPU with AVX512_BF16 but no AMX, bf16 does two multiply-adds per fp32 lane, so its peak is about
twice fp32's; AMX tiles raise it several times more, which is why the same bench gives very different ceilings on
an AMX Xeon and on an AMD Zen 4.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from facerest_cli.backend.cpu import CpuCaps

# The probe convolution: (channels, side). 19.3 GFLOP per call: long enough to time, short enough to repeat.
PROBE = (256, 128)


def count_gflop(fn: Callable[..., Any], *inputs: Any) -> float:
    """GFLOP (2 per multiply-add) of one call ``fn(*inputs)`` in torch, counted by torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # inference_mode: the counter's module tracker would otherwise hook gradients the outputs do not have.
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return counter.get_total_flops() / 1e9


def _best(fn: Callable[[], Any], runs: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def dense_peak(backends: Sequence[str], precisions: Sequence[str], caps: "CpuCaps", runs: int = 5) -> dict[str, dict[str, float]]:
    """``{precision: {backend: GFLOPS}}`` of the probe convolution, for each backend (torch, openvino) and each of
    ``precisions`` (fp32, bf16) asked. bf16 is measured only where the CPU has bf16 units (emulated bf16 is no
    ceiling of anything)."""
    import torch

    c, side = PROBE
    gflop = 2 * c * c * 9 * side * side / 1e9
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval().requires_grad_(False)
    x = torch.randn(1, c, side, side)
    has_bf16 = caps.bf16
    out: dict[str, dict[str, float]] = {}
    for precision in precisions:
        if precision == "bf16" and not has_bf16:
            continue
        for backend in backends:
            secs = _probe_torch(conv, x, precision, runs) if backend == "torch" else _probe_openvino(conv, x, precision, runs)
            if secs is not None:
                out.setdefault(precision, {})[backend] = round(gflop / secs, 1)
    return out


def _probe_torch(conv: Any, x: Any, precision: str, runs: int) -> float | None:
    import torch

    if precision == "fp32":
        with torch.inference_mode():
            return _best(lambda: conv(x), runs)
    if precision != "bf16":
        return None
    cl = x.to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        return _best(lambda: conv(cl), runs)


def _probe_openvino(conv: Any, x: Any, precision: str, runs: int) -> float | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    import torch

    hint = {"fp32": "f32", "bf16": "bf16"}.get(precision)
    if hint is None:
        return None
    with torch.no_grad():
        model = ov.convert_model(conv, example_input=x)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    xn = x.numpy()
    return _best(lambda: request.infer([xn]), runs)


def ceilings(gflop_per_face: float, loop_sec_per_face: float, peak: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per precision: the fastest a face can be at this CPU's measured peak, and that as a speed-up over the loop."""
    loop_gflops = gflop_per_face / loop_sec_per_face
    return {p: {"peak GFLOPS": max(by.values()), "min ms/face": round(gflop_per_face / max(by.values()) * 1000, 1),
                "max speed-up": round(max(by.values()) / loop_gflops, 2)}
            for p, by in peak.items() if by}
