"""The local scheduler overlaps the batch stages with the restorer (issue 13, item 6): the 3D prior fits faces as
frames are prepared, and the stages after the restorer run as frames are written, unless a stage may send faces
back to the restorer (the identity guard)."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from facerest_cli.pipeline import overlap_split
from tests.conftest import read_jsonl, run_images, shared_file
from tests.doubles import BlurRestorer


class _Stage:
    def __init__(self, name, **decl):
        self.name = name
        self.__dict__.update(decl)


def test_split_moves_only_a_leading_input_run_and_a_trailing_non_retrying_run():
    s = [_Stage("a", on_input=True), _Stage("b", on_input=True, retries=False), _Stage("c"),
         _Stage("d", retries=False), _Stage("e", retries=False)]
    assert overlap_split(s) == (2, 3)
    # an undeclared stage stays around the restorer, and so does every stage on its far side
    assert overlap_split([_Stage("a"), _Stage("b", on_input=True)]) == (0, 2)
    assert overlap_split([_Stage("a", retries=False), _Stage("guard", retries=True)]) == (0, 2)
    assert overlap_split([]) == (0, 0)


@pytest.fixture
def hook_threads(monkeypatch):
    """Which thread ran each stage hook of a real run: {(stage, hook): {thread names}}."""
    import facerest_cli.job as job

    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    original = job.build_stages

    def spying(*a, **kw):
        stages = original(*a, **kw)
        for st in stages:
            for hook in ("before_restore", "after_restore"):
                fn = getattr(st, hook)

                def spy(faces, _fn=fn, _key=(st.name, hook)):
                    seen[_key].add(threading.current_thread().name)
                    return _fn(faces)

                setattr(st, hook, spy)
        return stages

    monkeypatch.setattr(job, "build_stages", spying)
    return seen


def test_prior_runs_while_preparing_and_after_stages_while_writing(tmp_path, hook_threads):
    photo = shared_file("images", "gfpgan", "whole_imgs", "Blake_Lively.jpg")
    res = run_images(photo, tmp_path / "out", restorer=BlurRestorer(sigma=3.0), batch_size=8)
    assert res.exit_code == 0 and res.faces == 2
    assert hook_threads[("prior", "before_restore")] == {"facerest-prepare"}
    for name in ("color", "temporal", "identity", "prior"):
        assert hook_threads[(name, "after_restore")] == {"facerest-write"}, name
    # the 3D prior's results reached the report from the prepare thread
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert len(recs) == 2 and all(r["pose"] and r["identity"]["cosine"] is not None for r in recs)


def test_the_identity_guard_keeps_the_after_stages_around_the_restorer(tmp_path, hook_threads):
    photo = shared_file("images", "gfpgan", "whole_imgs", "Blake_Lively.jpg")
    res = run_images(photo, tmp_path / "out", restorer=BlurRestorer(sigma=3.0), min_identity=0.99)
    assert res.exit_code == 0 and res.faces == 2
    assert hook_threads[("prior", "before_restore")] == {"facerest-prepare"}
    for name in ("color", "temporal", "identity"):
        assert hook_threads[(name, "after_restore")] == {threading.main_thread().name}, name


def test_ctrl_c_while_only_the_writer_works_stops_the_run(tmp_path, monkeypatch):
    """With the after-restore stages in the write thread, the restore loop can be done while the writer still
    works through the last frames. A Ctrl-C then (KeyboardInterrupt in the main thread, as Python raises it)
    must still end the run as "interrupted" (exit 130) rather than escape as an exception after the writer is
    done; the writer finishes the frames already restored, as after a Ctrl-C during the loop."""
    import _thread
    import shutil
    import time

    from facerest_cli.pipeline import Pipeline

    src = tmp_path / "in"
    src.mkdir()
    photo = shared_file("images", "gfpgan", "whole_imgs", "Blake_Lively.jpg")
    for i in range(6):
        shutil.copy(photo, src / f"p{i}.jpg")
    loop_done = threading.Event()
    fired: list[int] = []
    real_loop, real_write = Pipeline._restore_loop, Pipeline.write_frame

    def loop(self, q_prep, q_write):
        real_loop(self, q_prep, q_write)
        loop_done.set()

    def slow_write(self, fr, report):
        if loop_done.wait(timeout=30) and not fired:
            fired.append(1)
            _thread.interrupt_main()  # arrives while the main thread waits for the writer
        time.sleep(0.2)
        real_write(self, fr, report)

    monkeypatch.setattr(Pipeline, "_restore_loop", loop)
    monkeypatch.setattr(Pipeline, "write_frame", slow_write)
    res = run_images(src, tmp_path / "out", restorer=BlurRestorer(sigma=3.0), batch_size=8, queue_size=8)
    assert fired
    assert res.status == "interrupted" and res.exit_code == 130
