"""``facerest weights ...``: list, fetch, verify, import, export, path, remove (issue: weights registry).

Commands parse options and hand off to ``facerest_cli.weights.cache.WeightsStore``; errors become exit code 2
through ``reports_errors``. ``FACEREST_REGISTRY`` points every command at another ``weights.toml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from facerest_cli.cli._common import err, reports_errors
from facerest_cli.errors import UsageError, WeightsError, WeightsMissingError

if TYPE_CHECKING:
    from facerest_cli.weights.cache import FileStatus, WeightsStore
    from facerest_cli.weights.registry import WeightsEntry

app = typer.Typer(help="Manage model weights: list, fetch, verify, import, export.", no_args_is_help=True)

WeightsDirs = Annotated[
    Optional[list[Path]],
    typer.Option("--weights-dir", help="Read-only folder searched first (repeatable; also FACEREST_WEIGHTS_DIR)."),
]
Offline = Annotated[bool, typer.Option("--offline", help="Never download (also FACEREST_OFFLINE=1).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

STATE_LABELS = {
    "verified": "verified",
    "pinned": "pinned on first use",
    "user-pinned": "user-pinned (--trust)",
    "missing": "missing",
    "corrupt": "CORRUPT",
}
_STATE_STYLE = {"verified": "green", "pinned": "cyan", "user-pinned": "yellow", "missing": "dim", "corrupt": "bold red"}


def _store(weights_dirs: Optional[list[Path]] = None, offline: bool = False) -> "WeightsStore":
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    return WeightsStore(WeightsConfig.from_env(weights_dirs or (), offline=True if offline else None))


def _row(entry: "WeightsEntry", st: "FileStatus") -> dict:
    f = entry.file(st.file)
    return {
        "name": entry.name,
        "file": st.file,
        "role": entry.role,
        "size": f.size,
        "license": entry.license,
        "non_commercial": entry.non_commercial,
        "state": st.state,
        "label": STATE_LABELS[st.state],
        "path": str(st.path) if st.path else None,
        "sha256": f.sha256,
        "actual_sha256": st.sha256,
        "detail": st.detail,
    }


def _human_size(n: int) -> str:
    if not n:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("name", "file", "role", "size"):
        table.add_column(col, no_wrap=True)
    table.add_column("licence", max_width=48, overflow="fold")
    table.add_column("state", no_wrap=True)
    for r in rows:
        licence = ("[bold yellow]non-commercial[/] · " if r["non_commercial"] else "") + r["license"]
        state = f"[{_STATE_STYLE[r['state']]}]{r['label']}[/]"
        table.add_row(r["name"], r["file"], r["role"], _human_size(r["size"]), licence, state)
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)


@app.command("list")
@reports_errors
def list_(weights_dir: WeightsDirs = None, as_json: AsJson = False) -> None:
    """Every model: role, size, licence and state (missing, verified, pinned on first use, user-pinned, corrupt)."""
    store = _store(weights_dir)
    rows = [_row(e, st) for e in store.registry for st in store.file_statuses(e.name)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, f"weights ({store.config.home})")


def _select(store: "WeightsStore", names: Optional[list[str]], role: Optional[str], all_: bool) -> list[str]:
    from facerest_cli.weights.registry import ROLES

    if role is not None and role not in ROLES:
        raise UsageError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    chosen = [store.registry.get(n).name for n in names or ()]
    if role is not None:
        chosen += [e.name for e in store.registry.by_role(role) if not e.user_import_only]
    if all_:
        chosen += [e.name for e in store.registry if not e.user_import_only]
    if not chosen:
        raise UsageError("name one or more models, or use --role ROLE or --all")
    return list(dict.fromkeys(chosen))


@app.command()
@reports_errors
def fetch(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to install (with what they require).")] = None,
    role: Annotated[Optional[str], typer.Option("--role", help="Every model of this role.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every model that can be downloaded.")] = False,
    offline: Offline = False,
    weights_dir: WeightsDirs = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Download and verify models that are not installed yet."""
    store = _store(weights_dir, offline)
    targets = _select(store, names, role, all_)
    failed: list[str] = []
    for name in targets:
        try:
            for key, path in store.ensure_all(name, progress=progress).items():
                typer.echo(f"ok  {key}  {path}")
        except WeightsError as e:
            if len(targets) == 1:
                raise
            err(str(e))
            failed.append(name)
    if failed:
        raise WeightsError(f"{len(failed)} of {len(targets)} models could not be installed: {', '.join(failed)}")


@app.command()
@reports_errors
def verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to check (default: all).")] = None,
    weights_dir: WeightsDirs = None,
    as_json: AsJson = False,
) -> None:
    """Re-hash every installed file (ignoring the hash cache) and report; exit 2 if any is corrupt."""
    store = _store(weights_dir)
    entries = [store.registry.get(n) for n in names] if names else list(store.registry)
    rows = [_row(e, st) for e in entries for st in store.file_statuses(e.name, rehash=True)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        for r in rows:
            if r["state"] != "missing":
                detail = f"  ({r['detail']})" if r["detail"] else ""
                typer.echo(f"{r['label']:<22} {r['name']}/{r['file']}  {r['path']}{detail}")
        present = sum(r["state"] != "missing" for r in rows)
        typer.echo(f"{present} file(s) checked, {len(rows) - present} not installed")
    bad = [f"{r['name']}/{r['file']}" for r in rows if r["state"] == "corrupt"]
    if bad:
        raise WeightsError(f"{len(bad)} corrupt file(s): {', '.join(bad)}; `facerest weights fetch` replaces them")


def _loud_warning(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]WARNING:[/] {message}", highlight=False)


@app.command("import")
@reports_errors
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (e.g. an export, or ../shared/weights).")],
    as_name: Annotated[Optional[str], typer.Option("--as", help="Install one file as this model's file.")] = None,
    file: Annotated[Optional[str], typer.Option("--file", help="With --as: which file of the model.")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="With --as: accept and pin a hash that differs.")] = False,
) -> None:
    """Copy weights into the cache after verification: matched by sha256, or by name where no hash is known."""
    store = _store()
    results = store.import_paths(paths, as_name=as_name, file=file, trust=trust, warn=_loud_warning)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.action] = counts.get(r.action, 0) + 1
        target = f"{r.entry}/{r.file}" if r.entry else ""
        line = f"{r.action:<9} {r.source}" + (f" -> {target}" if target else "")
        line += f"  ({r.detail})" if r.detail else ""
        (err if r.action == "refused" else typer.echo)(line)
    typer.echo(", ".join(f"{n} {a}" for a, n in counts.items()) or "nothing to import")
    if counts.get("refused"):
        raise WeightsError(f"{counts['refused']} file(s) refused (see above)")


@app.command()
@reports_errors
def export(
    dest: Annotated[Path, typer.Argument(help="Folder to write (e.g. a USB stick).")],
    weights_dir: WeightsDirs = None,
) -> None:
    """Copy every installed file, with manifest.json and SHA256SUMS, for `facerest weights import` elsewhere."""
    rows = _store(weights_dir).export(dest)
    for r in rows:
        typer.echo(f"{r['state']:<12} {r['path']}")
    typer.echo(f"{len(rows)} file(s) exported to {dest}; on the other machine: facerest weights import {dest}")
    if any(r["state"] == "user-pinned" for r in rows):
        typer.echo("user-pinned files need `facerest weights import FILE --as NAME --trust` there as well")


@app.command()
@reports_errors
def path(
    name: Annotated[str, typer.Argument(help="Model name.")],
    file: Annotated[Optional[str], typer.Option("--file", help="One file of the model (default: all).")] = None,
    weights_dir: WeightsDirs = None,
) -> None:
    """Print the verified path of each file of a model; exit 2 if one is missing."""
    store = _store(weights_dir)
    entry = store.registry.get(name)
    for f in [entry.file(file)] if file else entry.files:
        p = store.locate(entry.name, f.name)
        if p is None:
            how = f"`facerest weights fetch {entry.name}` downloads it"
            raise WeightsMissingError(store.missing_message(entry, f, how))
        typer.echo(str(p))


@app.command()
@reports_errors
def remove(
    names: Annotated[list[str], typer.Argument(help="Models to delete from the cache.")],
    unpin: Annotated[bool, typer.Option("--unpin", help="Also forget their hashes pinned in weights.lock.")] = False,
) -> None:
    """Delete models from the cache, with their compiled models (folders given with --weights-dir are never
    touched)."""
    from facerest_cli.backend.cache import CompiledCache

    store = _store()
    compiled = CompiledCache.for_weights_home(store.config.home)
    for name in names:
        removed = store.remove(name, unpin=unpin)
        n_compiled = len(compiled.remove_model(store.registry.get(name).name))
        typer.echo(f"{name}: removed {len(removed)} file(s)" + (f" and {n_compiled} compiled model(s)" if n_compiled else "")
                   + (" and its pins" if unpin else ""))
