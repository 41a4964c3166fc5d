"""Validation judged recorded H100 outputs: pass on healthy, the expected lines on unhealthy."""

import pytest

HEALTHY = "gpufleet-mol-nvidia_driver-replay-healthy"
UNHEALTHY = "gpufleet-mol-nvidia_driver-replay-unhealthy"
testinfra_hosts = [f"podman://{HEALTHY}", f"podman://{UNHEALTHY}"]
RESULT = "/var/tmp/gpufleet-validate.result"


def name(host):
    return host.backend.get_hostname()


def test_validation_verdict(host):
    lines = host.file(RESULT).content_string.splitlines()
    if name(host) == HEALTHY:
        assert lines == ["PASS"]
    else:
        h = UNHEALTHY
        assert lines == [
            f"{h} gpu_count: seen 1, expected 8",
            f"{h} driver_version: seen 590.48.01, expected 535.161.08",
            f"{h} fabric_manager: seen failed (journal: Fabric Manager 550.127.05 does not match "
            "driver 550.120), expected active",
            f"{h} nvlink: seen nvidia-smi nvlink -s failed (rc 2): nvidia-smi replay: no recording "
            "for 'nvlink -s', expected all links up",
            f"{h} nvidia_peermem: seen not loaded, expected loaded (GPUDirect RDMA)",
            f"{h} serial_number: seen none on 00000000:00:09.0 (all zeros: masked (by a "
            "hypervisor or collector) or never programmed; read it from the board label or the "
            "BMC), expected a serial number on every GPU (the vendor asks for it in an RMA)",
        ]


# `nvlink -s`: test_replay_nvlink_lists_eight_gpus_or_fails (the unhealthy set has none).
@pytest.mark.parametrize("args", ["-q", "topo -m"])
def test_replay_prints_recording_without_provenance_line(host, args):
    out = host.check_output(f"nvidia-smi {args}")
    assert not out.startswith("# source:")
    assert out


def test_replay_nvlink_lists_eight_gpus_or_fails(host):
    result = host.run("nvidia-smi nvlink -s")
    if name(host) == HEALTHY:
        assert result.rc == 0
        assert result.stdout.count("GPU ") == 8
        assert result.stdout.count("26.562 GB/s") == 8 * 18
        assert not result.stdout.startswith("# source:")
    else:
        assert result.rc == 2
        assert result.stderr.strip() == "nvidia-smi replay: no recording for 'nvlink -s'"


def test_replay_has_no_xml(host):
    # The module must have fallen back to text: there is no -q -x recording.
    assert host.run("nvidia-smi -q -x").rc == 2


def test_fabricmanager_stand_in_state(host):
    svc = host.service("nvidia-fabricmanager")
    assert svc.is_running == (name(host) == HEALTHY)
