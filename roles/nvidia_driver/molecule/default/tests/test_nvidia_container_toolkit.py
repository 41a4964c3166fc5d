"""Verify nvidia_container_toolkit against the TEST repository (CDI generation needs a GPU)."""

import pytest

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = ["apt-cache policy nvidia-container-toolkit", "apt-mark showhold"]
PACKAGES = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]


def test_all_packages_locked_and_held(host):
    held = host.check_output("apt-mark showhold").split()
    for pkg in PACKAGES:
        assert host.package(pkg).version == "1.17.3-1", pkg
        assert pkg in held, pkg
    assert "Candidate: 1.17.3-1" in host.check_output("apt-cache policy nvidia-container-toolkit")


@pytest.mark.parametrize(
    "path", ["/etc/apt/sources.list.d/gpufleet-nvidia-container-toolkit.sources"]
)
def test_apt_source_signed_by_checked_key(host, path):
    src = host.file(path).content_string
    # The role's default URL (converge.yml does not override it).
    assert "URIs: https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)" in src
    assert "Signed-By: /etc/apt/keyrings/gpufleet-nvidia-container-toolkit.asc" in src
    fpr = host.file("/srv/gpufleet-test-repo/test-repo-key.fpr").content_string.strip()
    shown = host.check_output(
        "gpg --show-keys --with-colons /etc/apt/keyrings/gpufleet-nvidia-container-toolkit.asc"
    )
    assert f"fpr:::::::::{fpr}:" in shown


def test_no_cdi_spec_without_hardware(host):
    assert not host.file("/etc/cdi/nvidia.yaml").exists
