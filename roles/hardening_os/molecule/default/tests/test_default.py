"""hardening_os (converged with the whole hardening playbook): persisted state, Lynis.

In a container the kernel is the host's, so the files under /etc/sysctl.d and
/etc/modprobe.d are what is checked; runtime values are checked on VMs and bare
metal. Test names carry the dev-sec linux-baseline control they cover.
"""

from __future__ import annotations

import re

import pytest

HOST = "gpufleet-mol-hardening_os-default"
testinfra_hosts = [f"podman://{HOST}"]
# Shown under a failed test (tests/molecule/gpufleet_testinfra.py).
ON_FAILURE = ["journalctl -u chrony -u ssh --no-pager -n 40"]

LYNIS_TARGET = 80
LYNIS_MIN_GAIN = 20


def sysctl_file(host) -> dict[str, str]:
    text = host.file("/etc/sysctl.d/90-gpufleet-hardening.conf").content_string
    pairs = [line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"]
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.mark.parametrize(
    ("control", "key", "value"),
    [
        ("sysctl-02", "net.ipv4.conf.all.rp_filter", "1"),
        ("sysctl-02", "net.ipv4.conf.default.rp_filter", "1"),
        ("sysctl-03", "net.ipv4.icmp_ignore_bogus_error_responses", "1"),
        ("sysctl-04", "net.ipv4.icmp_echo_ignore_broadcasts", "1"),
        ("sysctl-05", "net.ipv4.icmp_ratelimit", "100"),
        ("sysctl-06", "net.ipv4.icmp_ratemask", "88089"),
        ("sysctl-08", "net.ipv4.conf.all.arp_ignore", "1"),
        ("sysctl-09", "net.ipv4.conf.all.arp_announce", "2"),
        ("sysctl-10", "net.ipv4.tcp_rfc1337", "1"),
        ("sysctl-11", "net.ipv4.tcp_syncookies", "1"),
        ("sysctl-13", "net.ipv4.conf.all.accept_source_route", "0"),
        ("sysctl-14", "net.ipv4.conf.all.accept_redirects", "0"),
        ("sysctl-15", "net.ipv4.conf.all.secure_redirects", "0"),
        ("sysctl-16", "net.ipv4.conf.all.send_redirects", "0"),
        ("sysctl-17", "net.ipv4.conf.all.log_martians", "1"),
        ("sysctl-20", "net.ipv6.conf.all.accept_redirects", "0"),
        ("sysctl-21", "net.ipv6.conf.default.router_solicitations", "0"),
        ("sysctl-22", "net.ipv6.conf.default.accept_ra_rtr_pref", "0"),
        ("sysctl-23", "net.ipv6.conf.default.accept_ra_pinfo", "0"),
        ("sysctl-24", "net.ipv6.conf.default.accept_ra_defrtr", "0"),
        ("sysctl-25", "net.ipv6.conf.all.accept_ra", "0"),
        ("sysctl-26", "net.ipv6.conf.default.autoconf", "0"),
        ("sysctl-28", "net.ipv6.conf.default.max_addresses", "1"),
        ("sysctl-30", "kernel.sysrq", "0"),
        ("sysctl-31a", "fs.suid_dumpable", "0"),
        ("sysctl-32", "kernel.randomize_va_space", "2"),
        ("extra", "kernel.kptr_restrict", "2"),
        ("extra", "kernel.yama.ptrace_scope", "1"),
        ("extra", "fs.protected_symlinks", "1"),
    ],
)
def test_sysctl_persisted(host, control, key, value):
    assert sysctl_file(host).get(key) == value, control


def test_sysctl_01_19_forwarding_on_gpu_nodes_for_the_container_runtime(host):
    # The node is in gpu_nodes: the playbook turns forwarding on (documented exception).
    settings = sysctl_file(host)
    assert settings["net.ipv4.ip_forward"] == "1"
    assert settings["net.ipv6.conf.all.forwarding"] == "1"


def test_sysctl_runtime_untouched_in_container(host):
    # hardening_os_apply_runtime is false for container profiles: sysctl -p never ran, so
    # the container's own (namespaced) network values still differ from the file.
    assert sysctl_file(host)["net.ipv4.conf.all.log_martians"] == "1"
    assert host.check_output("cat /proc/sys/net/ipv4/conf/all/log_martians") == "0"


@pytest.mark.parametrize(
    "module",
    ["cramfs", "freevxfs", "jffs2", "hfs", "hfsplus", "udf", "dccp", "sctp", "rds", "tipc"],
)
def test_os_10_module_blacklisted(host, module):
    text = host.file("/etc/modprobe.d/gpufleet-hardening.conf").content_string
    assert f"install {module} /bin/true" in text
    assert f"blacklist {module}" in text


def test_os_10_vfat_and_squashfs_stay_loadable(host):
    text = host.file("/etc/modprobe.d/gpufleet-hardening.conf").content_string
    assert "install vfat" not in text and "install squashfs" not in text


def test_package_08_auditd_installed_and_never_halts(host):
    assert host.package("auditd").is_installed
    conf = dict(
        (k.strip(), v.strip())
        for k, _, v in (
            line.partition("=")
            for line in host.file("/etc/audit/auditd.conf").content_string.splitlines()
        )
        if v
    )
    assert conf["disk_full_action"] == "ROTATE"
    assert conf["disk_error_action"] == "SYSLOG"
    assert conf["admin_space_left_action"] == "SUSPEND"
    assert "HALT" not in conf.values()
    assert conf["log_file"] == "/var/log/audit/audit.log"


def test_auditd_rules_cover_identity_and_privileged_commands(host):
    rules = host.file("/etc/audit/rules.d/50-gpufleet.rules").content_string
    for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers"):
        assert f"-w {path} -p wa -k identity" in rules
    assert "-F path=/usr/bin/sudo -F perm=x" in rules
    assert "-F path=/usr/bin/passwd -F perm=x" in rules
    # Programs missing on this node are left out (auditctl would refuse the rule).
    assert "/usr/bin/pkexec" not in rules or host.file("/usr/bin/pkexec").exists


def test_auditd_rules_parse(host):
    # auditctl cannot load rules in a container, but it parses them: -l on an empty set
    # is not a syntax check, so the file is checked line by line with the rule grammar.
    lines = [
        line
        for line in host.file("/etc/audit/rules.d/50-gpufleet.rules").content_string.splitlines()
        if line and not line.startswith("#")
    ]
    assert lines
    assert all(
        re.match(r"^-(w /\S+ -p [rwxa]+ -k [\w-]+|a always,exit .* -k [\w-]+)$", line)
        for line in lines
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PASS_MAX_DAYS", "365"),
        ("PASS_MIN_DAYS", "1"),
        ("PASS_WARN_AGE", "14"),
        ("UMASK", "027"),
        ("LOGIN_RETRIES", "5"),
        ("LOGIN_TIMEOUT", "60"),
        ("ENCRYPT_METHOD", "YESCRYPT"),
    ],
)
def test_os_05_login_defs(host, key, value):
    lines = host.file("/etc/login.defs").content_string.splitlines()
    active = [line.split() for line in lines if line and not line.startswith("#")]
    assert [key, value] in [parts[:2] for parts in active]


def test_pam_pwquality_enforced(host):
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string
    conf = host.file("/etc/security/pwquality.conf").content_string
    assert "minlen = 14" in conf
    assert "enforce_for_root" in conf
    # A real client of the policy: pwscore rejects a short password.
    assert host.run("echo 'short1' | pwscore").rc != 0


def test_core_dumps_off(host):
    limits = host.file("/etc/security/limits.d/10-gpufleet-coredump.conf").content_string
    assert ["*", "hard", "core", "0"] in [line.split() for line in limits.splitlines()]
    coredump = host.file("/etc/systemd/coredump.conf.d/10-gpufleet.conf").content_string
    assert "Storage=none" in coredump


def test_core_limit_applies_to_a_new_login_session(host):
    assert host.check_output("su -s /bin/sh -l gpufleet -c 'ulimit -Hc'") == "0"


@pytest.mark.parametrize(
    ("control", "path", "user", "group", "mode"),
    [
        ("os-02", "/etc/shadow", "root", "shadow", 0o640),
        ("os-03", "/etc/passwd", "root", "root", 0o644),
        ("os-05", "/etc/login.defs", "root", "root", 0o644),
        ("extra", "/etc/gshadow", "root", "shadow", 0o640),
    ],
)
def test_sensitive_file_permissions(host, control, path, user, group, mode):
    f = host.file(path)
    assert (f.user, f.group, f.mode) == (user, group, mode), control


def test_os_13_cron_restricted(host):
    for path in ("/etc/crontab", "/etc/cron.d", "/etc/cron.daily"):
        f = host.file(path)
        if f.exists:
            assert f.user == "root" and f.mode & 0o077 == 0, path


def test_os_01_no_hosts_equiv(host):
    assert not host.file("/etc/hosts.equiv").exists


def test_os_11_log_directory_owned_by_root(host):
    assert host.file("/var/log").user == "root"


@pytest.mark.parametrize(
    "package", ["telnetd", "rsh-server", "nis", "tftpd-hpa", "xinetd", "prelink"]
)
def test_package_01_to_09_unwanted_packages_absent(host, package):
    assert not host.package(package).is_installed


def test_seeded_unwanted_package_purged(host):
    """prepare.yml installed inetutils-telnetd; the role purged it, configuration files too."""
    state = host.run("dpkg-query --show --showformat='${db:Status-Abbrev}' inetutils-telnetd")
    assert state.rc == 1 or state.stdout.startswith(("un", "pn")), state.stdout
    assert not host.file("/usr/sbin/telnetd").exists


ALLOWED_ORIGINS = (
    "import apt_pkg, importlib.machinery as m, importlib.util as u; "
    'loader = m.SourceFileLoader("uu", "/usr/bin/unattended-upgrade"); '
    'uu = u.module_from_spec(u.spec_from_loader("uu", loader)); loader.exec_module(uu); '
    "apt_pkg.init_config(); print(uu.get_allowed_origins())"
)


def test_unattended_upgrades_security_only_and_gpu_stack_blacklisted(host):
    dump = host.check_output("apt-config dump Unattended-Upgrade")
    for pattern in (
        "nvidia-.*",
        "cuda-.*",
        "libnccl.*",
        "datacenter-gpu-manager.*",
        "doca-.*",
        "mlnx-.*",
    ):
        assert f'Unattended-Upgrade::Package-Blacklist:: "{pattern}";' in dump
    # unattended-upgrade's own get_allowed_origins() resolves the patterns (as its --dry-run
    # prints them, in 0.1 s instead of a dry run's 26-55 s): only the security archive.
    origins = host.check_output(f"python3 -c '{ALLOWED_ORIGINS}'")
    assert "bookworm-security" in origins
    assert "codename=bookworm," not in origins
    assert 'APT::Periodic::Unattended-Upgrade "1";' in host.check_output(
        "apt-config dump APT::Periodic"
    )


@pytest.mark.parametrize(
    "package", ["acct", "sysstat", "debsums", "apt-show-versions", "libpam-tmpdir"]
)
def test_accounting_and_verification_tools(host, package):
    assert host.package(package).is_installed


def test_no_assembler_or_linker_pulled_in(host):
    # Recommends of the tools above would install binutils; nodes carry no toolchain.
    assert not host.package("binutils").is_installed


def test_login_shell_has_idle_timeout_and_no_core_files(host):
    shown = host.check_output("su -s /bin/bash -l gpufleet -c 'echo $TMOUT; ulimit -Sc'")
    assert shown.split() == ["900", "0"], shown
    # TMOUT is read-only: the user's shell refuses to change it (and bash -c exits).
    unset = host.run("su -s /bin/bash -l gpufleet -c 'TMOUT=0; echo changed'")
    assert "changed" not in unset.stdout
    assert "TMOUT: readonly variable" in unset.stderr


def test_aide_database_with_sha512_and_bulk_paths_excluded(host):
    conf = host.file("/etc/aide/aide.conf").content_string
    assert "Checksums = sha512" in conf.splitlines()
    excludes = host.file("/etc/aide/aide.conf.d/99_gpufleet_exclude").content_string
    assert "!/var/lib/containers" in excludes.splitlines()
    db = host.file("/var/lib/aide/aide.db")
    assert db.exists and db.mode == 0o600 and db.size > 0
    assert host.service("dailyaidecheck.timer").is_enabled


def test_aide_notices_a_changed_system_file(host):
    # A file under /usr/local/sbin appears after the baseline: AIDE's check must say so
    # (exit code bit 1 = added entries), then the file is removed again. --limit (AIDE
    # >= 0.17) checks that subtree against the role's database and configuration instead of
    # rescanning the whole file system, which took minutes in this scenario.
    probe = "/usr/local/sbin/gpufleet-aide-probe"
    host.run(f"install -m 0755 /dev/null {probe}")
    try:
        check = host.run("aide --config /etc/aide/aide.conf --limit '^/usr/local/sbin' --check")
    finally:
        host.run(f"rm -f {probe}")
    assert check.rc & 1, check.stdout[-2000:]
    assert probe in check.stdout


def test_apt_listchanges_writes_news_without_a_pager(host):
    conf = host.file("/etc/apt/listchanges.conf").content_string
    assert "frontend=text" in conf and "confirm=false" in conf


def test_sysstat_collection_enabled(host):
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string


def test_time_sync_enabled(host):
    assert host.service("chrony").is_enabled


# --- Lynis: the hardened node against the same image before hardening -----------------


def lynis_index(host, report: str) -> int:
    match = re.search(r"^hardening_index=(\d+)$", host.file(report).content_string, re.M)
    assert match, f"no hardening_index in {report}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def lynis(host):
    host.check_output(
        "lynis audit system --quick --no-colors --quiet "
        "--report-file /root/lynis-hardened.dat --log-file /root/lynis-hardened.log"
    )
    before = lynis_index(host, "/root/lynis-unhardened.dat")
    after = lynis_index(host, "/root/lynis-hardened.dat")
    print(f"\nLynis hardening index: unhardened {before}, hardened {after}")
    return before, after


def test_lynis_hardening_index_reaches_target(lynis):
    before, after = lynis
    assert after >= LYNIS_TARGET, f"hardened {after} < {LYNIS_TARGET} (unhardened {before})"


def test_lynis_hardening_index_gain(lynis):
    before, after = lynis
    assert after - before >= LYNIS_MIN_GAIN, f"gain {after - before}: {before} -> {after}"


def test_check_mode_on_converged_node_reports_no_change(check_mode_run):
    rc, out, changed = check_mode_run
    assert rc == 0, out[-3000:]
    assert "PLAY RECAP" in out
    assert changed == 0, out[-3000:]
