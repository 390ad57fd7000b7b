"""One real run on the Solvay photo (29 faces), shared by the report tests."""

from __future__ import annotations

import pytest

from tests.conftest import WEIGHTS, run_images, shared_file

# Passthrough faces score 0.998-0.999: flagging below 0.999 flags some of them, so filters have work to do.
FLAG_BELOW = 0.999


@pytest.fixture(scope="session")
def solvay_report(tmp_path_factory):
    from facerest_cli.config import IdentityConfig

    shared_file("images", "gpen", "imgs", "Solvay_conference_1927.png")
    out = tmp_path_factory.mktemp("solvay_report") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEREST_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
        res = run_images(shared_file("images", "gpen", "imgs"), out, identity=IdentityConfig(flag_below=FLAG_BELOW))
    assert res.faces == 29
    return out
