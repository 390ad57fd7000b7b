"""The model registry: one typed ``ModelSpec`` per weights.toml entry, and one ``build`` for every network.

A model is described once. weights.toml gives its files, role, input normalisation, template, crop size,
requirements and licence; its architecture module gives the builder and the call adapter (``models.arch.ArchSpec``).
Everything else derives from the two: the CLI choices and help of each role (``names``), what ``auto`` picks
(``resolve_auto``), bench lists, and the networks the stages run (``build``). Adding a model is a weights.toml
table plus an architecture file; a user's model is a TOML fragment in ``$FACEREST_HOME/models/`` whose ``arch`` is
``"package.module:attr"`` (see README, "Adding a model").

Layering: this module sits above ``weights`` (files), ``models`` (architectures) and ``backend`` (execution), and
below the stages (detect, restore, blend, identity, prior) that wrap a built ``Model`` in their role's logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from facerest_cli.errors import UsageError, WeightsError
from facerest_cli.weights.registry import InputSpec, Registry, WeightsEntry

if TYPE_CHECKING:
    import torch

    from facerest_cli.models.arch import ArchSpec, ExternalArch
    from facerest_cli.weights.cache import WeightsStore


@dataclass(frozen=True)
class ModelSpec:
    """Everything known about one model, from its weights.toml entry and its architecture."""

    name: str
    role: str
    arch: str  # the architecture name (or "module:attr")
    input: InputSpec  # normalisation: x = (pixels in [0, value_range] - mean) / std, in ``input.color`` order
    template: str  # alignment template ("ffhq512", "arcface112") or "" when the model takes whole images
    size: int  # crop side the model takes (0: any)
    requires: tuple[str, ...]
    license: str
    non_commercial: bool
    entry: WeightsEntry = field(repr=False)

    @classmethod
    def from_entry(cls, entry: WeightsEntry) -> "ModelSpec":
        return cls(name=entry.name, role=entry.role, arch=entry.arch, input=entry.input, template=entry.template,
                   size=entry.input.size, requires=entry.requires, license=entry.license,
                   non_commercial=entry.non_commercial, entry=entry)

    @property
    def arch_spec(self) -> "ArchSpec | ExternalArch":
        from facerest_cli.models.registry import arch_spec

        return arch_spec(self.arch)

    @property
    def is_torch(self) -> bool:
        return self.arch_spec.kind == "torch"


def spec(name: str, registry: Registry) -> ModelSpec:
    return ModelSpec.from_entry(registry.get(name))


def names(role: str, registry: Registry) -> list[str]:
    """The entries of ``role``, in weights.toml order: the choices the CLI offers for it."""
    return [e.name for e in registry.by_role(role)]


def resolve_auto(role: str, store: "WeightsStore") -> tuple[list[str], str | None]:
    """What ``auto`` means for ``role``: the installed entries that take part in ``auto`` (weights.toml ``auto =
    rank``, lowest first), and the entry to fetch when none is installed (``auto_fetch = true``), or None."""
    ranked = sorted((e for e in store.registry.by_role(role) if e.auto is not None), key=lambda e: e.auto)
    installed = [e.name for e in ranked if all(store.locate(e.name, f.name) is not None for f in e.files)]
    fetch = next((e.name for e in ranked if e.auto_fetch), None)
    return installed, fetch


def pick_auto(role: str, store: "WeightsStore") -> str | None:
    """The single entry ``auto`` uses: the best installed one, else the one to fetch, else None."""
    installed, fetch = resolve_auto(role, store)
    return installed[0] if installed else fetch


# --------------------------------------------------------------------------------------------------- building


@dataclass(frozen=True)
class Execution:
    """Where and how networks run: the resolved ``device`` (cpu, cuda[:N], mps), the ``backend`` (auto: OpenVINO
    on CPU when installed, else torch), the ``precision`` (auto: bf16 on CPUs with AMX or AVX512_BF16 for the
    networks whose policy allows it, ``ArchSpec.bf16``), the CPU's capabilities (None: detected) and the largest
    batch a caller passes. ``Execution()`` is plain torch fp32: the networks exactly as the official code runs them."""

    device: str = "cpu"
    backend: str = "torch"
    precision: str = "fp32"
    caps: Any = None  # facerest_cli.backend.cpu.CpuCaps
    max_batch: int = 1

    @property
    def plain(self) -> bool:
        """Eager torch in fp32: no backend machinery at all (bit-identical to the direct call)."""
        return self.backend == "torch" and self.precision == "fp32"


@dataclass
class Model:
    """A built model: its spec, its verified files and, for torch architectures, the loaded network on ``device``.

    ``model(*inputs, **options)`` runs the architecture's call adapter (the official inference call) on inputs
    that ``normalise`` prepared; stages never call the ``nn.Module`` directly, so a backend can replace how it runs.
    """

    spec: ModelSpec
    files: Mapping[str, Path]
    device: str = "cpu"
    net: "torch.nn.Module | None" = None
    options: Mapping[str, Any] = field(default_factory=dict)
    runner: Any = None  # a backend network (facerest_cli.backend.api.Network) that replaces the eager call

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def path(self) -> Path:
        """The main (first) file."""
        return self.files[self.spec.entry.files[0].name]

    def __call__(self, *inputs: Any, **options: Any) -> Any:
        if self.runner is not None:
            if options:
                raise UsageError(f"{self.spec.name}: options are fixed when a backend builds the network")
            return self.runner(*inputs)
        if self.net is None:
            raise WeightsError(f"{self.spec.name}: {self.spec.arch} is not a network facerest runs itself")
        arch = self.spec.arch_spec
        return arch.call(self.net, *inputs, **{**self.options, **options})

    @property
    def info(self) -> Any:
        """How the network was made ready (backend, precision, converted / cache / eager), or None for eager fp32."""
        return getattr(self.runner, "info", None)

    def normalise(self, x01: "torch.Tensor") -> "torch.Tensor":
        """``(N, C, H, W)`` float in [0, 1], already in the model's colour order -> the network's input."""
        return normalise(x01, self.spec.input)

    def normalise_uint8(self, x: "torch.Tensor") -> "torch.Tensor":
        """``(N, C, H, W)`` 8-bit values (any dtype) in the model's colour order -> the network's input. Nets stated
        on 0-255 values take them as they are, so their input is exactly what their official code computes."""
        x = x.float()
        inp = self.spec.input
        if inp.value_range != 255:
            x = x / 255.0
        if inp.mean:
            x = (x - x.new_tensor(inp.mean).view(1, -1, 1, 1)) / x.new_tensor(inp.std).view(1, -1, 1, 1)
        return x

    def denormalise(self, y: "torch.Tensor") -> "torch.Tensor":
        """The inverse of ``normalise``, for networks whose output is an image in their input's range."""
        return denormalise(y, self.spec.input)


def normalise(x01: "torch.Tensor", inp: InputSpec) -> "torch.Tensor":
    x = x01 * inp.value_range if inp.value_range != 1 else x01
    if inp.mean:
        mean = x.new_tensor(inp.mean).view(1, -1, 1, 1)
        std = x.new_tensor(inp.std).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def denormalise(y: "torch.Tensor", inp: InputSpec) -> "torch.Tensor":
    if inp.mean:
        y = y * y.new_tensor(inp.std).view(1, -1, 1, 1) + y.new_tensor(inp.mean).view(1, -1, 1, 1)
    return y / inp.value_range if inp.value_range != 1 else y


def build(name: str, store: "WeightsStore", device: str = "cpu", *, execution: Execution | None = None,
          role: str | None = None, channels_last: bool | None = None, **options: Any) -> Model:
    """Build the model ``name``: verify (or fetch) its files, build its architecture with the official
    constructor arguments, load the weights strictly, and make it ready to run.

    ``execution`` (default: plain torch fp32 on ``device``) chooses the backend and precision: anything but plain
    torch fp32 goes through ``facerest_cli.backend`` (OpenVINO conversion cached under ``$FACEREST_HOME/compiled``,
    torch autocast), with the architecture's precision policy. ``role`` checks the entry is what the caller expects
    (a restorer for ``--restorer``...). ``options`` are the call adapter's run-time options (``ArchSpec.options``,
    e.g. CodeFormer's ``fidelity``); others are refused. ``channels_last``: torch backend layout (None: its default).
    """
    execution = execution or Execution(device=device)
    device = execution.device
    entry = store.registry.get(name)
    s = ModelSpec.from_entry(entry)
    if role is not None and s.role != role:
        raise UsageError(f"{name!r} is a {s.role} (weights.toml role), not a {role}")
    arch = s.arch_spec
    files = {f.name: store.ensure(name, f.name) for f in entry.files}
    if arch.kind != "torch":
        return Model(s, files, device)
    unknown = set(options) - set(arch.options)
    if unknown:
        raise UsageError(f"{name}: unknown option(s) {', '.join(sorted(unknown))} for {s.arch}")
    from facerest_cli.weights.loader import load_weights_into

    def load() -> "torch.nn.Module":
        net = arch.build()
        load_weights_into(net, files[entry.files[0].name], entry.files[0])
        return net.eval()

    if execution.plain or not arch.inputs:
        import torch

        net = load().to(torch.device(device))
        for p in net.parameters():
            p.requires_grad_(False)
        return Model(s, files, device, net, dict(options))
    sha = store.status(name, entry.files[0].name).sha256 or "unknown"
    runner = _backend_network(s, load, sha, execution, options, store.config.home, channels_last)
    return Model(s, files, device, getattr(getattr(runner, "call", None), "net", None), dict(options), runner)


def _backend_network(s: ModelSpec, load: Any, sha: str, execution: Execution, options: Mapping[str, Any],
                     weights_home: Path | None, channels_last: bool | None = None) -> Any:
    """The network through ``facerest_cli.backend``; ``load()`` builds the loaded torch module and is called only
    when the compiled cache has no valid entry (so a cache hit never reads the torch weights)."""
    from facerest_cli.backend.api import BackendOptions, build_network
    from facerest_cli.backend.cache import CompiledCache
    from facerest_cli.backend.calls import arch_call
    from facerest_cli.backend.network import ModelId
    from facerest_cli.backend.wrap import TensorCall

    ac = arch_call(s.arch, dict(options))
    opts = BackendOptions(execution.backend, execution.precision, execution.device, execution.caps,
                          max_batch=execution.max_batch, channels_last=channels_last)
    cache = CompiledCache.for_weights_home(weights_home) if weights_home is not None else None
    return build_network(lambda: TensorCall(load(), ac.fn, **ac.options), ac, ModelId(s.name, s.arch, sha), opts,
                         cache=cache, call_options=ac.options)


def from_network(name: str, registry: Registry, net: "torch.nn.Module", device: str = "cpu", *,
                 execution: Execution | None = None, **options: Any) -> Model:
    """A ``Model`` around a network built elsewhere (random weights for ``facerest bench --random-weights``, a
    test's small variant): the spec and call adapter of entry ``name``, no files; never cached when compiled."""
    s = spec(name, registry)
    execution = execution or Execution(device=device)
    if execution.plain or not s.arch_spec.inputs:
        return Model(s, {}, execution.device, net.to(execution.device).eval(), dict(options))
    runner = _backend_network(s, lambda: net.eval(), "unsaved", execution, options, None)
    return Model(s, {}, execution.device, net, dict(options), runner)


@dataclass(frozen=True)
class BackendSummary:
    """summary.json ``backend``: how each network of the run was made ready (backend, precision, converted /
    loaded from the compiled cache / eager, seconds), so a second run can be seen to pay no conversion."""

    key: ClassVar[str] = "backend"
    networks: tuple[dict[str, Any], ...]

    @classmethod
    def collect(cls, *owners: Any) -> "BackendSummary | None":
        """The ``Model``s held (as ``.model``, or ``.tddfa.model`` / ``.recognizer.model``...) by ``owners``."""
        seen: dict[int, Model] = {}
        todo = list(owners)
        while todo:
            o = todo.pop()
            if o is None:
                continue
            if isinstance(o, Model):
                seen.setdefault(id(o), o)
                continue
            for attr in ("model", "tddfa", "recognizer", "sgpn", "d3dfr"):
                todo.append(getattr(o, attr, None))
            todo.extend(getattr(o, "raws", ()))  # a fused face detector's networks
        rows = []
        for m in seen.values():
            info = m.info
            rows.append({"model": m.name, "backend": info.backend if info else "torch",
                         "precision": info.precision if info else "fp32", "source": info.source if info else "eager",
                         "seconds": round(info.seconds, 3) if info else 0.0,
                         **({"notes": list(info.notes)} if info and info.notes else {})})
        return cls(tuple(sorted(rows, key=lambda r: r["model"]))) if rows else None

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.networks)
