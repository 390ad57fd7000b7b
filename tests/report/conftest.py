"""One real run on the Solvay photo (29 faces), shared by the report tests."""

from __future__ import annotations

import pytest

from tests.conftest import WEIGHTS, run_images, shared_file
from tests.doubles import BlurRestorer

# A test restorer that blurs each crop (sigma 4 crop pixels): the 29 faces then score 0.77-0.98 (measured), so
# flagging below 0.97 flags some of them and the filters have work to do. (A passthrough now round-trips the
# faces almost losslessly: every cosine is >= 0.999.)
FLAG_BELOW = 0.97


@pytest.fixture(scope="session")
def solvay_report(tmp_path_factory):
    from facerest_cli.config import IdentityConfig

    shared_file("images", "gpen", "imgs", "Solvay_conference_1927.png")
    out = tmp_path_factory.mktemp("solvay_report") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEREST_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
        res = run_images(shared_file("images", "gpen", "imgs"), out, identity=IdentityConfig(flag_below=FLAG_BELOW), restorer=BlurRestorer(sigma=4.0))
    assert res.faces == 29
    return out
