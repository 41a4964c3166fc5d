"""The lab's serving plumbing without a lab: its secrets vault-encrypted in the group_vars it
writes, and the command line refusing bad fault and converge arguments before it touches
anything. (The serving path itself is proven by tests/integration/test_lab.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from gpufleet import cli
from gpufleet.lab import core

ROOT = Path(__file__).resolve().parents[2]


def _decrypt(blob: str, password: str) -> str:
    vault = VaultLib([("default", VaultSecret(password.encode()))])
    return vault.decrypt(blob.encode()).decode()


def test_serving_vars_carry_the_secrets_vault_encrypted_only(tmp_path: Path) -> None:
    lab = SimpleNamespace(vault_password_file=tmp_path / "vault-password")
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"  # constructed
    text = core._serving_vars(lab, {"api_key": "k3y-constructed-for-this-test", "pem": pem})
    assert "k3y-constructed" not in text and "MIIB" not in text
    assert (tmp_path / "vault-password").stat().st_mode & 0o777 == 0o600

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
    data = yaml.load(text, Loader=Loader)  # a SafeLoader with one tag added
    password = (tmp_path / "vault-password").read_text().strip()
    assert _decrypt(data["gpufleet_serving_api_keys"]["lab"], password) == (
        "k3y-constructed-for-this-test"
    )
    assert _decrypt(data["gpufleet_serving_tls_pem"], password) == pem
    assert data["gpufleet_model_server_install"] is False
    # The same password on the next `lab up`: group_vars written earlier stay readable.
    again = core._serving_vars(lab, {"api_key": "other"})
    assert (tmp_path / "vault-password").read_text().strip() == password
    assert "gpufleet_serving_tls_pem" not in again


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lab", "fault", "gpu1", "--model-server", "melt"],
         "--model-server 'melt': the lab's model server knows error, hang, slow, crash"),
        (["lab", "fault", "gpu1", "--model-server", "hang", "--xid", "48"],
         "give exactly one of"),
        (["lab", "converge", "-e", "haproxy_balance"], "give NAME=VALUE"),
        (["lab", "converge", "-e", "1x=y"], "give NAME=VALUE"),
    ],
)  # fmt: skip
def test_bad_lab_arguments_are_refused_by_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    site = tmp_path / "no-such-site"  # never opened: the arguments are refused first
    assert cli.main([*argv, "--site", str(site)]) != 0
    assert message in capsys.readouterr().err


def test_converge_limit_names_nodes_of_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    site = str(ROOT / "inventories/lab")
    assert cli.main(["lab", "converge", "--site", site, "--limit", "gpu1,gpu9,lb7"]) != 0
    assert "--limit gpu1,gpu9,lb7: gpu9, lb7 not in gpufleet-lab" in capsys.readouterr().err


def _filter():
    path = ROOT / "roles/haproxy/filter_plugins/haproxy_backends.py"
    spec = importlib.util.spec_from_file_location("haproxy_backends", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_backends_from_the_inventory() -> None:
    f = _filter()
    models = [{"name": "m", "port": 8000, "nodes": ["gpu1", "gpu2"]}]  # constructed
    hostvars = {
        "gpu1": {"gpufleet_interfaces": {"frontend": {"address": "10.0.0.11"}}},
        "gpu2": {"gpufleet_interfaces": {"frontend": {"address": "10.0.0.12"}}},
    }
    assert f.haproxy_model_backends(models, hostvars) == [
        {"name": "m", "port": 8000, "servers": [
            {"name": "gpu1", "address": "10.0.0.11"}, {"name": "gpu2", "address": "10.0.0.12"}]}
    ]  # fmt: skip
    with pytest.raises(Exception, match="gpu2 \\(serving m\\) has no gpufleet_interfaces"):
        f.haproxy_model_backends(models, {"gpu1": hostvars["gpu1"], "gpu2": {}})
