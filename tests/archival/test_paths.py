"""Inputs are read-only and outputs stay in the output folder (issue 8, acceptance 4): an output folder inside the
input tree is never read back as input; an output that is an input (same path, symbolic link, hard link, case
variant) is refused with exit code 2; `..`, absolute names and symlinked folders cannot lead outside."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from facerest_cli.config import OutputConfig, RunConfig
from facerest_cli.errors import FacerestError, InputError, UsageError
from facerest_cli.io.sinks import output_path
from facerest_cli.io.sources import InputItem
from facerest_cli.pipeline import Pipeline
from tests.archival._data import RUN_ARGS, fast_options, forty_images
from tests.conftest import run_cli, run_images


def _run(src, out, **kw):
    return run_images(src, out, **fast_options(), **kw)


def _snapshot(d: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.relative_to(d).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
            for p in sorted(d.rglob("*")) if p.is_file() and "restored" not in p.parts}


def test_output_folder_inside_the_input_tree_is_not_reprocessed(tmp_path):
    src = tmp_path / "scans"
    forty_images(src, 3, side=240)
    before = _snapshot(src)
    out = src / "restored"
    first = _run(src, out)
    assert first.seen == 3 and first.processed == 3
    second = _run(src, out)  # the outputs of the first run now sit inside the input tree
    assert second.seen == 3 and second.processed == 3
    assert not (out / "restored").exists()
    # Through a symbolic link to the same folder as well:
    link = tmp_path / "out-link"
    link.symlink_to(out, target_is_directory=True)
    third = _run(src, link)
    assert third.seen == 3 and not (out / "restored").exists()
    # Naming the output folder itself as an input (a shell glob): refused, its outputs would overwrite themselves.
    with pytest.raises(UsageError, match="would overwrite the input file"):
        _run([src / "img00.jpg", out], out)
    assert _snapshot(src) == before  # inputs untouched, byte for byte and mtime


def test_same_file_output_is_refused_with_exit_code_2(tmp_path):
    src = tmp_path / "scans"
    forty_images(src, 2, side=240)
    before = _snapshot(src)
    proc = run_cli("run", src, "-o", src, *RUN_ARGS)
    assert proc.returncode == 2, proc.stderr
    assert "would overwrite the input file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _snapshot(src) == before


@pytest.mark.parametrize("how", ["symlink", "hardlink", "case"])
def test_outputs_resolving_to_an_input_are_refused(tmp_path, how):
    src = tmp_path / "scans"
    forty_images(src, 2, side=240)
    out = tmp_path / "out"
    out.mkdir()
    kw = {}
    if how == "symlink":
        (out / "img00.jpg").symlink_to(src / "img00.jpg")
    elif how == "hardlink":
        os.link(src / "img00.jpg", out / "img00.jpg")
    else:  # Photo.JPG -> --ext jpg in the same folder: Photo.jpg, the same file on a case-insensitive disk
        (src / "img00.jpg").rename(src / "IMG00.JPG")
        out, kw = src, {"ext": "jpg"}
    before = _snapshot(src)
    with pytest.raises(UsageError, match="would overwrite the input file"):
        _run(src, out, **kw)
    assert _snapshot(src) == before


def test_outputs_cannot_leave_the_output_folder(tmp_path):
    src = tmp_path / "scans"
    forty_images(src / "box1", 1, side=240)
    forty_images(src / "box2", 1, side=240)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "box1").symlink_to(elsewhere, target_is_directory=True)  # a link planted in the output folder
    res = _run(src, out)
    assert res.processed == 1
    assert [Path(f.path).parent.name for f in res.failed] == ["box1"]
    assert "would leave the output folder" in res.failed[0].error
    assert list(elsewhere.iterdir()) == []
    assert (out / "box2" / "img00.jpg").exists()


def test_dotdot_and_absolute_names_are_rejected(tmp_path):
    with pytest.raises(FacerestError, match="outside the output directory"):
        output_path(tmp_path, Path("../evil.jpg"), "JPEG", None, "")
    with pytest.raises(FacerestError, match="outside the output directory"):
        output_path(tmp_path, Path("/etc/evil.jpg"), "JPEG", None, "")
    cfg = RunConfig(inputs=(tmp_path,), output=OutputConfig(out_dir=tmp_path / "out"))
    items = [InputItem(tmp_path / "a.jpg", Path("sub/../../a.jpg"), "image"), InputItem(tmp_path / "b.jpg", Path("b.jpg"), "image")]
    plan = Pipeline.plan_outputs(types.SimpleNamespace(cfg=cfg), items)
    assert isinstance(plan[tmp_path / "a.jpg"], InputError)
    assert plan[tmp_path / "b.jpg"] == tmp_path / "out" / "b.jpg"
    with pytest.raises(UsageError, match="--suffix"):
        OutputConfig(suffix="/../x")
