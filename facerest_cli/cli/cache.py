"""``facerest cache list | clear``: the compiled-model cache under ``$FACEREST_HOME/compiled``.

Converted networks (OpenVINO IR) are kept there so a second run pays no conversion; ``clear`` deletes them all
(they are rebuilt on the next run), ``facerest weights remove NAME`` deletes one model's entries.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from facerest_cli.cli._common import reports_errors

app = typer.Typer(help="The compiled-model cache ($FACEREST_HOME/compiled): list, clear.", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _cache():
    from facerest_cli.backend.cache import CompiledCache
    from facerest_cli.weights.cache import WeightsConfig

    return CompiledCache.for_weights_home(WeightsConfig.from_env().home)


@app.command("list")
@reports_errors
def list_entries(as_json: AsJson = False) -> None:
    """One line per compiled model: model, backend, key digest, size, created."""
    cache = _cache()
    rows = [
        {"model": e.model, "backend": e.backend, "digest": e.digest, "size": e.size, "created": e.created,
         "arch": e.key.get("arch", ""), "path": str(e.path), "manifest_ok": e.valid_manifest}
        for e in cache.entries()
    ]
    if as_json:
        typer.echo(json.dumps({"root": str(cache.root), "entries": rows}, indent=2))
        return
    typer.echo(f"{cache.root}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
    for r in rows:
        flag = "" if r["manifest_ok"] else "  (no valid manifest: rebuilt on next use)"
        typer.echo(f"{r['model']:<24} {r['backend']:<9} {r['digest']}  {r['size'] / 2**20:8.1f} MiB  {r['created']}{flag}")


@app.command()
@reports_errors
def clear(as_json: AsJson = False) -> None:
    """Delete every compiled model (the next run converts again)."""
    cache = _cache()
    entries = cache.entries()
    removed = cache.clear()
    size = sum(e.size for e in entries)
    if as_json:
        typer.echo(json.dumps({"root": str(cache.root), "removed": [str(p) for p in removed], "bytes": size}))
    else:
        typer.echo(f"removed {len(removed)} compiled model(s), {size / 2**20:.1f} MiB, from {cache.root}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cache")
