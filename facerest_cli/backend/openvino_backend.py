"""The OpenVINO backend: a ``TensorCall`` converted straight from torch and compiled for the CPU.

Conversion: ``torch.jit.trace`` of the module (no trace check: the adapters are deterministic), then
``ov.convert_model(traced, example_input=..., input=shapes)``. No ONNX file is involved for any network here.
(Handing the module itself to ``ov.convert_model`` traces it too, with checks: measured 109 s for GFPGAN against
32 s for trace + convert, on the same loaded 2-core machine.)

The converted IR is always float32 (``compress_to_fp16=False``); precision is a compile-time choice
(``INFERENCE_PRECISION_HINT`` f32 or bf16), always passed explicitly because OpenVINO's CPU default on a CPU with
bf16 units is bf16. One IR therefore serves fp32 and bf16, and the compiled-model cache stores IRs.

Batching (``batch_mode``), all from the same batch-1 IR:
  per-face  static batch 1; a batch of N faces is N requests on an ``AsyncInferQueue`` over OpenVINO's
            throughput streams (PERFORMANCE_HINT=THROUGHPUT when ``max_batch`` > 1). One compile serves every
            batch size, and the memory per face in flight is one face's activations. Default.
  static    reshaped to each batch size met and compiled once per size (LATENCY hint).
  dynamic   batch axis dynamic, one compile (LATENCY hint).
Measured (``python -m facerest_cli.backend.memory``, GFPGAN, one process per configuration, peak RSS MB at batch
4 / 8, 2 loaded cores): bf16 per-face 1300 / 1320, static 1814 / 2567, dynamic 2085 / 3316; fp32 per-face
1793 / 1826, static 2830 / 4277, dynamic 3393 / 5730. Work per face was the same in all three (bf16 1.9-1.95,
fp32 3.9-4.1 CPU s), so per-face is the default: same speed, memory flat in the batch size, no recompilation.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facerest_cli.backend.cache import CompiledCache
from facerest_cli.backend.cpu import CpuCaps
from facerest_cli.backend.network import BuildInfo, ModelId
from facerest_cli.models.arch import TensorSpec
from facerest_cli.errors import UsageError

_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
IR_FILES = ("model.xml", "model.bin")


def code_digest(fn: Any, arch: str) -> str:
    """sha256 over the sources that decide a converted graph: the architecture's module and the model modules it
    imports, the call adapter's module and this converter. A code change makes old entries stale instead of
    silently reused; an unknown arch digests every model module."""
    import inspect

    files = set(_arch_sources(arch))
    for obj in (fn, code_digest):
        try:
            files.add(Path(inspect.getsourcefile(obj) or ""))
        except TypeError:
            pass
    h = hashlib.sha256()
    for p in sorted(files):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _arch_sources(arch: str) -> list[Path]:
    """The file of ``arch``'s builder module and, transitively, of every ``facerest_cli.models`` module it imports."""
    import ast
    import importlib.util

    import facerest_cli.models as models_pkg
    from facerest_cli.models.registry import ARCHS

    folder = Path(models_pkg.__file__).parent
    if arch not in ARCHS:
        return sorted(folder.glob("*.py"))
    todo = [ARCHS[arch].split(":")[0]]
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        if name in seen or spec is None or not spec.origin:
            continue
        seen[name] = Path(spec.origin)
        for node in ast.walk(ast.parse(seen[name].read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("facerest_cli.models"):
                todo.append(node.module)
                if node.module == "facerest_cli.models":  # ``from facerest_cli.models import gpen``
                    todo.extend(f"{node.module}.{a.name}" for a in node.names)
    return list(seen.values())


def ir_key(model: ModelId, fn: Any, options: dict, inputs: Sequence[TensorSpec]) -> dict:
    """Everything the IR depends on. Precision and CPU flags are not in it: the IR is float32 and portable,
    and they only enter compilation (which is not cached: ~1 s, see the module docstring of ``cache``)."""
    import openvino as ov
    import torch

    from facerest_cli import __version__

    return {
        "kind": "openvino-ir",
        "arch": model.arch,
        "weights_sha256": model.weights_sha256,
        "call": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}",
        "options": json.loads(json.dumps(options, default=repr)),
        "inputs": [s.key() for s in inputs],
        "openvino": ov.__version__,
        "torch": torch.__version__,
        "facerest": __version__,
        "code": code_digest(fn, model.arch),
    }


def convert(call, inputs: Sequence[TensorSpec]):
    """Trace ``call`` on example inputs and convert it: an ``ov.Model`` with static shapes except the axes each
    ``TensorSpec`` marks dynamic."""
    import warnings

    import openvino as ov
    import torch

    examples = tuple(s.example(seed=i) for i, s in enumerate(inputs))
    shapes = [ov.PartialShape([-1 if a in s.dynamic else d for a, d in enumerate(s.shape)]) for s in inputs]
    with torch.no_grad():
        try:
            with warnings.catch_warnings():
                # torch 2.13 deprecates jit.trace; it is still the fastest route into OpenVINO (torch.export +
                # convert_model gives the same graph, measured 2x slower to convert), kept as the fallback below.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(call.eval(), examples, check_trace=False, strict=False)
        except (AttributeError, RuntimeError):  # pragma: no cover - a torch without jit.trace
            return _convert_exported(call, examples, inputs)
        return ov.convert_model(traced, example_input=examples, input=shapes)


def _convert_exported(call, examples: tuple, inputs: Sequence[TensorSpec]):  # pragma: no cover - fallback
    import openvino as ov
    import torch

    dims = []
    for i, s in enumerate(inputs):
        dims.append({a: torch.export.Dim(f"d{i}_{a}") for a in s.dynamic} or None)
    exported = torch.export.export(call.eval(), examples, dynamic_shapes=tuple(dims))
    model = ov.convert_model(exported)
    model.reshape({port: ov.PartialShape([-1 if a in s.dynamic else d for a, d in enumerate(s.shape)])
                   for port, s in zip(model.inputs, inputs)})
    return model


def save_ir(model, folder: Path) -> None:
    """Write ``model`` into ``folder`` as float32 IR (``model.xml`` + ``model.bin``)."""
    import openvino as ov

    ov.save_model(model, str(folder / IR_FILES[0]), compress_to_fp16=False)


class OpenVinoNetwork:
    """A converted network compiled for the CPU. ``net(*inputs)`` takes torch tensors or numpy arrays (batch
    first, any batch size; float32) and returns float32 torch tensors on the CPU (one tensor, or a tuple).

    ``call`` may be a ``TensorCall`` or a zero-argument factory returning one: with a cache hit it is never
    called, so the torch weights need not even be loaded.
    """

    backend = "openvino"

    def __init__(self, call, inputs: Sequence[TensorSpec], model: ModelId, precision: str, caps: CpuCaps,
                 cache: CompiledCache | None = None, batch_mode: str = "per-face", max_batch: int = 1,
                 fn: Any = None, options: dict | None = None, notes: Sequence[str] = ()):
        import openvino as ov

        if precision not in _OV_PRECISION:
            raise UsageError(f"--backend openvino runs fp32 or bf16 on the CPU; got --precision {precision}")
        if batch_mode not in ("per-face", "static", "dynamic"):
            raise UsageError(f"batch mode must be per-face, static or dynamic; got {batch_mode!r}")
        t0 = time.perf_counter()
        self.precision = precision
        self.inputs = tuple(inputs)
        self.batch_mode = batch_mode
        self.caps = caps
        self._core = ov.Core()
        self._lock = threading.Lock()
        resolved: list = []

        def get_call():
            if not resolved:
                resolved.append(_resolve(call))
            return resolved[0]

        source, entry_dir = "converted", None
        if cache is not None:
            fn = fn if fn is not None else get_call().fn
            opts = options if options is not None else dict(get_call().options)
            key = ir_key(model, fn, opts, self.inputs)

            def build(folder: Path) -> None:
                save_ir(convert(get_call(), self.inputs), folder)

            entry, built = cache.get_or_build(model.name, "openvino", key, build)
            source, entry_dir = ("converted" if built else "cache"), str(entry)
            # Read back from the entry (memory-mapped weights) rather than keeping the conversion's copy.
            ov_model = self._core.read_model(str(entry / IR_FILES[0]))
        else:
            ov_model = convert(get_call(), self.inputs)
        del resolved[:]  # the torch module is not needed once converted
        self._model = ov_model
        self._config = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "PERFORMANCE_HINT": "THROUGHPUT" if (batch_mode == "per-face" and max_batch > 1) else "LATENCY",
            "INFERENCE_NUM_THREADS": caps.cores,
        }
        self._compiled: dict[int, Any] = {}  # batch size -> compiled model (static mode); 1 or -1 otherwise
        if batch_mode == "dynamic":
            self._reshape(-1)
            self._compiled[-1] = self._compile()
        else:
            self._compiled[1] = self._compile()
        self._queue = None
        if batch_mode == "per-face":
            compiled = self._compiled[1]
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queue = ov.AsyncInferQueue(compiled, max(1, jobs))
        if batch_mode != "static":
            self._model = None  # compiled: the graph is no longer needed (static mode reshapes it per size)
        self.info = BuildInfo("openvino", precision, source, time.perf_counter() - t0, entry_dir, tuple(notes))

    # ---------------------------------------------------------------------------------------------- compile

    def _reshape(self, batch: int) -> None:
        import openvino as ov

        shapes = {}
        for port, spec in zip(self._model.inputs, self.inputs):
            dims = [-1 if a in spec.dynamic else d for a, d in enumerate(spec.shape)]
            dims[0] = batch
            shapes[port] = ov.PartialShape(dims)
        self._model.reshape(shapes)

    def _compile(self):
        return self._core.compile_model(self._model, "CPU", self._config)

    def properties(self) -> dict:
        """What OpenVINO chose (streams, threads, precision), for reports and the bench."""
        compiled = next(iter(self._compiled.values()))
        keys = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                "OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        return {k: str(compiled.get_property(k)) for k in keys}

    # ------------------------------------------------------------------------------------------------- call

    def __call__(self, *inputs: Any):
        arrays = [_as_array(x) for x in inputs]
        n = arrays[0].shape[0]
        if n == 0:
            raise UsageError("an OpenVINO network was called with an empty batch; callers skip empty batches")
        with self._lock:
            if self.batch_mode == "per-face" and n > 1:
                outs = self._per_face(arrays, n)
            else:
                outs = self._whole(arrays, n)
        import torch

        tensors = tuple(torch.from_numpy(o) for o in outs)
        return tensors[0] if len(tensors) == 1 else tensors

    def _whole(self, arrays: list[np.ndarray], n: int) -> list[np.ndarray]:
        """One request for the whole batch: static (compiled per size), dynamic, or per-face with one face."""
        if self.batch_mode == "static":
            if n not in self._compiled:
                self._reshape(n)
                self._compiled[n] = self._compile()
            compiled = self._compiled[n]
        else:
            compiled = next(iter(self._compiled.values()))
        result = compiled(arrays)
        return [np.array(result[o], copy=True) for o in compiled.outputs]

    def _per_face(self, arrays: list[np.ndarray], n: int) -> list[np.ndarray]:
        queue = self._queue
        rows: list[list[np.ndarray] | None] = [None] * n

        def done(request, i: int) -> None:
            rows[i] = [t.data.copy() for t in request.output_tensors]

        queue.set_callback(done)
        for i in range(n):
            queue.start_async({k: a[i : i + 1] for k, a in enumerate(arrays)}, i)
        queue.wait_all()
        if any(r is None for r in rows):
            raise RuntimeError("OpenVINO returned no result for some faces of the batch")
        return [np.concatenate([r[k] for r in rows]) for k in range(len(rows[0]))]


def _resolve(call):
    """A ``TensorCall``, or the one a zero-argument factory builds."""
    import torch

    return call if isinstance(call, torch.nn.Module) else call()


def _as_array(x: Any) -> np.ndarray:
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
