"""``--restorer`` names: ``none`` plus every weights.toml entry whose role is ``restorer``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facerest_cli.config import RestoreConfig
from facerest_cli.errors import UsageError
from facerest_cli.restore.base import Passthrough, Restorer

if TYPE_CHECKING:
    from facerest_cli.registry import Execution
    from facerest_cli.weights.cache import WeightsStore
    from facerest_cli.weights.registry import Registry


def restorer_names(registry: "Registry") -> list[str]:
    """The ``--restorer`` choices: ``none`` and the restorer entries, in weights.toml order."""
    from facerest_cli.registry import names

    return ["none", *names("restorer", registry)]


def restorer_weights(name: str, registry: "Registry") -> list[str]:
    """The weights entries a restorer needs (checked before any image is touched)."""
    choices = restorer_names(registry)
    if name not in choices:
        raise UsageError(f"unknown restorer {name!r}; choose one of: {', '.join(choices)}")
    return [] if name == "none" else [name]


def build_restorer(cfg: RestoreConfig, store: "WeightsStore | None", device: str = "cpu",
                   execution: "Execution | None" = None) -> Restorer:
    """``none``, a one-call network (``restore.networks``) or a seeded diffusion sampler (``restore.diffusion``,
    for architectures whose ``ArchSpec.meta["runtime"]`` is ``"diffusion"``)."""
    if cfg.restorer == "none":
        return Passthrough(cfg.size)
    assert store is not None
    restorer_weights(cfg.restorer, store.registry)
    from facerest_cli.models.registry import arch_spec

    if arch_spec(store.registry.get(cfg.restorer).arch).meta.get("runtime") == "diffusion":
        from facerest_cli.restore.diffusion import DiffusionFaceRestorer, load_diffusion_restorer

        # One fixed number of faces per UNet call makes a face's pixels independent of its batch (see
        # DiffusionRestorer): 1 on CPU, where batching buys nothing, the run's batch size on a GPU.
        micro = 1 if device == "cpu" else (cfg.batch_size or 1)
        inner = load_diffusion_restorer(cfg.restorer, store, steps=cfg.steps, seed=cfg.seed, device=device,
                                        precision=_diffusion_precision(cfg.precision, device, execution),
                                        batch_size=micro)
        return DiffusionFaceRestorer(inner)
    from facerest_cli.restore.networks import build_network_restorer

    return build_network_restorer(cfg, store, device, execution)


def _diffusion_precision(requested: str, device: str, execution: "Execution | None") -> str:
    """The samplers run their own torch autocast: ``auto`` -> bf16 on CPUs with bf16 units (one UNet call in bf16
    is 1.3e-2 rel-L2 from fp32), else fp32."""
    from facerest_cli.backend.cpu import choose_precision, detect_cpu_caps

    caps = execution.caps if execution is not None and execution.caps is not None else detect_cpu_caps()
    return choose_precision(requested, device, caps).precision
