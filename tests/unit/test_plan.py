"""The address rule on the example sites (see gpufleet.model.addressing)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml

from gpufleet.model import cluster_from_data, load_cluster
from gpufleet.plan import plan_dict, plan_tables

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_node_addresses_follow_pool_plus_index() -> None:
    plan = load_cluster(ROOT / "inventories/example-ib")
    gpu7 = plan.node("gpu007")
    assert gpu7.frontend.address == IPv4Address("10.1.0.107")
    assert gpu7.frontend.hostname == "gpu007.ib.example.net"
    assert gpu7.oob.address == IPv4Address("10.0.0.107")
    assert gpu7.oob.pinned  # taken from the BMC URL
    assert gpu7.on("storage") is not None
    assert [str(r.address) for r in gpu7.rails] == [f"10.{10 + r}.0.107" for r in range(8)]
    assert [r.hostname for r in gpu7.rails][3] == "gpu007-rail3.ib.example.net"
    head = plan.node("head02")
    assert head.frontend.address == IPv4Address("10.1.0.12")
    assert head.rails == ()  # cpu-server: not on the fabric


def test_vips_and_subnets_are_in_the_plan() -> None:
    plan = load_cluster(ROOT / "inventories/example-ib")
    assert [(v.name, str(v.address)) for v in plan.vips] == [("inference", "10.1.0.5")]
    names = [s.name for s in plan.subnets]
    assert names == ["oob", "frontend", "storage", *[f"rail{r}" for r in range(8)]]
    frontend = plan.subnets[1]
    pools = {role: (str(a), str(b)) for role, a, b in frontend.pools}
    assert pools["gpu"] == ("10.1.0.100", "10.1.3.254")
    assert pools["head"] == ("10.1.0.10", "10.1.0.19")


def test_plan_json_round_trips() -> None:
    plan = load_cluster(ROOT / "inventories/lab")
    data = json.loads(json.dumps(plan_dict(plan)))
    gpu1 = next(n for n in data["nodes"] if n["name"] == "gpu1")
    assert gpu1["interfaces"]["rail1"]["address"] == "198.18.11.101"


def test_explicit_index_beats_the_name() -> None:
    data = yaml.safe_load((ROOT / "tests/data/specs/minimal-ib.yaml").read_text())
    data["nodes"][4]["index"] = 42
    plan = cluster_from_data(data)
    assert plan.node("gpu002").frontend.address == IPv4Address("10.1.0.142")
    assert plan.node("gpu001").frontend.address == IPv4Address("10.1.0.101")


def test_plan_tables_list_every_interface_once_sorted_by_address() -> None:
    cluster = load_cluster(ROOT / "inventories/example-ib")
    sections = plan_tables(cluster).strip().split("\n\n")
    assert [s.split(" ", 1)[0] for s in sections] == [s.name for s in cluster.subnets]
    for section, subnet in zip(sections, cluster.subnets, strict=True):
        title, header, rule, *rows = section.splitlines()
        assert header.split() == ["address", "hostname", "node", "role", "source"]
        assert set(rule.replace(" ", "")) == {"-"}
        expected = [(str(i.address), i.hostname, n.name) for n, i in cluster.rows(subnet.name)]
        if subnet.name == "frontend":
            expected = [(str(v.address), v.hostname, "-") for v in cluster.vips] + expected
        assert [tuple(r.split()[:3]) for r in rows] == expected
        assert title.endswith(f": {len(expected)} addresses")
    gpu7 = next(r for r in sections[1].splitlines() if " gpu007 " in r)
    assert gpu7.split() == ["10.1.0.107", "gpu007.ib.example.net", "gpu007", "gpu", "index", "7"]


def test_plan_table_of_one_network() -> None:
    cluster = load_cluster(ROOT / "inventories/lab")
    text = plan_tables(cluster, "rail1")
    assert text.startswith("rail1 198.18.11.0/24 (MTU 1500): 7 addresses\n")
    assert text.count("\n\n") == 1


def test_cli_plan_json_is_the_plan_one_node_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import gpufleet.cli

    site = ROOT / "inventories/example-ib"
    assert gpufleet.cli.main(["plan", "--json", str(site)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(json.dumps(plan_dict(load_cluster(site))))
    nodes = load_cluster(site).nodes
    node_lines = out.splitlines()[-(len(nodes) + 2) : -2]  # the last list: one line per node
    assert [json.loads(line.rstrip(","))["name"] for line in node_lines] == [n.name for n in nodes]
    net = json.loads(_run_network(capsys, site, "rail3"))
    assert [s["name"] for s in net["subnets"]] == ["rail3"]


def _run_network(capsys: pytest.CaptureFixture[str], site: Path, network: str) -> str:
    import gpufleet.cli

    assert gpufleet.cli.main(["plan", "--json", "--network", network, str(site)]) == 0
    return capsys.readouterr().out
