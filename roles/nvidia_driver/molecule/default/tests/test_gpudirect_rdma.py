"""Verify gpudirect_rdma's files (module loading needs a GPU node: hardware checks off)."""

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = ["modprobe -c | grep -i peer", "ls -l /etc/modprobe.d /etc/modules-load.d"]


def test_peermem_loaded_at_boot(host):
    f = host.file("/etc/modules-load.d/gpufleet-gpudirect-rdma.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    lines = [ln for ln in f.content_string.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["nvidia_peermem"]


def test_legacy_module_blacklisted_and_stale_file_repaired(host):
    f = host.file("/etc/modprobe.d/gpufleet-blacklist-nv-peer-mem.conf")
    assert f.mode == 0o644
    assert "blacklist nv_peer_mem" in f.content_string.splitlines()
    # modprobe itself reads the configuration: the legacy module resolves to /bin/false.
    assert "install nv_peer_mem /bin/false" in host.check_output("modprobe -c")
