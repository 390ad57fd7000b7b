"""One entry point for every network: ``build_network(call, spec, model, options, cache)`` -> a callable.

The caller (the model registry's ``build``) owns weights and the per-architecture call adapter; this module
owns where and how the network runs. The returned object is called with torch tensors or numpy arrays and returns
float32 torch tensors (one tensor, or a tuple in the adapter's output order); ``.info`` says how it was built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from facerest_cli.backend.cpu import CpuCaps, PrecisionChoice, choose_precision
from facerest_cli.backend.network import BuildInfo, ModelId
from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    import torch

    from facerest_cli.backend.cache import CompiledCache
    from facerest_cli.backend.calls import ArchCall

CallOrFactory = Union["torch.nn.Module", Callable[[], "torch.nn.Module"]]


class Network(Protocol):
    """What ``build_network`` returns."""

    backend: str
    precision: str
    info: BuildInfo

    def __call__(self, *inputs: Any) -> "torch.Tensor | tuple[torch.Tensor, ...]": ...


@dataclass(frozen=True)
class BackendOptions:
    """Where and how to run. ``backend``: ``auto`` (OpenVINO on CPU when importable, else torch), ``torch`` or
    ``openvino``; ``precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (resolved by ``choose_precision``);
    ``device``: ``cpu``, ``cuda[:N]`` or ``mps`` (already resolved, not ``auto``); ``caps``: the CPU's
    capabilities (None: ``detect_cpu_caps()``; the CLI passes ``caps_from_env()``); ``max_batch``: the largest batch the caller will
    pass (OpenVINO uses throughput streams above 1); ``batch_mode``: OpenVINO's batching (see
    ``openvino_backend``); ``channels_last``: torch only (None = for reduced precision only)."""

    backend: str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    caps: CpuCaps | None = None
    max_batch: int = 1
    batch_mode: str = "per-face"
    channels_last: bool | None = None


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str, device: str) -> str:
    """``auto`` -> ``openvino`` on CPU when installed, else ``torch``; explicit names are checked."""
    if backend == "auto":
        return "openvino" if device == "cpu" and openvino_available() else "torch"
    if backend == "torch":
        return backend
    if backend == "openvino":
        if device != "cpu":
            raise UsageError(f"--backend openvino runs on the CPU only; got --device {device}")
        if not openvino_available():
            raise UsageError("--backend openvino: the openvino package is not installed (pip install openvino)")
        return backend
    raise UsageError(f"--backend must be auto, torch or openvino; got {backend!r}")


def network_precision(spec: "ArchCall", arch: str, options: BackendOptions, backend: str) -> PrecisionChoice:
    """``choose_precision`` for one network: ``auto`` keeps it fp32 unless ``spec.auto_bf16`` (see ``ArchCall``)."""
    choice = choose_precision(options.precision, options.device, options.caps, backend)
    if options.precision == "auto" and choice.precision == "bf16" and not spec.auto_bf16:
        return PrecisionChoice("fp32", f"precision auto: fp32 for {arch} (its precision policy)")
    if options.precision == "bf16" and spec.fp32_scopes:
        note = f"--precision bf16 may change {arch}'s codebook choices; fp32 is the reference"
        return PrecisionChoice("bf16", "; ".join(n for n in (choice.note, note) if n))
    return choice


def build_network(call: CallOrFactory, spec: "ArchCall", model: ModelId, options: BackendOptions,
                  cache: "CompiledCache | None" = None, call_options: dict | None = None) -> Network:
    """Make one network ready to run.

    ``call``: a ``TensorCall(net, spec.fn, **options)``, or (worth it for OpenVINO) a zero-argument factory of
    one, called only when the cache has no valid entry, so a cache hit never loads the torch weights.
    ``spec``: the architecture's ``ArchCall`` (inputs, precision policy). ``model``: the weights identity (cache
    key and folder). ``cache``: where converted models live (None: convert in memory every time).
    ``call_options``: the adapter options when ``call`` is a factory (default ``spec.options``); with a
    ``TensorCall`` its own options are used.
    """
    if options.caps is None:
        from facerest_cli.backend.cpu import detect_cpu_caps

        options = replace(options, caps=detect_cpu_caps())
    backend = resolve_backend(options.backend, options.device)
    choice = network_precision(spec, model.arch, options, backend)
    notes = (choice.note,) if choice.note else ()
    if backend == "torch":
        from facerest_cli.backend.torch_backend import TorchNetwork

        net = call if hasattr(call, "parameters") else call()  # a module, or a factory of one
        return TorchNetwork(net, options.device, choice.precision, options.channels_last, spec.fp32_scopes, notes)
    from facerest_cli.backend.openvino_backend import OpenVinoNetwork

    opts = dict(call.options) if hasattr(call, "options") else dict(spec.options if call_options is None else call_options)
    return OpenVinoNetwork(call, spec.inputs, model, choice.precision, options.caps, cache, options.batch_mode,
                           options.max_batch, fn=spec.fn, options=opts, notes=notes)
