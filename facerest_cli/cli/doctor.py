"""``facerest doctor``: versions, torch/CUDA, the active renderer backend and which weights are installed."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import reports_errors

_PACKAGES = ("torch", "numpy", "opencv-python", "onnxruntime", "insightface", "av", "pillow", "scipy", "typer")


def ray_info(address: str | None = None) -> dict:
    """Whether Ray is importable and, with ``address``, what resources that cluster has (``--engine ray``)."""
    from facerest_cli.engines import ray_available

    ok, detail = ray_available()
    info: dict = {"available": ok, "version" if ok else "reason": detail}
    if ok and address:
        from facerest_cli.engines.ray import cluster_info

        try:
            info["cluster"] = cluster_info(address)
        except Exception as e:  # noqa: BLE001 - doctor reports, never fails on a cluster it cannot reach
            info["cluster"] = {"address": address, "error": str(e).splitlines()[0] if str(e) else type(e).__name__}
    return info


def collect(weights_dirs: tuple[Path, ...] = (), ray_address: str | None = None) -> dict:
    """Everything ``doctor`` reports, as a JSON-able dict (imports torch; no network but ``ray_address``)."""
    import platform
    import sys
    from importlib import metadata

    import torch

    from facerest_cli import __version__
    from facerest_cli.prior.render import active_backend, pytorch3d_available
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    p3d = None
    if pytorch3d_available():
        import pytorch3d

        p3d = getattr(pytorch3d, "__version__", "unknown")
    store = WeightsStore(WeightsConfig.from_env(weights_dirs=weights_dirs, offline=True))
    weights = {e.name: {"role": e.role, "state": store.state(e.name)} for e in store.registry}
    return {
        "facerest": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "torch": {"version": torch.__version__, "cuda_available": cuda, "cuda_version": torch.version.cuda,
                  "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
                  "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
                  "threads": torch.get_num_threads()},
        "renderer": {"active": active_backend("auto"), "pytorch3d": p3d},
        "ray": ray_info(ray_address),
        "weights_home": str(store.config.home),
        "weights": weights,
    }


@reports_errors
def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Also look for weights in this read-only folder (repeatable)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", help="Also show the resources (CPUs, GPUs, nodes) of the Ray cluster at ADDR (auto | HOST:PORT | ray://HOST:PORT), as facerest run --engine ray --ray-address would see them."),
) -> None:
    """Show what facerest runs with: package versions, torch and CUDA, the 3D renderer backend in use (pytorch3d
    when importable, else the built-in torch rasterizer) and the state of every weights entry. Never downloads."""
    import json

    info = collect(tuple(weights_dir), ray_address)
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    t = info["torch"]
    typer.echo(f"facerest {info['facerest']}  python {info['python']}  {info['platform']}")
    typer.echo("packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in info["packages"].items()))
    typer.echo(f"torch {t['version']}: CUDA {'yes (' + ', '.join(t['devices']) + ')' if t['cuda_available'] else 'no'}, "
               f"MPS {'yes' if t['mps_available'] else 'no'}, {t['threads']} CPU threads")
    r = info["renderer"]
    typer.echo(f"3D renderer: {r['active']}" + (f" (pytorch3d {r['pytorch3d']})" if r["pytorch3d"] else " (pytorch3d not importable)"))
    ray = info["ray"]
    line = f"ray {ray['version']}" if ray["available"] else f"ray: {ray['reason']}"
    cluster = ray.get("cluster")
    if cluster:
        line += "; cluster " + ", ".join(f"{k} {v}" for k, v in cluster.items())
    typer.echo(line + " (--engine ray)")
    typer.echo(f"weights ({info['weights_home']}):")
    for name, w in info["weights"].items():
        typer.echo(f"  {name:24s} {w['role']:16s} {w['state']}")


def register(app: typer.Typer) -> None:
    app.command()(doctor)
