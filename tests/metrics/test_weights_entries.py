"""The metric weights.toml entries: real URLs, the full sha256 and size of known-hashes.tsv, licences; the real
LPIPS / NIQE files are recognised by hash on `facerest weights import`."""

from __future__ import annotations

import csv

from facerest_cli.models.registry import arch_spec
from facerest_cli.weights.registry import load_registry
from tests.conftest import FORMATS, run_cli, shared_file

EXPECTED = {
    "lpips-vgg": ("vgg16", ["vgg16-397923af.pth", "lpips_v0.1_vgg.pth"]),
    "lpips-alex": ("alexnet", ["alexnet-owt-7be5be79.pth", "lpips_v0.1_alex.pth"]),
    "fid-inception": ("fid_inception_v3", ["pt_inception-2015-12-05-6726825d.pth"]),
    "niqe-params": ("niqe_params", ["niqe_pris_params.npz"]),
}


def test_metric_entries_carry_the_known_hashes():
    reg = load_registry()
    rows = {r["filename"]: r for r in csv.DictReader((FORMATS / "known-hashes.tsv").open(encoding="utf-8"), delimiter="\t")}
    for name, (arch, files) in EXPECTED.items():
        e = reg.get(name)
        assert e.role == "metric" and e.arch == arch and e.license and e.source
        assert arch_spec(arch).kind == ("external" if name == "niqe-params" else "torch")
        assert [f.name for f in e.files] == files
        for f in e.files:
            assert rows[f.name]["confidence"].startswith("high")
            assert f.sha256 == rows[f.name]["sha256"] and f.size == int(rows[f.name]["bytes"]), f.name
            assert f.url and all(u.startswith("https://") for u in f.url)
    assert reg.get("lpips-vgg").files[1].url[0].endswith("082bb24f84c091ea94de2867d34c4544f68e0963/lpips/weights/v0.1/vgg.pth")
    assert reg.get("fid-inception").file().url == (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",)


def test_weights_import_recognises_the_real_metric_files(tmp_path):
    r = run_cli("weights", "import", shared_file("checkpoint-formats", "metric-files"),
                env={"FACEREST_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    installed = sorted(line.split(" -> ")[1].split()[0] for line in r.stdout.splitlines() if line.startswith("installed"))
    assert installed == ["lpips-alex/lpips_v0.1_alex.pth", "lpips-vgg/lpips_v0.1_vgg.pth", "niqe-params/niqe_pris_params.npz"]
    assert "3 installed" in r.stdout and "2 skipped" in r.stdout  # the two LICENSE files
    v = run_cli("weights", "verify", "niqe-params", env={"FACEREST_HOME": str(tmp_path)})
    assert v.returncode == 0, v.stdout + v.stderr
