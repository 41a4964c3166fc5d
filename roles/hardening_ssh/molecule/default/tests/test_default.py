"""hardening_ssh: config state on the node, and logins tried from a second container.

Test names carry the dev-sec ssh-baseline control they cover (sshd_NN / ssh_NN).
"""

from __future__ import annotations

import pytest

HOST = "gpufleet-mol-hardening_ssh-default"
NODE = "198.19.231.10"
testinfra_hosts = [f"podman://{HOST}"]
# Shown under a failed test (tests/molecule/gpufleet_testinfra.py).
ON_FAILURE = ["journalctl -u ssh --no-pager -n 40"]

SSH = (
    "ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=accept-new "
    "-o UserKnownHostsFile=/root/.ssh/known_hosts_node -i /root/.ssh/id_ed25519"
)


def sshd_effective(host) -> dict[str, str]:
    """The configuration sshd really uses (sshd -T), keys lower-cased as sshd prints them."""
    out = host.check_output("sshd -T -C user=gpufleet,host=client,addr=198.19.231.20")
    result: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        result.setdefault(key, value)
    return result


@pytest.fixture(scope="module")
def sshd(host):
    return sshd_effective(host)


# --- from outside: the client container -------------------------------------------------


def test_sshd_22_key_login_of_admin_works(client):
    result = client.run(f"{SSH} gpufleet@{NODE} id -un")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "gpufleet"


def test_sshd_27_29_server_offers_publickey_only(client):
    # With method "none" the server answers with the list of methods it would accept.
    result = client.run(f"{SSH} -o PreferredAuthentications=none gpufleet@{NODE} true")
    assert result.rc != 0
    assert "Permission denied (publickey)." in result.stderr, result.stderr


def test_sshd_27_password_login_refused(client):
    # The admin has a valid password (prepare.yml); offering it must still fail.
    result = client.run(
        "ssh -o BatchMode=no -o NumberOfPasswordPrompts=1 -o PreferredAuthentications=password "
        "-o PubkeyAuthentication=no -o StrictHostKeyChecking=accept-new "
        f"-o UserKnownHostsFile=/root/.ssh/known_hosts_node gpufleet@{NODE} true </dev/null"
    )
    assert result.rc == 255
    assert "Permission denied" in result.stderr or "No more authentication" in result.stderr


def test_sshd_06_root_login_refused_even_with_valid_key(client):
    result = client.run(f"{SSH} root@{NODE} true")
    assert result.rc == 255
    assert "Permission denied" in result.stderr, result.stderr


def test_unlisted_user_refused_even_with_valid_key(client):
    result = client.run(f"{SSH} intruder@{NODE} true")
    assert result.rc == 255
    assert "Permission denied" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "option",
    [
        "-c aes128-cbc",
        "-c 3des-cbc",
        "-o KexAlgorithms=diffie-hellman-group14-sha1",
        "-o KexAlgorithms=diffie-hellman-group-exchange-sha256",
        "-c aes256-ctr -m hmac-sha1",
        "-c aes256-ctr -m hmac-sha2-256",
    ],
)
def test_sshd_01_02_03_weak_algorithms_refused(client, option):
    # MACs are only negotiated with a non-AEAD cipher, hence -c aes256-ctr with -m.
    result = client.run(f"{SSH} {option} gpufleet@{NODE} true")
    assert result.rc == 255
    assert "no matching" in result.stderr, result.stderr


def test_sshd_46_banner_shown_before_authentication(client):
    result = client.run(f"{SSH} -o LogLevel=INFO gpufleet@{NODE} true")
    assert "Authorised access only" in result.stderr


def test_sshd_47_no_debian_banner_in_version_string(host):
    out = host.check_output(
        "python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', 22), 5); "
        'print(s.recv(100).decode().strip())"'
    )
    assert out.startswith("SSH-2.0-OpenSSH_")
    assert "Debian" not in out


def test_sshd_14_host_keys_kept(host):
    before = host.file("/root/hostkey-before.txt").content_string.strip()
    after = host.check_output("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
    assert before == after.strip()


# --- effective server configuration (sshd -T) -------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("permitrootlogin", "no"),  # sshd-06
        ("port", "22"),  # sshd-07
        ("addressfamily", "any"),  # sshd-08
        ("strictmodes", "yes"),  # sshd-11
        ("syslogfacility", "AUTH"),  # sshd-12
        ("loglevel", "VERBOSE"),  # sshd-13
        ("permituserenvironment", "no"),  # sshd-17
        ("logingracetime", "30"),  # sshd-18
        ("maxauthtries", "3"),  # sshd-19
        ("maxsessions", "10"),  # sshd-20
        ("maxstartups", "10:30:60"),  # sshd-21
        ("pubkeyauthentication", "yes"),  # sshd-22
        ("ignorerhosts", "yes"),  # sshd-23
        ("ignoreuserknownhosts", "yes"),  # sshd-24
        ("hostbasedauthentication", "no"),  # sshd-25
        ("passwordauthentication", "no"),  # sshd-27
        ("permitemptypasswords", "no"),  # sshd-28
        ("kbdinteractiveauthentication", "no"),  # sshd-29
        ("kerberosauthentication", "no"),  # sshd-30
        ("kerberosorlocalpasswd", "no"),  # sshd-31
        ("kerberosticketcleanup", "yes"),  # sshd-32
        ("gssapiauthentication", "no"),  # sshd-33
        ("gssapicleanupcredentials", "yes"),  # sshd-34
        ("tcpkeepalive", "no"),  # sshd-35
        ("clientaliveinterval", "300"),  # sshd-36
        ("clientalivecountmax", "2"),  # sshd-37
        ("permittunnel", "no"),  # sshd-38
        ("allowtcpforwarding", "no"),  # sshd-39
        ("allowagentforwarding", "no"),  # sshd-40
        ("gatewayports", "no"),  # sshd-41
        ("x11forwarding", "no"),  # sshd-42
        ("x11uselocalhost", "yes"),  # sshd-43
        ("printmotd", "no"),  # sshd-44
        ("printlastlog", "no"),  # sshd-45
        ("banner", "/etc/issue.net"),  # sshd-46
        ("authenticationmethods", "publickey"),
        ("allowusers", "gpufleet"),
        ("compression", "no"),
    ],
)
def test_sshd_effective_setting(sshd, key, value):
    assert sshd.get(key) == value


def test_sshd_01_ciphers(sshd):
    ciphers = sshd["ciphers"].split(",")
    assert ciphers[0] == "chacha20-poly1305@openssh.com"
    assert not [c for c in ciphers if "cbc" in c or "arcfour" in c or "3des" in c]


def test_sshd_02_kex_without_sha1_or_group_exchange(sshd):
    kex = sshd["kexalgorithms"].split(",")
    assert "curve25519-sha256" in kex
    assert not [k for k in kex if k.endswith("sha1") or "group-exchange" in k]


def test_sshd_03_macs_etm_only(sshd):
    assert all(m.endswith("-etm@openssh.com") for m in sshd["macs"].split(","))


def test_sshd_14_hostkeys(sshd, host):
    out = host.check_output("sshd -T | awk '$1 == \"hostkey\" {print $2}'")
    assert out.split() == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]


def test_sshd_config_has_no_include(host):
    # Drop-ins under sshd_config.d must not be able to override the hardened file.
    lines = host.file("/etc/ssh/sshd_config").content_string.splitlines()
    assert not [line for line in lines if line.strip().lower().startswith("include")]


def test_sshd_04_ssh_directory_permissions(host):
    d = host.file("/etc/ssh")
    assert (d.user, d.group, d.mode) == ("root", "root", 0o755)


def test_sshd_05_sshd_config_permissions(host):
    f = host.file("/etc/ssh/sshd_config")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)


def test_sshd_running_and_enabled(host):
    svc = host.service("ssh")
    assert svc.is_running
    assert svc.is_enabled


def test_admin_authorized_key_installed(host, client):
    key = client.file("/root/.ssh/id_ed25519.pub").content_string.split()[1]
    assert key in host.file("/home/gpufleet/.ssh/authorized_keys").content_string


# --- client defaults (ssh-baseline ssh-NN) ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("addressfamily", "any"),  # ssh-02
        ("port", "22"),  # ssh-03
        ("batchmode", "no"),  # ssh-05
        ("checkhostip", "yes"),  # ssh-06
        ("stricthostkeychecking", "ask"),  # ssh-07 (ssh -G prints "ask" as is)
        ("forwardagent", "no"),  # ssh-11
        ("forwardx11", "no"),  # ssh-12
        ("hostbasedauthentication", "no"),  # ssh-13
        ("passwordauthentication", "no"),  # ssh-16
        ("gssapiauthentication", "no"),  # ssh-17
        ("gssapidelegatecredentials", "no"),  # ssh-18
        ("tunnel", "false"),  # ssh-19 (ssh -G prints the tunnel mode)
        ("permitlocalcommand", "no"),  # ssh-20
    ],
)
def test_ssh_client_defaults(host, key, value):
    lines = host.check_output("ssh -G somehost").splitlines()
    effective = dict(line.split(" ", 1) for line in lines if " " in line)
    assert effective.get(key) == value


def test_ssh_08_09_10_client_crypto(host):
    lines = host.check_output("ssh -G somehost").splitlines()
    effective = dict(line.split(" ", 1) for line in lines if " " in line)
    assert effective["ciphers"].startswith("chacha20-poly1305@openssh.com")
    assert "sha1" not in effective["kexalgorithms"]
    assert all(m.endswith("-etm@openssh.com") for m in effective["macs"].split(","))


def test_ssh_01_ssh_config_permissions(host):
    for path in ("/etc/ssh/ssh_config", "/etc/ssh/ssh_config.d/00-gpufleet.conf"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644), path


# --- idempotence in check mode -----------------------------------------------------------


def test_check_mode_on_converged_node_reports_no_change(check_mode_run):
    rc, out, changed = check_mode_run
    assert rc == 0, out[-3000:]
    assert "PLAY RECAP" in out
    assert changed == 0, out[-3000:]
