"""Monitoring: Prometheus, Alertmanager and node_exporter running from the distribution's
packages, every target scraped, gpufleet's rules loaded, the textfile collector read end to
end, and the exporters and web endpoints reachable only from where they should be."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import pytest
import testinfra
import yaml

MON = "gpufleet-mol-prometheus-default-mon"
GPU = "gpufleet-mol-prometheus-default-gpu1"
MON_ADDRESS, GPU_ADDRESS = "198.19.233.10", "198.19.233.11"
RULES = Path(__file__).resolve().parents[5] / "monitoring/rules"
testinfra_hosts = [f"podman://{MON}"]
# Shown under a failed test (tests/molecule/gpufleet_testinfra.py).
ON_FAILURE = [
    "journalctl -u prometheus -u prometheus-alertmanager -u prometheus-node-exporter"
    " --no-pager -n 60",
    "nft list ruleset",
]


@pytest.fixture(scope="module")
def gpu():
    return testinfra.get_host(f"podman://{GPU}")


# The node image has no curl: an HTTP GET with the node's Python.
GET = "python3 -c 'import sys,urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())'"


def get(host, url: str) -> dict:
    return json.loads(host.check_output(f"{GET} '{url}'"))


def api(host, path: str) -> dict:
    return get(host, f"http://127.0.0.1:9090/api/v1/{path}")


def until(what: str, probe, timeout: float = 45):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got or time.monotonic() > deadline:
            assert got, f"{what}: not within {timeout} s"
            return got
        time.sleep(1)


def reachable(host, address: str, port: int) -> bool:
    """A TCP connection from `host` to address:port completes within 3 s."""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(3)\n"
        f"sys.exit(s.connect_ex(('{address}', {port})))"
    )
    return host.run(f'python3 -c "{code}"').rc == 0


@pytest.mark.parametrize(
    ("node", "unit"),
    [
        ("mon", "prometheus"),
        ("mon", "prometheus-alertmanager"),
        ("mon", "prometheus-node-exporter"),
        ("gpu", "prometheus-node-exporter"),
    ],
)
def test_services_are_enabled_and_running(host, gpu, node, unit):
    target = host if node == "mon" else gpu
    service = target.service(unit)
    assert service.is_enabled and service.is_running


@pytest.mark.parametrize(
    ("package", "version"),
    [
        ("prometheus", "2.42.0+ds-5+deb12u1"),
        ("prometheus-alertmanager", "0.25.0-1+b4"),
        ("prometheus-node-exporter", "1.5.0-1+b6"),
    ],
)
def test_packages_at_the_locked_version_and_held(host, package, version):
    assert host.package(package).version == version
    assert package in host.check_output("apt-mark showhold").split()


def test_every_target_is_up_with_the_node_name_as_instance(host):
    def targets():
        active = api(host, "targets?state=active")["data"]["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        return seen if set(seen.values()) == {"up"} and len(seen) == 4 else None

    assert until("every target up", targets) == {
        ("prometheus", MON): "up",
        ("alertmanager", MON): "up",
        ("node", "mon"): "up",
        ("node", "gpu1"): "up",
    }


def test_gpufleet_rules_are_loaded_every_one(host):
    wanted = {
        r.get("alert") or r.get("record")
        for f in sorted(RULES.glob("*.yml"))
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
    }
    groups = api(host, "rules")["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    assert loaded == wanted
    assert len([r for g in groups for r in g["rules"] if r["type"] == "alerting"]) >= 40


def test_configs_pass_their_checkers_and_reloads_succeeded(host):
    assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    # This Prometheus as the scenario's configuration scrapes it (within 5 minutes of a restart
    # the series of the package's default configuration, instance localhost:9090, is still seen).
    query = f'prometheus_config_last_reload_successful{{job="prometheus",instance="{MON}"}}'
    reload = api(host, "query?query=" + urllib.parse.quote(query))["data"]["result"]
    assert [r["value"][1] for r in reload] == ["1"]
    flags = api(host, "status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "1d"
    assert flags["storage.tsdb.retention.size"] == "512MiB"  # Prometheus prints MB as MiB


def test_alertmanager_routes_by_severity_to_the_webhooks(host):
    config = host.file("/etc/prometheus/alertmanager.yml")
    assert config.mode == 0o640 and config.group == "prometheus"
    routes = host.check_output(
        "amtool config routes test --config.file=/etc/prometheus/alertmanager.yml severity=critical"
    )
    assert routes.strip() == "critical"
    status = get(host, "http://127.0.0.1:9093/api/v2/status")
    assert "http://127.0.0.1:9095/critical" in status["config"]["original"]


def test_textfile_metrics_of_a_gpu_node_reach_prometheus(host, gpu):
    """A metrics file in gpu1's textfile directory is a series in Prometheus, labelled with
    the node's name; removed, the series goes stale."""
    prom = "/var/lib/prometheus/node-exporter/molecule_probe.prom"
    write = f"printf 'gpufleet_molecule_probe 42\\n' > {prom}.tmp && mv {prom}.tmp {prom}"
    gpu.run_expect([0], write)
    try:
        got = until(
            "the textfile metric in Prometheus",
            lambda: api(host, "query?query=gpufleet_molecule_probe")["data"]["result"],
        )
        assert [(r["metric"]["instance"], r["metric"]["job"], r["value"][1]) for r in got] == [
            ("gpu1", "node", "42")
        ]
    finally:
        gpu.run_expect([0], f"rm -f {prom}")


def test_only_the_monitoring_node_reaches_the_exporters(host, gpu):
    assert reachable(host, GPU_ADDRESS, 9100), "Prometheus's node cannot reach gpu1's exporter"
    assert not reachable(gpu, MON_ADDRESS, 9100), "gpu1 reaches mon's node_exporter"
    # node_exporter listens on the node's address only, and gpu1 sees its own port open.
    assert gpu.socket(f"tcp://{GPU_ADDRESS}:9100").is_listening


@pytest.mark.parametrize("port", [9090, 9093])
def test_web_endpoints_only_from_the_admin_networks(host, gpu, port):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert not reachable(gpu, MON_ADDRESS, port), f"gpu1 reaches mon:{port}"
