"""The firewall role's address filters (roles/firewall/filter_plugins), on constructed inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "roles/firewall/filter_plugins/firewall_addresses.py"
_spec = importlib.util.spec_from_file_location("firewall_addresses", PLUGIN)
assert _spec and _spec.loader
fa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fa)


def test_the_plugin_exports_every_filter():
    assert set(fa.FilterModule().filters()) == {
        "firewall_invalid",
        "firewall_host_bits",
        "firewall_network",
        "firewall_family",
        "firewall_containing",
    }


@pytest.mark.parametrize(
    "value",
    ["198.18.1.10", "198.18.0.0/15", "10.0.0.1/24", "2001:db8::1", "2001:db8::/32", "0.0.0.0/0"],
)
def test_addresses_and_networks_are_valid(value):
    assert fa.firewall_invalid([value]) == []


@pytest.mark.parametrize(
    "value", ["198.18.1", "198.18.1.300", "10.0.0.0/33", "not-an-address", "", "2001:db8::g", None]
)
def test_malformed_entries_are_reported_as_written(value):
    assert fa.firewall_invalid(["198.18.1.10", value]) == [value]


def test_host_bits_only_for_cidrs_with_host_bits():
    values = ["10.0.0.1/24", "10.0.0.0/24", "10.0.0.1", "2001:db8::1/64", "bogus/24"]
    assert fa.firewall_host_bits(values) == ["10.0.0.1/24", "2001:db8::1/64"]
    assert fa.firewall_network("10.0.0.1/24") == "10.0.0.0/24"


def test_family_keeps_order_and_spelling():
    values = ["198.18.1.10", "2001:db8::/32", "10.0.0.0/8", "fe80::1"]
    assert fa.firewall_family(values, 4) == ["198.18.1.10", "10.0.0.0/8"]
    assert fa.firewall_family(values, 6) == ["2001:db8::/32", "fe80::1"]


def test_containing_finds_the_cidrs_around_an_address():
    cidrs = ["198.18.0.0/15", "127.0.0.0/8", "2001:db8::/32"]
    assert fa.firewall_containing(cidrs, "198.19.232.1") == ["198.18.0.0/15"]
    assert fa.firewall_containing(cidrs, "192.0.2.1") == []
    assert fa.firewall_containing(cidrs, "2001:db8::5") == ["2001:db8::/32"]
    assert fa.firewall_containing(cidrs, "garbage") == []
