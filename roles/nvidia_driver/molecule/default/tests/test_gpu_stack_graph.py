"""Both nodes, the whole package graph (prepare.yml): the Debian 12 node and the Debian 12 node
whose /etc/os-release says Ubuntu 22.04 (the roles' Ubuntu path against an Ubuntu-shaped
repository; no Ubuntu container was booted).

Every package of the test repository that apt installed, the metapackages' dependencies included,
is pinned at 1001 to the version installed, with that version the candidate; the packages of the
locks are held; a simulated dist-upgrade moves none of them although the repository offers a
newer version of each. The repository is reached at the roles' default URLs, the kernel headers
are installed and held, and systemd runs nvidia-persistenced with persistence mode on.
"""

import re

import pytest

DEBIAN = "gpufleet-mol-nvidia_driver-default"
UBUNTU = "gpufleet-mol-nvidia_driver-default-ubuntu"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{DEBIAN}", f"podman://{UBUNTU}"]
ON_FAILURE = [
    "apt-mark showhold",
    "cat /etc/apt/preferences.d/gpufleet-*",
    "apt-get -s -o Debug::NoLocking=1 dist-upgrade",
    "systemctl cat nvidia-persistenced",
]
# What each node must have taken from its repository (roles' data: vars/main.yml).
EXPECTED = {
    DEBIAN: {
        "cuda_dir": "debian12",
        "driver": ["cuda-drivers-550", "nvidia-kernel-open-dkms", "nvidia-persistenced"],
        "driver_version": "550.127.05-1",
        # Pulled in by the metapackages, Debian-named: covered by the driver's pin, not its lock.
        "pulled_in": [
            "nvidia-driver",
            "libglx-nvidia0",
            "libegl-nvidia0",
            "libcuda1",
            "nvidia-smi",
        ],
    },
    UBUNTU: {
        "cuda_dir": "ubuntu2204",
        "driver": ["nvidia-headless-550-open", "nvidia-utils-550", "nvidia-compute-utils-550"],
        "driver_version": "550.127.05-0ubuntu1",
        "pulled_in": ["nvidia-dkms-550-open", "nvidia-kernel-common-550", "libnvidia-compute-550"],
    },
}


def name(host):
    return host.backend.get_hostname()


def repository_packages(host):
    """Names of the test repository's packages (its Packages index)."""
    index = host.file("/srv/gpufleet-test-repo/Packages").content_string
    return sorted(set(re.findall(r"^Package: (\S+)$", index, flags=re.MULTILINE)))


def installed(host, names):
    out = host.run(
        "dpkg-query -W -f '${Package} ${db:Status-Abbrev} ${Version}\\n' " + " ".join(names)
    ).stdout
    return {
        line.split()[0]: line.split()[2] for line in out.splitlines() if line.split()[1][1:2] == "i"
    }


def test_the_node_took_its_target_s_path(host):
    exp = EXPECTED[name(host)]
    for pkg in exp["driver"] + exp["pulled_in"]:
        assert host.package(pkg).version == exp["driver_version"], pkg
    # Fabric Manager and NSCQ carry NVIDIA's revision 1 on Ubuntu too.
    for pkg in ("nvidia-fabricmanager-550", "libnvidia-nscq-550"):
        assert host.package(pkg).version == "550.127.05-1", pkg


def test_every_installed_package_of_the_graph_is_pinned_at_its_version(host):
    have = installed(host, repository_packages(host))
    assert len(have) >= 20, have
    # One apt-cache call for all: its output is one block per package, "<package>:" first.
    policy = host.check_output("apt-cache policy " + " ".join(sorted(have)))
    blocks = dict(re.findall(r"^(\S+):\n((?:[ ].*\n?)*)", policy, flags=re.MULTILINE))
    unpinned = []
    for pkg, version in sorted(have.items()):
        block = blocks.get(pkg, "")
        candidate = re.search(r"Candidate: (\S+)", block)
        pinned = re.search(rf"^ \*\*\* {re.escape(version)} 1001$", block, flags=re.MULTILINE)
        if not (candidate and candidate.group(1) == version and pinned):
            unpinned.append(f"{pkg} {version}")
    assert unpinned == []


def test_simulated_dist_upgrade_moves_none_of_them(host):
    sim = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    moved = re.findall(r"^(?:Inst|Remv) (\S+)", sim, flags=re.MULTILINE)
    assert set(moved) & set(repository_packages(host)) == set()


def test_every_locked_package_is_held(host):
    # The checker reads every lock and says NOT HELD for any package of a lock without a hold.
    out = host.run("/usr/local/sbin/gpufleet-version-drift")
    assert out.rc == 0, out.stdout
    held = set(host.check_output("apt-mark showhold").split())
    for lock in host.check_output("ls /etc/gpufleet/version-lock.d").split():
        body = host.file(f"/etc/gpufleet/version-lock.d/{lock}").content_string
        for line in body.splitlines():
            if line and not line.startswith("#"):
                assert line.split()[0] in held, (lock, line)


def test_repository_reached_at_the_roles_default_urls(host):
    cuda = host.file("/etc/apt/sources.list.d/gpufleet-nvidia-cuda.sources").content_string
    cuda_dir = EXPECTED[name(host)]["cuda_dir"]
    url = f"https://developer.download.nvidia.com/compute/cuda/repos/{cuda_dir}/x86_64/"
    assert f"URIs: {url}" in cuda.splitlines()
    # apt itself took the driver from that repository (its version table names the URL).
    policy = host.check_output(f"apt-cache policy {EXPECTED[name(host)]['driver'][0]}")
    assert url.rstrip("/") in policy


@pytest.fixture()
def kernel_release(host):
    return host.file("/srv/gpufleet-test-repo/kernel-release").content_string.strip()


def test_kernel_headers_installed_and_held(host, kernel_release):
    pkg = f"linux-headers-{kernel_release}"
    assert host.package(pkg).is_installed
    assert pkg in host.check_output("apt-mark showhold").split()
    # The real dkms of the node's archive came with the module package's Depends:.
    assert host.package("dkms").is_installed


def test_persistenced_runs_with_persistence_mode(host):
    unit = host.service("nvidia-persistenced")
    assert unit.is_enabled
    assert not unit.is_running
    execstart = host.check_output("systemctl show -p ExecStart --value nvidia-persistenced")
    assert "argv[]=/usr/bin/nvidia-persistenced --verbose ;" in execstart
    assert "no-persistence-mode" not in execstart
    dropin = host.file(
        "/etc/systemd/system/nvidia-persistenced.service.d/gpufleet-persistence-mode.conf"
    )
    assert (dropin.user, dropin.group, dropin.mode) == ("root", "root", 0o644)


def test_ubuntu_unit_as_packaged_would_turn_persistence_mode_off(host):
    # What the drop-in is for: the packaged Ubuntu unit (nvidia-compute-utils-550) says
    # --no-persistence-mode; on Debian the packaged one does not.
    packaged = host.file("/lib/systemd/system/nvidia-persistenced.service").content_string
    assert ("--no-persistence-mode" in packaged) == (name(host) == UBUNTU)
