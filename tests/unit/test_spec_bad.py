"""Malformed specs: every one is rejected with the exact path and a useful message.

Each file under tests/data/bad_specs/ is constructed: tests/data/specs/minimal-ib.yaml
with one defect (its first line says which). The table maps file -> the path of the
expected problem, a fragment of its text (message or fix), and how many problems
the file yields in total (so a check that fires twice or not at all shows up).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gpufleet.cli
from gpufleet.errors import UserError
from gpufleet.model import load_cluster

BAD = Path(__file__).resolve().parents[1] / "data" / "bad_specs"

# file stem, expected path, fragment of "message (fix: hint)", total problems
CASES: list[tuple[str, str, str, int]] = [
    ("typo-node-key", "nodes[3].boot_mca", "did you mean 'boot_mac'", 2),
    ("typo-top-key", "versoins", "did you mean 'versions'", 2),
    ("typo-site-key", "site.ntp_server", "did you mean 'ntp_servers'", 2),
    ("typo-fabric-key", "networks.fabric.rials", "did you mean 'rails'", 2),
    ("missing-site-domain", "site.domain", "required key 'domain' is missing", 1),
    ("missing-versions-dcgm", "versions.dcgm", "required key 'dcgm' is missing", 1),
    ("role-unknown", "nodes[4].role", "is not allowed", 1),
    ("role-typo", "nodes[4].role", "did you mean 'monitoring'", 1),
    ("bmc-password-plain", "nodes[3].bmc.password", "must never be written", 1),
    ("bmc-password-ref-both", "defaults.bmc.password", "exactly one of env or secret", 1),
    ("bmc-password-missing", "nodes[0].bmc.password", "missing password reference", 5),
    ("bmc-url-not-redfish", "nodes[3].bmc.url", "does not name a Redfish system", 1),
    ("bmc-url-scheme", "nodes[4].bmc.url", "is not an http(s) URL", 1),
    ("bmc-url-http-remote", "nodes[4].bmc.url", "plain http", 1),
    ("bmc-url-outside-oob", "nodes[4].bmc.url", "outside the oob network", 1),
    ("bmc-url-duplicate", "nodes[4].bmc.url", "this BMC URL is also used by gpu001", 2),
    ("mac-invalid", "nodes[4].boot_mac", "is not a MAC address", 1),
    ("mac-read-as-number", "nodes[4].boot_mac", "read as a number by YAML", 1),
    ("mac-multicast", "nodes[4].boot_mac", "multicast", 1),
    ("mac-duplicate", "nodes[4].boot_mac", "boot MAC 02:00:00:00:01:01 is also used by gpu001", 1),
    ("name-duplicate", "nodes[4].name", "name gpu001 is also used by gpu001 (nodes[3])", 2),
    ("name-invalid", "nodes[4].name", "not a valid host name", 1),
    ("rack-position-duplicate", "nodes[4].position", "rack r2 U1 is also used by gpu001", 1),
    ("position-zero", "nodes[4].position", "greater than or equal to 1", 1),
    ("index-duplicate", "nodes[4].index", "gpu index 1 is also used by gpu001", 1),
    ("index-underivable", "nodes[0].index", "does not end in digits", 1),
    ("no-head-node", "nodes", "no head node", 1),
    ("lb-odd", "nodes", "1 lb nodes: load balancers run in pairs", 1),
    ("vips-without-lb", "networks.frontend.vips", "VIPs need lb nodes", 1),
    (
        "vip-outside-subnet",
        "networks.frontend.vips[0].address",
        "outside its subnet 10.1.0.0/24",
        1,
    ),
    ("vip-in-pool", "networks.frontend.vips[0].address", "lies in the gpu address pool", 1),
    ("vip-name-duplicate", "networks.frontend.vips[1].name", "used twice", 1),
    (
        "gateway-outside-subnet",
        "networks.frontend.gateway",
        "gateway 10.2.0.1 is outside its subnet",
        1,
    ),
    ("subnet-host-bits", "networks.oob.cidr", 'did you mean "10.0.0.0/24"', 1),
    ("subnet-invalid", "networks.oob.cidr", "is not an IPv4 subnet", 1),
    (
        "subnets-overlap-rails",
        "networks.fabric.rails[1]",
        "overlaps networks.fabric.rails[0] 10.10.0.0/24",
        1,
    ),
    (
        "subnets-overlap-storage",
        "networks.storage.cidr",
        "overlaps networks.frontend.cidr 10.1.0.0/24",
        1,
    ),
    ("pool-exhausted", "nodes[4].index", "pool exhausted", 2),
    (
        "pool-offset-outside",
        "networks.oob.pools.gpu",
        "pool offset 300 lies outside 10.0.0.0/24",
        1,
    ),
    (
        "pool-offset-shared",
        "networks.frontend.pools.lb",
        "pool offset 10 is also the head pool's",
        2,
    ),
    (
        "rails-vs-profile",
        "networks.fabric.rails",
        "4 rails, but profile hgx-h100-8gpu-ib (gpu001) has 8 fabric NICs",
        1,
    ),
    (
        "fabric-missing",
        "networks.fabric",
        "missing: profile hgx-h100-8gpu-ib (gpu001) has 8 fabric NICs",
        1,
    ),
    (
        "fabric-type-mismatch",
        "networks.fabric.type",
        "fabric is roce, but profile hgx-h100-8gpu-ib (gpu001) has infiniband NICs",
        1,
    ),
    ("roce-settings-missing", "networks.fabric", "needs its lossless class", 1),
    (
        "roce-tc-mismatch",
        "networks.fabric.roce",
        "traffic_class 96 carries DSCP 24, not dscp 26",
        1,
    ),
    ("roce-pfc-range", "networks.fabric.roce.pfc_priority", "less than or equal to 7", 1),
    ("ib-mtu", "networks.fabric", "InfiniBand MTU 9000 is not one of", 1),
    ("vlan-range", "networks.oob.vlan", "less than or equal to 4094", 1),
    (
        "fabric-manager-mismatch",
        "versions.fabric_manager",
        "Fabric Manager 550.120 differs from driver 550.127.05",
        1,
    ),
    (
        "fabric-manager-missing",
        "versions.fabric_manager",
        "missing: profile hgx-h100-8gpu-ib runs NVSwitch Fabric Manager",
        1,
    ),
    (
        "driver-branch-mismatch",
        "versions.nvidia_driver.version",
        "driver 535.161.08 is not on branch 550",
        1,
    ),
    (
        "cuda-needs-newer-driver",
        "versions.cuda_toolkit",
        "CUDA 13.x needs driver branch 580 or newer",
        1,
    ),
    ("cuda-unknown-major", "versions.cuda_toolkit", "not in the compatibility table", 1),
    ("dcgm-needs-newer-driver", "versions.dcgm", "DCGM 4.x needs driver branch 525 or newer", 1),
    (
        "open-modules-old-branch",
        "versions.nvidia_driver.open_kernel_modules",
        "open kernel modules first shipped with R515",
        1,
    ),
    ("version-read-as-float", "versions.cuda_toolkit", "12.4 was read as a number by YAML", 1),
    ("nccl-cuda-mismatch", "versions.nccl", "is for CUDA 11, the toolkit is CUDA 12", 1),
    ("nccl-tests-tag-format", "versions.nccl_tests", "git tag, e.g. v2.13.11", 1),
    ("profile-unknown", "nodes[4].profile", "did you mean 'hgx-h100-8gpu-ib'", 1),
    ("profile-default-unknown", "defaults.profiles.head", "unknown profile 'cpu-servre'", 1),
    ("profile-builtin-redefined", "profiles.lab", "is a built-in profile", 1),
    (
        "profile-fm-without-nvswitch",
        "profiles.pcie-box",
        "fabric_manager: true needs nvswitch: true",
        1,
    ),
    ("ssh-private-key", "site.ssh.public_keys[0]", "this is a private key", 1),
    ("site-name-invalid", "site.name", "not a valid host name", 1),
    ("admin-cidrs-empty", "site.admin_cidrs", "must not be empty", 1),
    ("nodes-empty", "nodes", "must not be empty", 1),
    ("spec-version-wrong", "spec_version", "is not allowed", 1),
    (
        "pin-outside-subnet",
        "nodes[4].addresses.frontend",
        "10.2.0.9 is outside frontend 10.1.0.0/24",
        1,
    ),
    (
        "pin-collision",
        "nodes[4].addresses.frontend",
        "10.1.0.101 on frontend for gpu002 is already taken by gpu001",
        1,
    ),
    (
        "pin-storage-without-network",
        "nodes[4].addresses.storage",
        "gpu002 is not on the storage network",
        1,
    ),
    ("pin-fabric-count", "nodes[4].addresses.fabric", "2 fabric addresses for 8 rails", 1),
    ("yaml-duplicate-key", "line 39", "duplicate key 'role' (first at line 39)", 1),
    ("yaml-syntax", "line 7, column 14", "YAML syntax error", 1),
    ("not-a-mapping", "", "expected a mapping", 1),
]


def test_table_covers_every_file() -> None:
    files = sorted(p.stem for p in BAD.glob("*.yaml"))
    assert len(files) >= 40
    assert files == sorted(c[0] for c in CASES)


def test_every_file_says_what_is_constructed() -> None:
    for path in BAD.glob("*.yaml"):
        assert path.read_text().startswith("# constructed: "), path.name


@pytest.mark.parametrize(("stem", "path", "fragment", "count"), CASES, ids=[c[0] for c in CASES])
def test_bad_spec_reports_path_and_message(stem: str, path: str, fragment: str, count: int) -> None:
    with pytest.raises(UserError) as info:
        load_cluster(BAD / f"{stem}.yaml")
    problems = info.value.problems
    rendered = [str(p) for p in problems]
    assert any(p.path == path and fragment in str(p) for p in problems), rendered
    assert len(problems) == count, rendered
    assert info.value.exit_code == 2


@pytest.fixture
def spec_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI entry point with only this area's commands registered."""
    monkeypatch.setattr(gpufleet.cli, "COMMAND_MODULES", ())


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["inventory", "--write"]])
@pytest.mark.parametrize(("stem", "path", "fragment", "count"), CASES, ids=[c[0] for c in CASES])
def test_cli_exit_2_lines_and_no_files(
    spec_cli: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    stem: str,
    path: str,
    fragment: str,
    count: int,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(BAD / f"{stem}.yaml", site / "cluster.yaml")
    rc = gpufleet.cli.main([*command, str(site)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert lines[0].startswith(str(site / "cluster.yaml"))  # title names the file
    assert len(lines) == count + 1
    expected = f"{path}: " if path else ""
    assert any(line.startswith(expected) and fragment in line for line in lines[1:]), lines
    assert sorted(p.name for p in site.iterdir()) == ["cluster.yaml"]


def test_cli_json_lists_problems(spec_cli: None, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    rc = gpufleet.cli.main(["validate", "--json", str(BAD / "typo-node-key.yaml")])
    out, _ = capsys.readouterr()
    assert rc == 2
    data = json.loads(out)
    assert data["ok"] is False
    assert {
        "path": "nodes[3].boot_mca",
        "message": "unknown key 'boot_mca'",
        "hint": "did you mean 'boot_mac'?",
    } in data["problems"]


_RUN_CLI = "import sys, gpufleet.cli as c; c.COMMAND_MODULES = (); sys.exit(c.main(sys.argv[1:]))"


def test_cli_process_has_no_traceback_unless_debug(tmp_path: Path) -> None:
    spec = str(BAD / "fabric-manager-mismatch.yaml")
    plain = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, "validate", spec],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr
    assert (
        "versions.fabric_manager: Fabric Manager 550.120 differs from driver 550.127.05"
        in plain.stderr
    )
    debug = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, "--debug", "validate", spec],
        capture_output=True,
        text=True,
        check=False,
    )
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr


def test_unknown_site_is_a_user_error(
    spec_cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = gpufleet.cli.main(["validate", str(tmp_path / "nowhere")])
    _, err = capsys.readouterr()
    assert rc == 2
    assert "no cluster.yaml found there" in err
