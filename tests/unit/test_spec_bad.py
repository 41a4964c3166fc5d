"""Malformed specs: every one is rejected with the exact path and a useful message.

Every case is constructed: tests/data/specs/minimal-ib.yaml with one defect,
given as text edits (so YAML-level defects, such as an unquoted MAC or a
duplicate key, stay possible). The table gives the defect, the path of the
expected problem, a fragment of its text (message or fix), and how many
problems the spec yields in total (so a check that fires twice or not at all
shows up). Each case runs through `load_cluster` and through the CLI
(`validate`, `plan`, `inventory --write`: exit 2, one line per problem, no
file written).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import gpufleet.cli
from gpufleet.errors import UserError
from gpufleet.model import load_cluster

MINIMAL = Path(__file__).resolve().parents[1] / "data" / "specs" / "minimal-ib.yaml"
# The spec without its two header lines; each case starts with its own one-line header.
BODY = MINIMAL.read_text().split("\n", 2)[2]
NODES = BODY[BODY.index("\n  - {name: head01") : BODY.rindex("\n")]
FABRIC = BODY[BODY.index("  fabric:\n") : BODY.index("versions:")]


@dataclass(frozen=True)
class Edit:
    """Replace `old` by `new`: in the one line containing `line`, or else in the whole text.

    `old` must occur exactly once where it is looked for; `old=None` drops the line.
    """

    old: str | None
    new: str = ""
    line: str | None = None


def on(node: str, old: str, new: str) -> Edit:
    """An edit inside the entry of one node (the nodes are one line each)."""
    return Edit(old, new, line=f"name: {node},")


def drop(line: str) -> Edit:
    return Edit(None, "", line=line)


@dataclass(frozen=True)
class Case:
    stem: str
    defect: str  # what is constructed, as the header of the file says
    edits: tuple[Edit, ...]
    path: str
    fragment: str
    count: int

    def text(self) -> str:
        text = BODY
        for e in self.edits:
            if e.line is None:
                assert e.old is not None and text.count(e.old) == 1, (self.stem, e.old)
                text = text.replace(e.old, e.new)
                continue
            hits = [ln for ln in text.splitlines(keepends=True) if e.line in ln]
            assert len(hits) == 1 and text.count(hits[0]) == 1, (self.stem, e.line)
            if e.old is None:
                text = text.replace(hits[0], "")
            else:
                assert hits[0].count(e.old) == 1, (self.stem, e.old)
                text = text.replace(hits[0], hits[0].replace(e.old, e.new))
        return f"# constructed: {self.defect}\n{text}"


def case(stem: str, defect: str, edits: list[Edit], path: str, fragment: str, count: int) -> Case:
    return Case(stem, defect, tuple(edits), path, fragment, count)


def lock(branch: str, version: str, cuda: str, dcgm: str = "3.3.9") -> Edit:
    """The version lock with another driver branch (and CUDA, DCGM) in one edit."""
    return Edit(
        '{branch: "550", version: "550.127.05", open_kernel_modules: true}\n'
        '  fabric_manager: "550.127.05"\n  cuda_toolkit: "12.4.1"\n  dcgm: "3.3.9"',
        f'{{branch: "{branch}", version: "{version}", open_kernel_modules: true}}\n'
        f'  fabric_manager: "{version}"\n  cuda_toolkit: "{cuda}"\n  dcgm: "{dcgm}"',
    )


def slurm(body: str) -> Edit:
    """A `slurm:` section (one flow-style line) before the nodes."""
    return Edit("nodes:\n  - {name: head01", f"slurm: {{{body}}}\nnodes:\n  - {{name: head01")


def monitoring(body: str) -> Edit:
    """A `monitoring:` section (one flow-style line) before the nodes."""
    return Edit("nodes:\n  - {name: head01", f"monitoring: {{{body}}}\nnodes:\n  - {{name: head01")


def package(name: str, version: str) -> Edit:
    """One more package version in the lock, after Slurm's."""
    return Edit('slurm: "22.05.8-4+deb12u3"', f'slurm: "22.05.8-4+deb12u3"\n  {name}: "{version}"')


def serving(body: str) -> Edit:
    """A `serving:` section (one flow-style line) before the nodes."""
    return Edit("nodes:\n  - {name: head01", f"serving: {{{body}}}\nnodes:\n  - {{name: head01")


MODEL = "name: m1, path: /models/m1"

ROCE_PROFILE = Edit("gpu: hgx-h100-8gpu-ib", "gpu: hgx-h100-8gpu-roce")


def roce(extra: str = "") -> Edit:
    return Edit("type: infiniband\n    mtu: 4096", f"type: roce\n    mtu: 9000{extra}")


def pin(pins: str) -> Edit:
    return on("gpu002", "rack: r2", f"addresses: {{{pins}}}, rack: r2")


def url(node: str, new: str) -> Edit:
    """Replace the BMC URL of one node."""
    old = {"gpu001": "https://10.0.0.101/redfish/v1/Systems/1",
           "gpu002": "https://10.0.0.102/redfish/v1/Systems/1"}[node]  # fmt: skip
    return on(node, old, new)


def key(new: str) -> Edit:
    """Replace the SSH public key (YAML text of the list entry)."""
    return Edit('"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConstructedTestKey ops@test"', new)


# Real key data prefixes (RFC 4253 6.6: length + type name), constructed lines around them.
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIConstructedTestKey"
RSA = "AAAAB3NzaC1yc2EAAAADAQABAAABAQConstructed"
DSA = "AAAAB3NzaC1kc3MAAACBAConstructed"
DOMAIN_239 = ".".join(["d" * 59] * 4)  # 4 labels of 59 and 3 dots
LONG_NAME = "g" * 57 + "002"  # 60 characters: gXXX-rail0 is 66, over the 63 of a DNS label


def topology(body: str) -> Edit:
    """networks.fabric.topology (the two GPU nodes sit in rack r2)."""
    return Edit('"10.17.0.0/24"]\n', f'"10.17.0.0/24"]\n    topology: {{{body}}}\n')


LEAVES = ", ".join(f"leaf{r}" for r in range(8))


def site_profile(entry: str) -> Edit:
    return Edit('ops@test"]\n', f'ops@test"]\nprofiles:\n  {entry}\n')


CASES: list[Case] = [
    case("typo-node-key", "node key boot_mac misspelt boot_mca",
         [on("gpu001", "boot_mac:", "boot_mca:")],
         "nodes[3].boot_mca", "did you mean 'boot_mac'", 2),
    case("typo-top-key", "top-level key versions misspelt versoins",
         [Edit("versions:", "versoins:")], "versoins", "did you mean 'versions'", 2),
    case("typo-site-key", "site key ntp_servers misspelt ntp_server",
         [Edit("ntp_servers:", "ntp_server:")], "site.ntp_server", "did you mean 'ntp_servers'", 2),
    case("typo-fabric-key", "fabric key rails misspelt rials",
         [Edit("    rails:", "    rials:")], "networks.fabric.rials", "did you mean 'rails'", 2),
    case("missing-site-domain", "site.domain removed", [drop("domain: tiny.example.net")],
         "site.domain", "required key 'domain' is missing", 1),
    case("missing-versions-dcgm", "versions.dcgm removed", [drop('dcgm: "3.3.9"')],
         "versions.dcgm", "required key 'dcgm' is missing", 1),
    case("role-unknown", "role compute is not a role", [on("gpu002", "role: gpu", "role: compute")],
         "nodes[4].role", "is not allowed", 1),
    case("role-typo", "role monitor instead of monitoring",
         [on("gpu002", "role: gpu", "role: monitor")],
         "nodes[4].role", "did you mean 'monitoring'", 1),
    case("bmc-password-plain", "a BMC password written in the spec",
         [on("gpu001", 'Systems/1"}', 'Systems/1", password: hunter2}')],
         "nodes[3].bmc.password", "must never be written", 1),
    case("bmc-password-ref-both", "password reference with both env and secret",
         [Edit("{env: BMC_PASSWORD}", "{env: BMC_PASSWORD, secret: bmc}")],
         "defaults.bmc.password", "exactly one of env or secret", 1),
    case("bmc-password-missing", "no password reference anywhere",
         [Edit(", password: {env: BMC_PASSWORD}", "")],
         "nodes[0].bmc.password", "missing password reference", 5),
    case("bmc-url-not-redfish", "BMC URL without the Redfish system path",
         [on("gpu001", "/redfish/v1/Systems/1", "/")],
         "nodes[3].bmc.url", "does not name a Redfish system", 1),
    case("bmc-url-scheme", "BMC URL with ftp scheme", [on("gpu002", "https://", "ftp://")],
         "nodes[4].bmc.url", "is not an http(s) URL", 1),
    case("bmc-url-http-remote", "plain http to a remote BMC", [on("gpu002", "https://", "http://")],
         "nodes[4].bmc.url", "plain http", 1),
    case("bmc-url-outside-oob", "BMC IP outside the oob subnet",
         [on("gpu002", "10.0.0.102", "10.9.0.102")],
         "nodes[4].bmc.url", "outside the oob network", 1),
    case("bmc-url-duplicate", "two nodes share one BMC URL",
         [on("gpu002", "10.0.0.102", "10.0.0.101")],
         "nodes[4].bmc.url", "this BMC URL is also used by gpu001", 2),
    case("mac-invalid", "boot MAC with a non-hex pair", [on("gpu002", '01:02"', '01:zz"')],
         "nodes[4].boot_mac", "is not a MAC address", 1),
    case("mac-read-as-number", "unquoted MAC that YAML 1.1 reads as a base-60 integer",
         [on("gpu002", '"02:00:00:00:01:02"', "10:00:00:00:01:02")],
         "nodes[4].boot_mac", "read as a number by YAML", 1),
    case("mac-multicast", "multicast boot MAC",
         [on("gpu002", "02:00:00:00:01:02", "01:00:5e:00:00:01")],
         "nodes[4].boot_mac", "multicast", 1),
    case("mac-duplicate", "two nodes share one boot MAC",
         [on("gpu002", "02:00:00:00:01:02", "02:00:00:00:01:01")],
         "nodes[4].boot_mac", "boot MAC 02:00:00:00:01:01 is also used by gpu001", 1),
    case("name-duplicate", "two nodes named gpu001", [on("gpu002", "gpu002", "gpu001")],
         "nodes[4].name", "name gpu001 is also used by gpu001 (nodes[3])", 2),
    case("name-invalid", "node name with upper case and underscore",
         [on("gpu002", "gpu002", "GPU_002")],
         "nodes[4].name", "not a valid host name", 1),
    case("rack-position-duplicate", "two nodes in the same rack unit",
         [on("gpu002", "position: 9", "position: 1")],
         "nodes[4].position", "rack r2 U1 is also used by gpu001", 1),
    case("position-zero", "rack position 0", [on("gpu002", "position: 9", "position: 0")],
         "nodes[4].position", "greater than or equal to 1", 1),
    case("index-duplicate", "explicit index that another gpu node already has",
         [on("gpu002", "role: gpu,", "role: gpu, index: 1,")],
         "nodes[4].index", "gpu index 1 is also used by gpu001", 1),
    case("index-underivable", "head node whose name ends in no digits and no index",
         [on("head01", "head01", "login")],
         "nodes[0].index", "does not end in digits", 1),
    case("no-head-node", "the only head node turned into a monitoring node",
         [on("head01", "role: head", "role: monitoring")], "nodes", "no head node", 1),
    case("lb-odd", "a single load balancer", [drop("name: lb02,")],
         "nodes", "1 lb nodes: load balancers run in pairs", 1),
    case("vips-without-lb", "a VIP but no lb nodes", [drop("name: lb01,"), drop("name: lb02,")],
         "networks.frontend.vips", "VIPs need lb nodes", 1),
    case("vip-outside-subnet", "VIP outside the frontend subnet",
         [Edit('address: "10.1.0.5"', 'address: "10.2.0.5"')],
         "networks.frontend.vips[0].address", "outside its subnet 10.1.0.0/24", 1),
    case("vip-in-pool", "VIP inside the gpu address pool",
         [Edit('address: "10.1.0.5"', 'address: "10.1.0.200"')],
         "networks.frontend.vips[0].address", "lies in the gpu address pool", 1),
    case("vip-name-duplicate", "two VIPs with one name",
         [Edit('"10.1.0.5"}]', '"10.1.0.5"}, {name: api, address: "10.1.0.6"}]')],
         "networks.frontend.vips[1].name", "used twice", 1),
    case("gateway-outside-subnet", "frontend gateway outside its subnet",
         [Edit('gateway: "10.1.0.1"', 'gateway: "10.2.0.1"')],
         "networks.frontend.gateway", "gateway 10.2.0.1 is outside its subnet", 1),
    case("subnet-host-bits", "oob CIDR with host bits set",
         [Edit('"10.0.0.0/24"', '"10.0.0.5/24"')],
         "networks.oob.cidr", 'did you mean "10.0.0.0/24"', 1),
    case("subnet-invalid", "prefix length 33", [Edit('"10.0.0.0/24"', '"10.0.0.0/33"')],
         "networks.oob.cidr", "is not an IPv4 subnet", 1),
    case("subnets-overlap-rails", "rail 1 overlaps rail 0",
         [Edit('"10.11.0.0/24"', '"10.10.0.128/25"')],
         "networks.fabric.rails[1]", "overlaps networks.fabric.rails[0] 10.10.0.0/24", 1),
    case("subnets-overlap-storage", "storage subnet inside the frontend subnet",
         [Edit('"10.1.0.5"}]\n', '"10.1.0.5"}]\n  storage: {cidr: "10.1.0.128/25"}\n')],
         "networks.storage.cidr", "overlaps networks.frontend.cidr 10.1.0.0/24", 1),
    case("pool-exhausted", "gpu index beyond the /24 gpu pool",
         [on("gpu002", "role: gpu,", "role: gpu, index: 200,")],
         "nodes[4].index", "pool exhausted", 2),
    case("pool-offset-outside", "oob gpu pool offset beyond a /24",
         [Edit('gateway: "10.0.0.1"}', 'gateway: "10.0.0.1", pools: {gpu: 300}}')],
         "networks.oob.pools.gpu", "pool offset 300 lies outside 10.0.0.0/24", 1),
    case("pool-offset-shared", "lb and head pools start at the same offset",
         [Edit('    gateway: "10.1.0.1"\n', '    gateway: "10.1.0.1"\n    pools: {lb: 10}\n')],
         "networks.frontend.pools.lb", "pool offset 10 is also the head pool's", 2),
    case("rails-vs-profile", "4 rails for a profile with 8 fabric NICs",
         [Edit(',\n            "10.14.0.0/24", "10.15.0.0/24", "10.16.0.0/24", "10.17.0.0/24"',
               "")],
         "networks.fabric.rails",
         "4 rails, but profile hgx-h100-8gpu-ib (gpu001) has 8 fabric NICs", 1),
    case("fabric-missing", "GPU nodes with fabric NICs but no fabric network", [Edit(FABRIC, "")],
         "networks.fabric", "missing: profile hgx-h100-8gpu-ib (gpu001) has 8 fabric NICs", 1),
    case("fabric-type-mismatch", "RoCE fabric for InfiniBand nodes",
         [roce("\n    roce: {traffic_class: 106, dscp: 26, pfc_priority: 3}")],
         "networks.fabric.type",
         "fabric is roce, but profile hgx-h100-8gpu-ib (gpu001) has infiniband NICs", 1),
    case("subnet-manager-on-roce", "a subnet manager asked for on a RoCE fabric",
         [ROCE_PROFILE, roce("\n    roce: {traffic_class: 106, dscp: 26, pfc_priority: 3}"
                             "\n    subnet_manager: head")],
         "networks.fabric", "only InfiniBand has one", 1),
    case("subnet-manager-head-without-fabric-nic", "opensm on head nodes that have no fabric NIC",
         [Edit("type: infiniband\n    mtu: 4096", "type: infiniband\n    mtu: 4096\n"
               "    subnet_manager: head")],
         "networks.fabric.subnet_manager", "no head node has a fabric NIC", 1),
    case("subnet-manager-unknown", "subnet_manager ufm (not one of fabric, head)",
         [Edit("type: infiniband\n    mtu: 4096", "type: infiniband\n    mtu: 4096\n"
               "    subnet_manager: ufm")],
         "networks.fabric.subnet_manager", "fabric", 1),
    case("roce-settings-missing", "RoCE fabric without its lossless class",
         [ROCE_PROFILE, roce()], "networks.fabric", "needs its lossless class", 1),
    case("roce-tc-mismatch", "RoCE traffic class that does not carry the DSCP",
         [ROCE_PROFILE, roce("\n    roce: {traffic_class: 96, dscp: 26, pfc_priority: 3}")],
         "networks.fabric.roce", "traffic_class 96 carries DSCP 24, not dscp 26", 1),
    case("roce-pfc-range", "PFC priority 8",
         [ROCE_PROFILE, roce("\n    roce: {traffic_class: 106, dscp: 26, pfc_priority: 8}")],
         "networks.fabric.roce.pfc_priority", "less than or equal to 7", 1),
    case("ib-mtu", "InfiniBand MTU 9000", [Edit("mtu: 4096", "mtu: 9000")],
         "networks.fabric", "InfiniBand MTU 9000 is not one of", 1),
    case("vlan-range", "VLAN id 5000",
         [Edit('gateway: "10.0.0.1"}', 'gateway: "10.0.0.1", vlan: 5000}')],
         "networks.oob.vlan", "less than or equal to 4094", 1),
    case("fabric-manager-mismatch", "Fabric Manager one patch behind the driver",
         [Edit('fabric_manager: "550.127.05"', 'fabric_manager: "550.120"')],
         "versions.fabric_manager", "Fabric Manager 550.120 differs from driver 550.127.05", 1),
    case("fabric-manager-missing", "no Fabric Manager for NVSwitch nodes",
         [drop('fabric_manager: "550.127.05"')],
         "versions.fabric_manager",
         "missing: profile hgx-h100-8gpu-ib runs NVSwitch Fabric Manager", 1),
    case("driver-branch-mismatch", "driver version from another branch",
         [Edit('"550.127.05", open_kernel_modules: true}\n  fabric_manager: "550.127.05"',
               '"535.161.08", open_kernel_modules: true}\n  fabric_manager: "535.161.08"')],
         "versions.nvidia_driver.version", "driver 535.161.08 is not on branch 550", 1),
    case("cuda-needs-newer-driver", "CUDA 13 on driver branch 550",
         [Edit('cuda_toolkit: "12.4.1"', 'cuda_toolkit: "13.0.0"')],
         "versions.cuda_toolkit", "CUDA 13.x needs driver branch 580 or newer", 1),
    case("cuda-unknown-major", "CUDA 10 is not in the table",
         [Edit('cuda_toolkit: "12.4.1"', 'cuda_toolkit: "10.2.89"')],
         "versions.cuda_toolkit", "not in the compatibility table", 1),
    case("dcgm-needs-newer-driver", "DCGM 4 on driver branch 515",
         [lock("515", "515.105.01", "11.8.0", dcgm="4.2.3")],
         "versions.dcgm", "DCGM 4.x needs driver branch 525 or newer", 1),
    case("open-modules-old-branch", "open kernel modules on branch 470",
         [lock("470", "470.256.02", "11.4.4")],
         "versions.nvidia_driver.open_kernel_modules",
         "open kernel modules first shipped with R515", 1),
    case("version-read-as-float", "unquoted CUDA version read as a float",
         [Edit('cuda_toolkit: "12.4.1"', "cuda_toolkit: 12.4")],
         "versions.cuda_toolkit", "12.4 was read as a number by YAML", 1),
    case("nccl-cuda-mismatch", "NCCL built for CUDA 11 with CUDA 12",
         [Edit('nccl: "2.21.5-1"', 'nccl: "2.21.5-1+cuda11.8"')],
         "versions.nccl", "is for CUDA 11, the toolkit is CUDA 12", 1),
    case("nccl-tests-tag-format", "nccl-tests tag without the v",
         [Edit('nccl_tests: "v2.13.11"', 'nccl_tests: "2.13.11"')],
         "versions.nccl_tests", "git tag, e.g. v2.13.11", 1),
    case("slurm-upstream-version", "Slurm's upstream release instead of the package version",
         [Edit('slurm: "22.05.8-4+deb12u3"', 'slurm: "24.05.4"')],
         "versions.slurm", "as `apt-cache policy slurmd` shows it", 1),
    case("slurm-version-format", "a Slurm version apt never shows",
         [Edit('slurm: "22.05.8-4+deb12u3"', 'slurm: "latest"')],
         "versions.slurm", "the Slurm packages' version as apt shows it", 1),
    case("prometheus-upstream-version", "Prometheus's upstream release, not the package's",
         [package("prometheus", "2.42.0")],
         "versions.prometheus", "is an upstream release, not the version of a Debian", 1),
    case("node-exporter-version-format", "a node_exporter version apt never shows",
         [package("node_exporter", "latest")],
         "versions.node_exporter", "has the wrong format", 1),
    case("monitoring-interval-unit", "a scrape interval without its unit",
         [monitoring('scrape_interval: "30"')],
         "monitoring.scrape_interval", "has the wrong format", 1),
    case("monitoring-retention-size-unit", "a retention size in a unit Prometheus rejects",
         [monitoring("retention_size: 500G")],
         "monitoring.retention_size", "has the wrong format", 1),
    case("monitoring-unknown-key", "a misspelt monitoring setting",
         [monitoring("retention: 30d")],
         "monitoring.retention", "did you mean 'retention_time'", 1),
    case("serving-vip-unknown", "a serving VIP name that is not a frontend VIP",
         [serving(f"vip: apii, models: [{{{MODEL}}}]")],
         "serving.vip", "no frontend VIP named 'apii' (fix: did you mean 'api'", 1),
    case("serving-model-on-head", "a model on a head node",
         [serving(f"models: [{{{MODEL}, nodes: [head01]}}]")],
         "serving.models[0].nodes[0]", "head01 is not a GPU node", 1),
    case("serving-two-models-one-port", "two models on one node and port",
         [serving(f"models: [{{{MODEL}}}, {{name: m2, path: /models/m2, nodes: [gpu001]}}]")],
         "serving.models[1].port", "gpu001 already serves m1 on port 8000", 1),
    case("serving-duplicate-name", "the same model name twice",
         [serving(f"models: [{{{MODEL}}}, {{{MODEL}, port: 8001}}]")],
         "serving.models[1].name", "'m1' is already serving.models[0]", 1),
    case("serving-tp-too-large", "tensor parallelism above the node's GPUs",
         [serving(f"models: [{{{MODEL}, tensor_parallel: 16}}]")],
         "serving.models[0].tensor_parallel", "16 GPUs per instance", 2),
    case("serving-relative-path", "a model path that is not absolute",
         [serving("models: [{name: m1, path: models/m1}]")],
         "serving.models[0].path", "has the wrong format", 1),
    case("vllm-version-format", "a vLLM version pip would not know",
         [package("vllm", "v0.6")],
         "versions.vllm", "has the wrong format", 1),
    case("profile-unknown", "node profile name with a typo",
         [on("gpu002", "role: gpu,", "role: gpu, profile: hgx-h100-8gpu-ibb,")],
         "nodes[4].profile", "did you mean 'hgx-h100-8gpu-ib'", 1),
    case("profile-default-unknown", "defaults.profiles names a missing profile",
         [Edit("head: cpu-server", "head: cpu-servre")],
         "defaults.profiles.head", "unknown profile 'cpu-servre'", 1),
    case("profile-builtin-redefined", "a site profile reusing a built-in name",
         [site_profile("lab: {gpu_count: 0, fabric_nics: 0}")],
         "profiles.lab", "is a built-in profile", 1),
    case("profile-fm-without-nvswitch", "custom profile with Fabric Manager but no NVSwitch",
         [site_profile("pcie-box: {gpu_count: 8, gpu_model: H100-PCIe, fabric_nics: 0,"
                       " fabric_manager: true}")],
         "profiles.pcie-box", "fabric_manager: true needs nvswitch: true", 1),
    case("ssh-private-key", "a private key pasted as a public key",
         [Edit("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConstructedTestKey ops@test",
               "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA")],
         "site.ssh.public_keys[0]", "this is a private key", 1),
    case("site-name-invalid", "site name with upper case and underscore",
         [Edit("name: tiny\n", "name: Tiny_Site\n")], "site.name", "not a valid host name", 1),
    case("admin-cidrs-empty", "no admin subnet",
         [Edit('admin_cidrs: ["192.0.2.0/24"]', "admin_cidrs: []")],
         "site.admin_cidrs", "must not be empty", 1),
    case("nodes-empty", "empty node list", [Edit(NODES, " []")], "nodes", "must not be empty", 1),
    case("spec-version-wrong", "spec_version 2", [Edit("spec_version: 1", "spec_version: 2")],
         "spec_version", "is not allowed", 1),
    case("pin-outside-subnet", "frontend pin outside the frontend subnet",
         [pin('frontend: "10.2.0.9"')],
         "nodes[4].addresses.frontend", "10.2.0.9 is outside frontend 10.1.0.0/24", 1),
    case("pin-collision", "frontend pin on another node's address",
         [pin('frontend: "10.1.0.101"')], "nodes[4].addresses.frontend",
         "10.1.0.101 on frontend for gpu002 is already taken by gpu001", 1),
    case("pin-storage-without-network", "storage pin on a site without a storage network",
         [pin('storage: "10.3.0.9"')],
         "nodes[4].addresses.storage", "gpu002 is not on the storage network", 1),
    case("pin-fabric-count", "two fabric pins for eight rails",
         [pin('fabric: ["10.10.0.50", "10.11.0.50"]')],
         "nodes[4].addresses.fabric", "2 fabric addresses for 8 rails", 1),
    case("yaml-duplicate-key", "a mapping with the key role twice",
         [on("gpu002", "role: gpu,", "role: gpu, role: head,")],
         "line 39", "duplicate key 'role' (first at line 39)", 1),
    case("yaml-syntax", "unclosed flow sequence",
         [Edit("[ntp.example.net]", "[ntp.example.net")],
         "line 7, column 14", "YAML syntax error", 1),
    # Fabric topology: scalable units by rack, leaf names, per-node leaves (gpufleet.model.fabric).
    case("topology-rack-in-no-unit", "GPU nodes in a rack that no scalable unit lists",
         [topology("units: [{name: su1, racks: [r1]}]")],
         "nodes[4].rack", "rack r2 of gpu002 is in no unit", 2),
    case("topology-rack-in-two-units", "one rack in two scalable units",
         [topology("units: [{name: su1, racks: [r2]}, {name: su2, racks: [r3, r2]}]")],
         "networks.fabric.topology.units[1].racks[1]", "rack r2 is also in unit su1", 1),
    case("topology-unit-twice", "two scalable units with one name",
         [topology("units: [{name: su1, racks: [r2]}, {name: su1, racks: [r3]}]")],
         "networks.fabric.topology.units[1].name", "unit su1 is listed twice", 1),
    case("topology-leaf-name-without-rail", "leaf name template without {rail}",
         [topology("units: [{name: su1, racks: [r2]}], leaf_name: '{unit}-leaf'")],
         "networks.fabric.topology", "has no {rail}", 1),
    case("topology-leaf-name-unknown-field", "leaf name template with a {rack} placeholder",
         [topology("units: [{name: su1, racks: [r2]}], leaf_name: '{rack}-leaf{rail}'")],
         "networks.fabric.topology", "unknown placeholder {rack}", 1),
    case("topology-leaf-name-without-unit", "two units, leaf names without {unit}",
         [topology("units: [{name: su1, racks: [r2]}, {name: su2, racks: [r3]}],"
                   " leaf_name: 'leaf{rail}'")],
         "networks.fabric.topology", "has no {unit} but there are 2 units", 1),
    case("topology-leaf-name-not-a-host-name", "leaf names with an underscore",
         [topology("units: [{name: su1, racks: [r2]}], leaf_name: '{unit}_leaf{rail}'")],
         "networks.fabric.topology.leaf_name", "'su1_leaf0', not a valid host name", 1),
    case("topology-leaf-count", "4 leaf switches stated, 8 cabled",
         [topology("units: [{name: su1, racks: [r2]}], leaves: 4")],
         "networks.fabric.topology.leaves", "4 leaf switches stated, but the nodes are cabled to 8",
         1),
    case("topology-leaf-ports", "more nodes under a leaf than it has ports",
         [topology("units: [{name: su1, racks: [r2]}], leaf_ports: 1")],
         "networks.fabric.topology.leaf_ports",
         "leaf su1-leaf0 has 2 nodes cabled to it, more than its 1 ports (and 7 more leaves)", 1),
    case("fabric-leaves-count", "two leaf switches named for eight rails",
         [topology("units: [{name: su1, racks: [r2]}]"),
          on("gpu002", "rack: r2", "fabric_leaves: [a1, a2], rack: r2")],
         "nodes[4].fabric_leaves", "2 leaf switches for 8 rails", 1),
    case("fabric-leaves-partial", "one node names its leaf switches, the other does not",
         [on("gpu002", "rack: r2", f"fabric_leaves: [{LEAVES}], rack: r2")],
         "networks.fabric.topology", "but 1 fabric nodes have none (first: gpu001)", 1),
    case("fabric-leaves-without-nics", "leaf switches for a node without fabric NICs",
         [on("head01", "rack: r1", "fabric_leaves: [leaf0], rack: r1")],
         "nodes[0].fabric_leaves", "head01 has no fabric NICs", 1),
    case("fabric-leaves-without-fabric", "leaf switches on a site without a fabric",
         [Edit(FABRIC, ""), on("head01", "rack: r1", "fabric_leaves: [leaf0], rack: r1")],
         "nodes[0].fabric_leaves", "names leaf switches but the site has no networks.fabric", 2),
    case("fabric-leaves-invalid-name", "a leaf name with upper case",
         [topology("units: [{name: su1, racks: [r2]}]"),
          on("gpu002", "rack: r2", f"fabric_leaves: [Leaf_A, {LEAVES[7:]}], rack: r2")],
         "nodes[4].fabric_leaves[0]", "not a valid host name", 1),
    case("profile-netdevs-count", "a profile naming 2 interfaces for 8 fabric NICs",
         [site_profile("gpu8: {gpu_count: 8, gpu_model: H100-SXM5-80GB, fabric_nics: 8,"
                       " fabric_link: infiniband, fabric_netdevs: [ib0, ib1]}")],
         "profiles.gpu8", "2 fabric_netdevs for 8 fabric NICs", 1),
    case("profile-nvlinks-without-gpus", "NVLinks per GPU on a profile without GPUs",
         [site_profile("cpu2: {gpu_count: 0, fabric_nics: 0, nvlinks_per_gpu: 18}")],
         "profiles.cpu2", "nvlinks_per_gpu needs gpu_count > 0", 1),
    # Issue 21 item 12: spec mistakes people make (each a class, several spellings).
    case("vip-is-the-gateway", "VIP on the frontend gateway's address",
         [Edit('address: "10.1.0.5"', 'address: "10.1.0.1"')],
         "networks.frontend.vips[0].address", "VIP 10.1.0.1 is the frontend gateway", 1),
    case("vip-address-twice", "two VIPs on one address",
         [Edit('"10.1.0.5"}]', '"10.1.0.5"}, {name: chat, address: "10.1.0.5"}]')],
         "networks.frontend.vips[1].address", "VIP 10.1.0.5 is also VIP api's address", 1),
    case("vip-named-like-a-node", "a VIP with the name of a node",
         [Edit("{name: api,", "{name: gpu001,")], "networks.frontend.vips[0].name",
         "host name gpu001.tiny.example.net of VIP gpu001 is also gpu001's frontend name", 1),
    case("node-named-like-an-interface", "a node named like another node's BMC name",
         [on("lb02", "name: lb02, role: lb,", "name: lb01-bmc, role: lb, index: 2,")],
         "nodes[2].name",
         "host name lb01-bmc.tiny.example.net of lb01-bmc's frontend name is also lb01's oob", 1),
    case("bmc-url-credentials", "user and password in a BMC URL",
         [url("gpu002", "https://admin:hunter2@10.0.0.102/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "'https://***@10.0.0.102/redfish/v1/Systems/1' carries credentials",
         1),
    case("bmc-url-user-only", "a user name in a BMC URL",
         [url("gpu002", "https://root@10.0.0.102/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "carries credentials in the URL", 1),
    case("bmc-url-credentials-not-https", "credentials in a BMC URL that is wrong otherwise too",
         [url("gpu002", "ftp://admin:hunter2@10.0.0.102/")],
         "nodes[4].bmc.url", "'ftp://***@10.0.0.102/' carries credentials", 1),
    case("bmc-as-a-string-with-credentials", "bmc given as a URL string with a password",
         [on("gpu002", '{url: "https://10.0.0.102/redfish/v1/Systems/1"}',
             '"https://admin:hunter2@10.0.0.102/redfish/v1/Systems/1"')],
         "nodes[4].bmc", "https://***@10.0.0.102", 1),
    case("bmc-url-same-endpoint-default-port", "the other node's BMC with :443 spelt out",
         [url("gpu002", "https://10.0.0.101:443/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "names the same BMC as gpu001's", 2),
    case("bmc-url-same-endpoint-trailing-slash", "the other node's BMC with a trailing slash",
         [url("gpu002", "https://10.0.0.101/redfish/v1/Systems/1/")],
         "nodes[4].bmc.url", "names the same BMC as gpu001's", 2),
    case("bmc-url-same-endpoint-case", "the other node's BMC by host name in upper case",
         [url("gpu001", "https://gpu001-ipmi.tiny.example.net/redfish/v1/Systems/1"),
          url("gpu002", "HTTPS://GPU001-IPMI.tiny.example.net/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "names the same BMC as gpu001's", 1),
    case("bmc-url-port-zero", "BMC URL on port 0",
         [url("gpu002", "https://10.0.0.102:0/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "has port 0", 1),
    case("bmc-url-port-too-big", "BMC URL on port 65536",
         [url("gpu002", "https://10.0.0.102:65536/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "has an invalid port", 1),
    case("bmc-url-port-negative", "BMC URL on port -1",
         [url("gpu002", "https://10.0.0.102:-1/redfish/v1/Systems/1")],
         "nodes[4].bmc.url", "has an invalid port", 1),
    case("mac-all-zero", "all-zero boot MAC",
         [on("gpu002", "02:00:00:00:01:02", "00:00:00:00:00:00")],
         "nodes[4].boot_mac", "all-zero MAC", 1),
    case("mac-all-zero-dashes", "all-zero boot MAC written with dashes",
         [on("gpu002", "02:00:00:00:01:02", "00-00-00-00-00-00")],
         "nodes[4].boot_mac", "all-zero MAC", 1),
    case("mac-broadcast", "broadcast boot MAC in upper case",
         [on("gpu002", "02:00:00:00:01:02", "FF:FF:FF:FF:FF:FF")],
         "nodes[4].boot_mac", "broadcast MAC", 1),
    case("mac-multicast-ipv6", "an IPv6 multicast MAC (33:33:...)",
         [on("gpu002", "02:00:00:00:01:02", "33:33:00:00:00:01")],
         "nodes[4].boot_mac", "multicast", 1),
    case("label-too-long", "a 60-character node name: its -rail0 name is a 66-character label",
         [on("gpu002", "name: gpu002,", f"name: {LONG_NAME},")],
         "nodes[4].name", f"label {LONG_NAME}-rail0 has 66 characters", 1),
    case("fqdn-too-long", "a 242-character domain: gpu001-rail0.<domain> is 255 characters",
         [Edit("domain: tiny.example.net", f"domain: {DOMAIN_239}xxx")],
         "nodes[3].name", "is too long for DNS (255 characters", 2),
    case("domain-too-long", "a 253-character domain",
         [Edit("domain: tiny.example.net", f"domain: {DOMAIN_239}.{'d' * 13}")],
         "site.domain", "the domain is 253 characters", 1),
    case("ssh-user-root", "root as the admin user", [Edit("user: ops", "user: root")],
         "site.ssh.user", "must not be root", 1),
    case("ssh-key-command-option", "a key with a forced command",
         [key(f'\'command="/bin/true" ssh-ed25519 {ED25519} x\'')],
         "site.ssh.public_keys[0]", "authorized_keys options before the key type", 1),
    case("ssh-key-from-option", "a key with from= and no-pty",
         [key(f'\'from="10.0.0.0/8",no-pty ssh-ed25519 {ED25519} x\'')],
         "site.ssh.public_keys[0]", "options before the key type (from=", 1),
    case("ssh-key-two-lines", "two keys in one entry, separated by a newline",
         [key(f'"ssh-ed25519 {ED25519} a\\nssh-ed25519 {ED25519} b"')],
         "site.ssh.public_keys[0]", "the key spans several lines", 1),
    case("ssh-key-carriage-return", "a key with a carriage return inside",
         [key(f'"ssh-ed25519 {ED25519}\\r a"')],
         "site.ssh.public_keys[0]", "the key spans several lines", 1),
    case("ssh-key-dsa", "a DSA key", [key(f"'ssh-dss {DSA} old'")],
         "site.ssh.public_keys[0]", "DSA keys (ssh-dss) are refused", 1),
    case("ssh-key-unknown-type", "an Ed448 key (OpenSSH has none)",
         [key(f"'ssh-ed448 {ED25519} x'")],
         "site.ssh.public_keys[0]", "unknown key type 'ssh-ed448'", 1),
    case("ssh-key-certificate", "an OpenSSH certificate instead of a key",
         [key(f"'ssh-ed25519-cert-v01@openssh.com {ED25519} x'")],
         "site.ssh.public_keys[0]", "unknown key type", 1),
    case("ssh-key-type-mismatch", "an Ed25519 key labelled ssh-rsa",
         [key(f"'ssh-rsa {ED25519} x'")],
         "site.ssh.public_keys[0]", "the line says ssh-rsa but the key data is ssh-ed25519", 1),
    case("ssh-key-rsa-data-as-ed25519", "an RSA key labelled ssh-ed25519",
         [key(f"'ssh-ed25519 {RSA} x'")],
         "site.ssh.public_keys[0]", "the key data is ssh-rsa", 1),
    case("admin-cidrs-everyone", "0.0.0.0/0 as admin subnet",
         [Edit('admin_cidrs: ["192.0.2.0/24"]', 'admin_cidrs: ["0.0.0.0/0"]')],
         "site.admin_cidrs[0]", "0.0.0.0/0 lets every address on the internet reach SSH", 1),
    case("admin-cidrs-everyone-among-others", "0.0.0.0/0 next to a real admin subnet",
         [Edit('admin_cidrs: ["192.0.2.0/24"]', 'admin_cidrs: ["192.0.2.0/24", "0.0.0.0/0"]')],
         "site.admin_cidrs[1]", "set site.allow_admin_from_anywhere: true", 1),
    case("slurm-partition-unknown-node", "a Slurm partition naming a node that does not exist",
         [slurm("partitions: [{name: train, nodes: [gpu001, gpu099]}]")],
         "slurm.partitions[0].nodes", "partition train names node gpu099, which does not exist", 1),
    case("slurm-gres-above-profile", "a GRES of 9 GPUs for the 8-GPU profile",
         [slurm("gres: {hgx-h100-8gpu-ib: 'gpu:h100:9'}")],
         "slurm.gres.hgx-h100-8gpu-ib", "claims 9 GPUs, the profile has 8", 1),
    case("slurm-gres-below-profile", "a GRES of 4 GPUs for the 8-GPU profile",
         [slurm("gres: {hgx-h100-8gpu-ib: 'gpu:h100:4'}")],
         "slurm.gres.hgx-h100-8gpu-ib", "offers 4 of the profile's 8 GPUs", 1),
    case("slurm-controllers-same-name", "the same head node as primary and backup controller",
         [slurm("controllers: [head01, head01]")],
         "slurm.controllers[1]", "controller head01 is listed twice", 1),
    case("slurm-controller-not-head", "a GPU node as Slurm controller",
         [slurm("controllers: [head01, gpu001]")],
         "slurm.controllers[1]", "gpu001 is not a head node", 1),
    case("not-a-mapping", "the spec is a list", [Edit(BODY, "- spec_version: 1\n- site: tiny\n")],
         "", "expected a mapping", 1),
]  # fmt: skip


def _write(tmp: Path, c: Case) -> Path:
    site = tmp / "site"
    site.mkdir()
    (site / "cluster.yaml").write_text(c.text())
    return site


def test_cases_are_distinct_and_each_edit_applies_once() -> None:
    assert len(CASES) >= 70
    assert len({c.stem for c in CASES}) == len(CASES)
    texts = [c.text() for c in CASES]  # asserts every edit matched exactly once
    assert len(set(texts)) == len(CASES)
    assert all(t.startswith("# constructed: ") and BODY not in t for t in texts)


@pytest.mark.parametrize("c", CASES, ids=[c.stem for c in CASES])
def test_bad_spec_reports_path_and_message(tmp_path: Path, c: Case) -> None:
    with pytest.raises(UserError) as info:
        load_cluster(_write(tmp_path, c))
    problems = info.value.problems
    rendered = [str(p) for p in problems]
    assert any(p.path == c.path and c.fragment in str(p) for p in problems), rendered
    assert len(problems) == c.count, rendered
    assert info.value.exit_code == 2


@pytest.fixture
def spec_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI entry point with only the site commands (validate, plan, inventory)."""
    monkeypatch.setattr(gpufleet.cli, "COMMAND_MODULES", ())


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["inventory", "--write"]])
@pytest.mark.parametrize("c", CASES, ids=[c.stem for c in CASES])
def test_cli_exit_2_lines_and_no_files(
    spec_cli: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    c: Case,
) -> None:
    site = _write(tmp_path, c)
    rc = gpufleet.cli.main([*command, str(site)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert lines[0].startswith(str(site / "cluster.yaml"))  # title names the file
    assert len(lines) == c.count + 1
    expected = f"{c.path}: " if c.path else ""
    assert any(line.startswith(expected) and c.fragment in line for line in lines[1:]), lines
    assert sorted(p.name for p in site.iterdir()) == ["cluster.yaml"]


def _case(stem: str) -> Case:
    return next(c for c in CASES if c.stem == stem)


def test_cli_json_lists_problems(
    spec_cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = gpufleet.cli.main(["validate", "--json", str(_write(tmp_path, _case("typo-node-key")))])
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
    spec = str(_write(tmp_path, _case("fabric-manager-mismatch")))
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
