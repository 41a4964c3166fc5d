"""`gpufleet verify ... --site`: the profile, node names, rails and leaves come from the site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpufleet.cli import main
from gpufleet.errors import UserError
from gpufleet.model import cluster_from_data, load_cluster
from gpufleet.verify.isolation import validate_layout
from gpufleet.verify.site import fabric_layout, gpu_profile, judge_profile

ROOT = Path(__file__).resolve().parents[2]
SITES = ROOT / "inventories"
LOG = str(ROOT / "tests/data/nccl-tests/h100-2node-alltoall-sendrecv-cluster00-pair-ok.log")
MINIMAL = ROOT / "tests" / "data" / "specs" / "minimal-ib.yaml"


@pytest.mark.parametrize(
    ("site", "profile"),
    [("example-ib", "hgx-h100-8gpu-ib"), ("example-roce", "hgx-h100-8gpu-roce")],
)
def test_gpu_profile_of_each_site(site: str, profile: str) -> None:
    assert gpu_profile(load_cluster(SITES / site)) == profile


def test_a_lab_without_gpus_has_no_profile_to_judge_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["verify", "nccl", LOG, "--site", str(SITES / "lab")]) == 2
    assert "--site: the gpu nodes of site lab have no GPUs" in capsys.readouterr().err


def test_profile_from_site_or_option_never_both() -> None:
    assert judge_profile(None, None) == "hgx-h100-8gpu-ib"
    assert judge_profile("hgx-h100-8gpu-roce", None) == "hgx-h100-8gpu-roce"
    assert judge_profile(None, SITES / "example-roce") == "hgx-h100-8gpu-roce"
    with pytest.raises(UserError) as info:
        judge_profile("hgx-h100-8gpu-ib", SITES / "example-ib")
    assert info.value.problems[0].path == "--profile"


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().out


@pytest.mark.parametrize(
    ("site", "profile"),
    [("example-ib", "hgx-h100-8gpu-ib"), ("example-roce", "hgx-h100-8gpu-roce")],
)
def test_nccl_with_site_judges_as_the_sites_profile(
    capsys: pytest.CaptureFixture[str], site: str, profile: str
) -> None:
    by_site = _json(capsys, "verify", "nccl", LOG, "--site", str(SITES / site), "--json")
    by_profile = _json(capsys, "verify", "nccl", LOG, "--profile", profile, "--json")
    assert by_site == by_profile


def test_the_site_profile_changes_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """The same log judged as an IB and as a RoCE site: the profile really comes from the site."""
    ib = _json(capsys, "verify", "nccl", LOG, "--site", str(SITES / "example-ib"), "--json")
    roce = _json(capsys, "verify", "nccl", LOG, "--site", str(SITES / "example-roce"), "--json")
    assert json.loads(ib[1]) != json.loads(roce[1])


def test_nccl_with_site_and_profile_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    site = str(SITES / "example-ib")
    assert main(["verify", "nccl", LOG, "--site", site, "--profile", "hgx-h100-8gpu-ib"]) == 2
    assert "--profile: given together with --site" in capsys.readouterr().err


def test_layout_of_example_ib() -> None:
    cluster = load_cluster(SITES / "example-ib")
    layout = fabric_layout(cluster)
    validate_layout(layout)
    assert layout.nodes == tuple(f"gpu{i:03d}" for i in range(1, 33))
    assert layout.rails == 8
    assert layout.leaf("gpu001", 0) == "su1-leaf0"
    assert layout.leaf("gpu032", 7) == "su2-leaf7"
    assert set(layout.leaf_of.values()) == set(cluster.fabric.leaves if cluster.fabric else ())


def test_a_site_without_leaves_cannot_be_simulated() -> None:
    cluster = cluster_from_data(yaml.safe_load(MINIMAL.read_text()))
    with pytest.raises(UserError) as info:
        fabric_layout(cluster)
    assert "networks.fabric.topology" in str(info.value)


def test_simulate_plans_on_the_sites_nodes_rails_and_leaves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out = _json(
        capsys, "verify", "simulate", "--site", str(SITES / "example-ib"), "--faults", "4", "--json"
    )
    assert rc == 0
    data = json.loads(out)
    assert (data["site"], data["nodes"], data["rails"], data["nodes_per_leaf"]) == (
        "example-ib",
        32,
        8,
        16,
    )
    cluster = load_cluster(SITES / "example-ib")
    names = {n.name for n in cluster.nodes_by_role("gpu")}
    leaves = set(cluster.fabric.leaves if cluster.fabric else ())
    assert len(data["faults"]) == 4
    assert all(f["subject"] in names | leaves for f in data["faults"])
    subjects = {v["subject"] for v in data["adaptive"]["verdicts"]}
    assert leaves <= subjects  # one verdict per leaf switch of the site
    assert data["adaptive"]["accuracy"]["healthy_nodes_blamed"] == []


def test_simulate_on_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _json(
        capsys, "verify", "simulate", "--site", str(SITES / "lab"), "--faults", "1", "--json"
    )
    assert rc == 0
    data = json.loads(out)
    assert (data["nodes"], data["rails"]) == (3, 2)


def test_simulate_site_and_shape_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    site = str(SITES / "example-ib")
    assert main(["verify", "simulate", "--site", site, "--nodes", "8", "--rails", "2"]) == 2
    err = capsys.readouterr().err
    assert "--nodes: given together with --site" in err and "--rails:" in err
