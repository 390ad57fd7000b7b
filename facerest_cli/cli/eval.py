"""``facerest eval``: restoration quality as papers report it (``--restored DIR [--reference DIR]``), restorers
compared on a sample (``--restorers a,b,c SAMPLE_DIR``, ``facerest_cli.metrics.compare``), and
``facerest eval detect LABELS.jsonl ...`` (detection accuracy, ``facerest_cli.cli.eval_detect``).

One Typer command serves both: when the first argument is the word ``detect``, every later argument is handed
unparsed to ``eval_detect.main(argv)`` (its options may share names with ours, e.g. ``--json``), and its return
value is the exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand

from facerest_cli.cli._common import err, reports_errors

_DETECT_ARGV = "facerest.eval.detect_argv"
_CMP = "Comparing restorers (--restorers)"


class _EvalCommand(TyperCommand):
    """Sends ``eval detect ...`` past Click's option parser, untouched."""

    def parse_args(self, ctx, args):  # type: ignore[override]
        if args and args[0] == "detect":
            ctx.meta[_DETECT_ARGV] = list(args[1:])
            return super().parse_args(ctx, [])
        return super().parse_args(ctx, args)


def _run_detect(argv: list[str]) -> int:
    try:
        from facerest_cli.cli import eval_detect
    except ModuleNotFoundError as e:
        if e.name != "facerest_cli.cli.eval_detect":
            raise
        err("facerest eval detect is not available in this build (facerest_cli.cli.eval_detect is missing)")
        return 2
    return int(eval_detect.main(argv) or 0)


@reports_errors
def eval_(
    ctx: typer.Context,
    restored: Optional[Path] = typer.Option(None, "--restored", help="Folder (or one file) of restored faces to score.", show_default=False),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Folder of clean references, paired with --restored by relative path (any image extension).", show_default=False),
    fid_stats: Optional[Path] = typer.Option(None, "--fid-stats", help="FID reference statistics (.npz with mu, sigma; or BasicSR's inception_*.pth) instead of the --reference folder.", show_default=False),
    save_fid_stats: Optional[Path] = typer.Option(None, "--save-fid-stats", help="Write the --reference folder's FID statistics (.npz) for later --fid-stats runs.", show_default=False),
    metrics: List[str] = typer.Option(["all"], "--metrics", help="Comma-separated: psnr, ssim, lpips (= lpips-vgg, lpips-alex), niqe, fid, identity, lmd, shape, all."),
    crop_border: int = typer.Option(0, "--crop-border", min=0, help="Pixels cut from each edge for PSNR/SSIM/NIQE (BasicSR crop_border)."),
    recognizer: str = typer.Option("arcface-mobilefacenet", help="Identity recognizer: arcface-mobilefacenet | arcface-r50 | arcface-iresnet50 | arcface-iresnet100."),
    landmarks: str = typer.Option("3ddfa-mb05", help="Landmark / shape regressor for LMD and shape: 3ddfa-mb05 | 3ddfa-mb1."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per network call."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps. Metrics always run in float32."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write per-image values, means, models and skipped columns as JSON.", show_default=False),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-image values and a mean row as CSV.", show_default=False),
    md_out: Optional[Path] = typer.Option(None, "--md", help="Write the paper-style Markdown tables.", show_default=False),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    restorers: List[str] = typer.Option([], "--restorers", metavar="SETTINGS", help="Compare restorers on a sample: `facerest eval --restorers none,gfpgan-1.4@strength=0.5,codeformer@fidelity=0.7 SAMPLE_DIR -o OUT`. Each setting is a restorer NAME, optionally followed by @strength=S and/or @fidelity=W (numbers in 0..1; fidelity for restorers that take one, e.g. codeformer). Writes OUT/<setting>/ (facerest run with --save-crops), the mean table (stdout, OUT/compare.json/csv/md) and OUT/compare.html (faces side by side with their scores).", rich_help_panel=_CMP),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="With --restorers: the output folder (default ./compare).", show_default=False, rich_help_panel=_CMP),
    aligned: bool = typer.Option(False, "--aligned", help="With --restorers: the sample is already-aligned square faces (FFHQ template), as for facerest run --aligned.", rich_help_panel=_CMP),
    detector: str = typer.Option("auto", help="With --restorers: the detector of facerest run (see facerest run --help).", rich_help_panel=_CMP),
    faces: str = typer.Option("all", help="With --restorers: all | largest | center.", rich_help_panel=_CMP),
    prior: str = typer.Option("auto", "--prior", help="With --restorers: 3D prior of facerest run (pose-adaptive strength): auto | off | 3ddfa-mb05 | 3ddfa-mb1.", rich_help_panel=_CMP),
    precision: str = typer.Option("fp32", help="With --restorers: restorer precision fp32 | fp16 | bf16 (metrics are always float32).", rich_help_panel=_CMP),
) -> None:
    """Score restored faces: PSNR/SSIM (RGB and Y), LPIPS, FID, NIQE, identity (ArcFace cosine and Deg), LMD and
    3DMM shape distance. Without --reference only the no-reference metrics (NIQE, FID with --fid-stats) run.
    A metric whose weights are not installed is skipped with the `facerest weights fetch` command to run.

    `facerest eval --restorers a,b,c SAMPLE_DIR -o OUT` restores a sample with each setting and compares them
    (which model, strength or fidelity suits these photos?): no-reference scores always (NIQE; identity and shape
    of each restored face against its input face), paired scores with --reference DIR.

    `facerest eval detect LABELS.jsonl [...]` evaluates face detection instead (see `facerest eval detect --help`).
    """
    if _DETECT_ARGV in ctx.meta:
        raise typer.Exit(_run_detect(ctx.meta[_DETECT_ARGV]))
    from facerest_cli.errors import UsageError

    if restorers:
        if restored is not None:
            raise UsageError("--restored scores a folder already restored; --restorers restores a sample itself: use one")
        if save_fid_stats is not None:
            raise UsageError("--save-fid-stats needs --restored and --reference (a reference folder's statistics)")
        raise typer.Exit(_compare(ctx.args, restorers, output=output, reference=reference, fid_stats=fid_stats,
                                  metrics=metrics, crop_border=crop_border, recognizer=recognizer, landmarks=landmarks,
                                  batch_size=batch_size, device=device, aligned=aligned, detector=detector,
                                  faces=faces, prior=prior, precision=precision, json_out=json_out, csv_out=csv_out,
                                  md_out=md_out, weights_dir=weights_dir, quiet=quiet))
    only_compare = [o for o, used in (("-o", output is not None), ("--aligned", aligned), ("--detector", detector != "auto"),
                                      ("--faces", faces != "all"), ("--prior", prior != "auto"),
                                      ("--precision", precision != "fp32")) if used]
    if only_compare:
        raise UsageError(f"{', '.join(only_compare)}: only with --restorers (comparing restorers on a sample)")
    if ctx.args:
        raise UsageError(f"unexpected arguments: {' '.join(ctx.args)} (did you mean --restored DIR, or "
                         "--restorers a,b SAMPLE_DIR?)")
    if restored is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    from rich.console import Console

    from facerest_cli.metrics.evaluate import EvalOptions
    from facerest_cli.metrics.report import summary_markdown, write_reports
    from facerest_cli.restore.runtime import resolve_device
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    store = WeightsStore(WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=True))
    opts = EvalOptions(restored=restored, reference=reference, fid_stats=fid_stats, save_fid_stats=save_fid_stats,
                       metrics=tuple(metrics), device=resolve_device(device), batch_size=batch_size,
                       crop_border=crop_border, recognizer=recognizer, landmarks=landmarks)
    console = Console(stderr=True)
    result = _with_progress(opts, store, quiet, console)
    for line in result.skipped.values():
        err(line)
    write_reports(result, json_path=json_out, csv_path=csv_out, md_path=md_out)
    typer.echo(summary_markdown(result, include_skipped=False), nl=False)  # skipped columns: on stderr above
    if result.failed:
        raise typer.Exit(1)


def _with_progress(opts, store, quiet: bool, console):
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from facerest_cli.metrics.evaluate import evaluate

    with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("scoring", total=None)
        return evaluate(
            opts, store,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            on_failure=lambda line: console.print(f"[red]not scored[/red] {escape(line)}", highlight=False, soft_wrap=True),
        )


def _compare(args: list[str], restorers: list[str], *, output: Optional[Path], reference: Optional[Path],
             fid_stats: Optional[Path], metrics: list[str], crop_border: int, recognizer: str, landmarks: str,
             batch_size: int, device: str, aligned: bool, detector: str, faces: str, prior: str, precision: str,
             json_out: Optional[Path], csv_out: Optional[Path], md_out: Optional[Path], weights_dir: list[Path],
             quiet: bool) -> int:
    """``facerest eval --restorers ... SAMPLE``: check everything, restore with each setting, score, write."""
    from contextlib import contextmanager

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from facerest_cli.cli._progress import RichEvents
    from facerest_cli.cli._signals import stop_on_signals
    from facerest_cli.errors import UsageError
    from facerest_cli.metrics import compare as cmp
    from facerest_cli.restore.runtime import resolve_device
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise UsageError(f"unknown option(s) {' '.join(flags)} (see facerest eval --help)")
    if len(args) != 1:
        got = "none" if not args else " ".join(args)
        raise UsageError(f"--restorers needs exactly one SAMPLE_DIR (folder or file of photos to restore), got {got}")
    for opt, value, allowed in (("--faces", faces, ("all", "largest", "center")),
                                ("--precision", precision, ("fp32", "fp16", "bf16"))):
        if value not in allowed:
            raise UsageError(f"{opt} must be one of {', '.join(allowed)}; got {value!r}")
    # Nothing is downloaded: a missing restorer, detector or metric network is named with the command to run.
    weights = WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=True)
    store = WeightsStore(weights)
    settings = cmp.parse_settings(restorers, store.registry)
    opts = cmp.CompareOptions(sample=Path(args[0]), out_dir=output or Path("compare"), settings=tuple(settings),
                              reference=reference, fid_stats=fid_stats, aligned=aligned, detector=detector,
                              faces=faces, prior=prior, device=device, metric_device=resolve_device(device),
                              precision=precision, batch_size=batch_size, metrics=tuple(metrics),
                              crop_border=crop_border, recognizer=recognizer, landmarks=landmarks)
    plan = cmp.check(opts, store)  # exit 2 here, before any image is touched
    console = Console(stderr=True)

    @contextmanager
    def events_for(i: int, s):
        if not quiet:
            console.print(f"[bold][{i + 1}/{len(settings)}] {escape(s.label)}[/bold]", highlight=False)
        with RichEvents(total=None, quiet=quiet) as ev:
            yield ev

    with stop_on_signals():
        runs = cmp.restore_all(opts, weights, events_for)
        with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, disable=quiet, transient=False) as bar:
            task = bar.add_task("scoring", total=None)
            result = cmp.score(
                opts, runs, store, plan,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                on_failure=lambda line: console.print(f"[red]not scored[/red] {escape(line)}", highlight=False,
                                                      soft_wrap=True))
    for line in result.skipped.values():
        err(line)
    written = cmp.write_outputs(result, opts.out_dir, json_path=json_out, csv_path=csv_out, md_path=md_out)
    typer.echo(cmp.summary_markdown(result, include_skipped=False), nl=False)
    if not quiet:
        console.print(f"-> {written['html']}", highlight=False)
    failed = any(run.failed for run in runs) or bool(result.failed)
    return 1 if failed else 0


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        cls=_EvalCommand,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(eval_)
