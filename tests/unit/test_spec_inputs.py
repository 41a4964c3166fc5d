"""Hostile, broken and unusual spec files (issue 21 items 12-13), all constructed here.

- YAML that would cost a lot is refused before any model is built: alias bombs,
  recursive aliases, deep nesting, oversized files, too many nodes;
- tabs and bytes that are not UTF-8 are named with their byte offset;
- thousands of problems print as the first 20 and a count per kind;
- a password in a BMC URL is never repeated, in any output;
- the spellings that are right are still accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import gpufleet.cli
from gpufleet.errors import SHOWN, Problem, UserError, redact
from gpufleet.model import cluster_from_data, load_cluster
from gpufleet.spec import loader
from gpufleet.spec.loader import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "data" / "specs" / "minimal-ib.yaml"


def minimal() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL.read_text())
    return data


@pytest.fixture
def site_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpufleet.cli, "COMMAND_MODULES", ())


def _site(tmp_path: Path, text: str | bytes) -> Path:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    path = site / "cluster.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return site


def _problems(text: str) -> list[Problem]:
    with pytest.raises(UserError) as info:
        parse_yaml(text)
    return info.value.problems


# --- alias bombs, recursion, depth ------------------------------------------------------


def _bomb(levels: int, fanout: int = 9) -> str:
    """Constructed: the classic 'billion laughs', `fanout ** levels` values from a few lines."""
    lines = ["site: &l0 [" + ", ".join(['"lol"'] * fanout) + "]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * fanout)
        lines.append(f"k{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 9, 12])
def test_alias_bombs_are_refused_at_the_alias_that_crosses_the_limit(levels: int) -> None:
    (problem,) = _problems(_bomb(levels))
    assert f"expand to more than {loader.MAX_VALUES:,} values (an alias bomb?)" in problem.message
    assert problem.path.startswith("line ")


def test_a_bomb_a_field_refers_to_goes_no_further(
    tmp_path: Path, site_cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Constructed: site.name is an alias to a bomb. Before, the schema error repeated the
    value back and expanded it (minutes, gigabytes); now the parser refuses it."""
    bomb = "".join(f"  {line}\n" for line in _bomb(10).splitlines())
    text = "anchors:\n" + bomb + MINIMAL.read_text().replace("name: tiny", "name: *l10")
    site = _site(tmp_path, text)
    assert gpufleet.cli.main(["validate", str(site)]) == 2
    err = capsys.readouterr().err
    assert "(an alias bomb?)" in err and len(err.splitlines()) == 2


def test_modest_aliases_are_fine() -> None:
    data = parse_yaml("a: &a {x: [1, 2]}\nb: *a\nc: [*a, *a]\n")
    assert data == {"a": {"x": [1, 2]}, "b": {"x": [1, 2]}, "c": [{"x": [1, 2]}] * 2}


@pytest.mark.parametrize(
    "text",
    ["a: &a [1, *a]\n", "a: &a {x: *a}\n", "a: &a [[[*a]]]\n"],
    ids=["list", "mapping", "nested"],
)
def test_recursive_aliases_are_refused(text: str) -> None:
    (problem,) = _problems(text)
    assert "recursive alias" in problem.message


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 40 + "]" * 40 + "\n",
        "".join(" " * i + "k:\n" for i in range(40)) + " " * 40 + "v\n",
        "a: " + "[" * 5000 + "]" * 5000 + "\n",  # libyaml's own limit (1,000) first
    ],
    ids=["flow", "block", "beyond-libyaml"],
)
def test_deep_nesting_is_refused(text: str) -> None:
    (problem,) = _problems(text)
    assert f"nested more than {loader.MAX_DEPTH} levels deep" in problem.message


def test_undefined_alias_and_second_document() -> None:
    assert "names no anchor" in _problems("a: *nowhere\n")[0].message
    assert "a second YAML document" in _problems("a: 1\n---\nb: 2\n")[0].message


def test_big_files_are_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site_cli: None
) -> None:
    monkeypatch.setattr(loader, "MAX_BYTES", 1024)
    site = _site(tmp_path, MINIMAL.read_text())  # about 2.5 KB
    with pytest.raises(UserError) as info:
        load_cluster(site)
    assert "bytes, more than the 1,024 a cluster spec may have" in str(info.value)


def test_too_many_nodes_are_refused_before_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "MAX_NODES", 4)
    with pytest.raises(UserError) as info:
        load_cluster(_site(tmp_path, MINIMAL.read_text()))  # 5 nodes
    (problem,) = info.value.problems
    assert (problem.path, problem.message) == (
        "nodes",
        "5 nodes, more than the 4 one spec may hold",
    )


# --- tabs and encodings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "site:\n\tname: tiny\n",
        "nodes:\n  - a\n\t- b\n",
        "site:\n  name: tiny\n  ntp_servers:\n\t\t- ntp.example.net\n",
    ],
    ids=["mapping", "sequence", "two-tabs"],
)
def test_tabs_are_named_with_their_byte_offset(text: str) -> None:
    (problem,) = _problems(text)
    offset = len(text[: text.index("\t")].encode())
    line = text[: text.index("\t")].count("\n") + 1
    assert problem.path == f"line {line}, column 1 (byte {offset})"
    assert "a tab character" in problem.message and problem.hint == "indent with spaces"


def test_tab_offsets_count_bytes_not_characters() -> None:
    text = "# caf\u00e9 \u2013 racks\nsite:\n\tname: tiny\n"
    (problem,) = _problems(text)
    assert problem.path.endswith(f"(byte {len(text[: text.index(chr(9))].encode())})")
    assert len(text[: text.index("\t")].encode()) == text.index("\t") + 3


@pytest.mark.parametrize(
    ("raw", "line", "offset"),
    [
        (b"# caf\xe9 (latin-1)\nsite: {}\n", 1, 5),
        (b"site:\n  name: \xff\xfetiny\n", 2, 14),
        (b"site: {}\n# truncated \xe2\x82", 2, 21),
    ],
    ids=["latin-1", "utf-16-bom-inside", "truncated"],
)
def test_bytes_that_are_not_utf8_are_named(
    tmp_path: Path,
    site_cli: None,
    capsys: pytest.CaptureFixture[str],
    raw: bytes,
    line: int,
    offset: int,
) -> None:
    site = _site(tmp_path, raw)
    assert gpufleet.cli.main(["validate", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"line {line}, column" in err and f"(byte {offset}): bytes " in err
    assert "are not UTF-8 text (fix: save the file as UTF-8)" in err
    assert raw[offset] >= 0x80


# --- many problems --------------------------------------------------------------------


def _many_problems() -> dict[str, Any]:
    """Constructed: 300 GPU nodes, each with a bad MAC and a bad BMC URL (600 problems)."""
    data = minimal()
    gpu = data["nodes"][3]
    for i in range(300):
        node = dict(gpu, name=f"gpu{i + 10:03d}", boot_mac="nope", position=1 + i % 40)
        node["rack"] = f"r{3 + i // 40}"
        node["bmc"] = {"url": "ftp://x"}
        data["nodes"].append(node)
    return data


def test_many_problems_print_twenty_and_a_count_per_kind(
    tmp_path: Path, site_cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, yaml.safe_dump(_many_problems()))
    assert gpufleet.cli.main(["validate", str(site)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 + SHOWN + 1
    assert lines[-1] == (
        f"... {SHOWN} of 600 problems shown; all by kind: nodes[*].bmc.url 300,"
        " nodes[*].boot_mac 300"
    )


def test_json_keeps_every_problem(
    tmp_path: Path, site_cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(tmp_path, yaml.safe_dump(_many_problems()))
    assert gpufleet.cli.main(["validate", "--json", str(site)]) == 2
    out, _ = capsys.readouterr()
    assert len(json.loads(out)["problems"]) == 600


# --- secrets never repeated ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bmc",
    [
        {"url": "https://admin:hunter2@10.0.0.102/redfish/v1/Systems/1"},
        {"url": "https://admin:hunter2@10.0.0.102:0/redfish/v1/Systems/1"},
        {"url": "ftp://admin:hunter2@10.0.0.102/"},
        "https://admin:hunter2@10.0.0.102/redfish/v1/Systems/1",
        {"url": ["https://admin:hunter2@10.0.0.102/redfish/v1/Systems/1"]},
    ],
    ids=["url", "url-with-bad-port", "not-https", "bmc-as-string", "url-as-list"],
)
@pytest.mark.parametrize("command", [["validate"], ["validate", "--json"], ["inventory"]])
def test_a_password_in_a_bmc_url_is_never_repeated(
    tmp_path: Path,
    site_cli: None,
    capsys: pytest.CaptureFixture[str],
    bmc: Any,
    command: list[str],
) -> None:
    data = minimal()
    data["nodes"][4]["bmc"] = bmc
    site = _site(tmp_path, yaml.safe_dump(data))
    assert gpufleet.cli.main([*command, str(site)]) == 2
    out, err = capsys.readouterr()
    assert "hunter2" not in out + err
    assert "nodes[4].bmc" in out + err
    assert sorted(p.name for p in site.iterdir()) == ["cluster.yaml"]


def test_redact() -> None:
    assert redact("see https://a:b@h/x and http://u@h2") == "see https://***@h/x and http://***@h2"
    assert redact("mail ops@example.net") == "mail ops@example.net"
    assert str(Problem("p", "https://a:b@h/", "use https://c:d@h/")) == (
        "p: https://***@h/ (fix: use https://***@h/)"
    )


# --- what stays accepted ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQConstructed ops@test",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBConstructed x",
        "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIConstructed x",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConstructedTestKey",  # no comment
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConstructedTestKey ops@test\n",  # a YAML block `|`
    ],
    ids=["rsa", "ecdsa", "sk-ed25519", "no-comment", "trailing-newline"],
)
def test_public_keys_of_every_accepted_type(key: str) -> None:
    data = minimal()
    data["site"]["ssh"]["public_keys"] = [key]
    assert cluster_from_data(data).site.ssh_public_keys == (key.strip(),)


def test_everyone_as_admin_subnet_with_the_acknowledgement() -> None:
    data = minimal()
    data["site"]["admin_cidrs"] = ["0.0.0.0/0"]
    data["site"]["allow_admin_from_anywhere"] = True
    assert [str(c) for c in cluster_from_data(data).site.admin_cidrs] == ["0.0.0.0/0"]


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.102:8443/redfish/v1/Systems/1",
        "https://10.0.0.102/redfish/v1/Systems/System.Embedded.1",
        "https://bmc-gpu002.tiny.example.net/redfish/v1/Systems/1",
    ],
)
def test_bmc_urls_that_are_right(url: str) -> None:
    data = minimal()
    data["nodes"][4]["bmc"]["url"] = url
    assert cluster_from_data(data).node("gpu002").bmc.url == url


def test_merge_keys_and_tags_take_the_composer_path() -> None:
    text = (
        "base: &b {role: gpu, rack: r2}\n"
        "nodes:\n  - <<: *b\n    name: gpu1\n  - <<: *b\n    name: gpu2\n"
        "tags: !!set {a: null}\n"
    )
    assert parse_yaml(text) == yaml.safe_load(text)


def test_event_path_equals_safe_load_on_every_site() -> None:
    for site in ("example-ib", "example-roce", "lab"):
        text = (ROOT / "inventories" / site / "cluster.yaml").read_text()
        assert parse_yaml(text) == yaml.safe_load(text)
