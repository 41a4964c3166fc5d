"""Restarts only on change (side_effect.yml converges again with the debug partition's MaxTime
and one cgroup.conf line changed): the partition change is applied live by scontrol reconfigure,
the cgroup.conf change restarts slurmd, and no other daemon restarts."""

from conftest import GPU, HEAD

testinfra_hosts = [f"podman://{HEAD}", f"podman://{GPU}"]

RESTARTED = {HEAD: set(), GPU: {"slurmd.service"}}


def _invocations(host, which):
    """unit -> InvocationID (empty for a unit that is not running or not installed)."""
    text = host.file(f"/var/tmp/gpufleet-invocations-{which}").content_string
    out = {}
    for block in text.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[fields["Id"]] = fields.get("InvocationID", "")
    return out


def test_only_the_daemons_of_the_changed_files_restarted(host):
    before, after = _invocations(host, "before"), _invocations(host, "after")
    assert set(before) == set(after)
    changed = {unit for unit in before if before[unit] != after[unit]}
    name = host.check_output("hostname")
    assert changed == RESTARTED[name]
    running = {unit for unit, inv in after.items() if inv}
    assert running, "no daemon was running"


def test_partition_change_applied_live(head):
    assert "MaxTime=02:00:00" in head.check_output("scontrol show partition debug")


def test_cgroup_change_in_the_file_slurmd_read(gpu):
    assert "ConstrainSwapSpace=no" in gpu.file("/etc/slurm/cgroup.conf").content_string.splitlines()
