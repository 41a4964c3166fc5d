"""One MUNGE key for the cluster: the same key file on both nodes, and a credential made on one
node is accepted on the other."""

import pytest
from conftest import GPU, HEAD

testinfra_hosts = [f"podman://{HEAD}", f"podman://{GPU}"]
ON_FAILURE = ["systemctl status munge --no-pager", "journalctl -u munge --no-pager -n 30"]


def test_munged_running_and_enabled(host):
    assert host.service("munge").is_running
    assert host.service("munge").is_enabled


def test_key_readable_by_munged_only(host):
    key = host.file("/etc/munge/munge.key")
    assert (key.user, key.group, key.mode) == ("munge", "munge", 0o400)
    assert key.size >= 32


def test_same_key_on_every_node(head, gpu):
    # Compared by digest: the key itself never leaves the nodes.
    digests = {h.check_output("sha256sum /etc/munge/munge.key").split()[0] for h in (head, gpu)}
    assert len(digests) == 1


@pytest.mark.parametrize("direction", ["gpu-to-head", "head-to-gpu"])
def test_credential_crosses_nodes(head, gpu, direction):
    maker, checker = (gpu, head) if direction == "gpu-to-head" else (head, gpu)
    credential = maker.check_output("munge -n")
    decoded = checker.run("printf '%%s' %s | unmunge", credential)
    assert decoded.rc == 0, decoded.stdout + decoded.stderr
    assert "STATUS:          Success (0)" in decoded.stdout
