"""Slurm on a head and a GPU node: daemons, locked packages, the node idle with its GPUs, jobs
that run (with PMIx and GPUs), accounting through slurmdbd and MariaDB, and configuration that
Slurm's own parsers check before it is installed."""

import time

import pytest
from conftest import GPU

VERSION = "22.05.8-4+deb12u3"
ON_FAILURE = [
    "tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log",
    "sinfo -N -l",
]


def _until(check, seconds=40):
    """Retry check() until it returns a true value; return the last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(2)


@pytest.mark.parametrize(
    ("node", "units"),
    [
        ("head", ["munge", "mariadb", "slurmdbd", "slurmctld"]),
        ("gpu", ["munge", "slurmd"]),
    ],
)
def test_daemons_running_and_enabled(request, node, units):
    h = request.getfixturevalue(node)
    for unit in units:
        assert h.service(unit).is_running, unit
        assert h.service(unit).is_enabled, unit
    # Each node runs only its own daemons.
    others = {"head": ["slurmd"], "gpu": ["slurmctld", "slurmdbd", "mariadb"]}[node]
    for unit in others:
        assert not h.service(unit).is_running, unit


@pytest.mark.parametrize(
    ("node", "packages"),
    [
        ("head", ["slurm-client", "slurm-wlm-basic-plugins", "slurmctld", "slurmdbd"]),
        ("gpu", ["slurm-client", "slurm-wlm-basic-plugins", "slurmd"]),
    ],
)
def test_packages_at_the_locked_version_and_held(request, node, packages):
    h = request.getfixturevalue(node)
    held = h.check_output("apt-mark showhold").split()
    for package in packages:
        assert h.package(package).version == VERSION, package
        assert package in held, package
    assert (
        h.run("/usr/local/sbin/gpufleet-version-drift /etc/gpufleet/version-lock.d/slurm.lock").rc
        == 0
    )


def test_node_idle_with_its_gpus(head):
    state = _until(lambda: head.check_output(f"sinfo -h -N -n {GPU} -o %T -p gpu") == "idle")
    assert state, head.check_output("sinfo -N -l")
    node = head.check_output(f"scontrol show node {GPU}")
    assert "Gres=gpu:h100:8" in node


def test_node_line_is_the_hardware_slurmd_reports(head, gpu):
    fields = dict(kv.split("=", 1) for kv in gpu.check_output("slurmd -C").splitlines()[0].split())
    line = next(
        x
        for x in head.file("/etc/slurm/slurm.conf").content_string.splitlines()
        if x.startswith(f"NodeName={GPU} ")
    )
    for key in ("CPUs", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"):
        assert f" {key}={fields[key]} " in line, key
    assert f" RealMemory={int(fields['RealMemory']) * 98 // 100} " in line


def test_srun_runs_on_the_gpu_node(head):
    assert head.check_output("srun -N1 -p gpu hostname") == GPU


def test_srun_gives_the_requested_gpus(head):
    out = head.check_output("srun -N1 -p debug --gres=gpu:h100:2 printenv CUDA_VISIBLE_DEVICES")
    assert out == "0,1"


def test_srun_with_pmix(head):
    assert "pmix" in head.check_output("srun --mpi=list")
    env = head.check_output("srun -N1 -p gpu --mpi=pmix printenv PMIX_RANK")
    assert env == "0"


def test_sacct_lists_the_job(head):
    name = f"gpufleet-acct-{int(time.time())}"
    head.check_output(f"srun -N1 -p gpu -J {name} true")
    listed = _until(
        lambda: head.check_output(
            f"sacct -a -X -n -P -S now-1hours --name {name} --format=JobName,State,Cluster"
        )
    )
    assert listed == f"{name}|COMPLETED|molecule"


def test_gres_conf_names_each_device_with_its_cores(gpu):
    lines = [
        x
        for x in gpu.file("/etc/slurm/gres.conf").content_string.splitlines()
        if x and not x.startswith("#")
    ]
    assert lines == [
        f"NodeName={GPU} Name=gpu Type=h100 File=/dev/nvidia{i} Cores=0-1" for i in range(8)
    ]
    for i in range(8):
        # A character device with NVIDIA's major number (195 = 0xc3), as slurmd stats it.
        assert gpu.check_output(f"stat -c '%F %t' /dev/nvidia{i}") == "character special file c3"


def test_topology_from_the_rail_leaves(head):
    assert head.check_output("scontrol show topology").startswith("SwitchName=su1-leaf0 ")
    assert f"Nodes={GPU}" in head.check_output("scontrol show topology")


def test_slurmdbd_conf_private_and_passwordless(head):
    f = head.file("/etc/slurm/slurmdbd.conf")
    assert (f.user, f.group, f.mode) == ("slurm", "slurm", 0o600)
    assert "StoragePass" not in f.content_string


@pytest.mark.parametrize("node", ["head", "gpu"])
def test_installed_configuration_passes_the_checker(request, node):
    h = request.getfixturevalue(node)
    out = h.run("/usr/local/sbin/gpufleet-slurm-check /etc/slurm")
    assert out.rc == 0, out.stderr


@pytest.mark.parametrize(
    ("node", "file", "edit", "said"),
    [
        ("head", "slurm.conf", "s/^SelectType=/SelectTyp=/", "unrecognized key: SelectTyp"),
        ("head", "partitions.conf", "s/ Default=/ Defualt=/", "unrecognized key: Defualt"),
        # Cores the node does not have (slurmd -G also stats each File=; a missing device makes
        # it wait 20 s for the file to appear, too slow for this scenario).
        ("gpu", "gres.conf", "s/Cores=0-1/Cores=0-7/", "Invalid GRES data for gpu, Cores=0-7"),
    ],
)
def test_checker_refuses_a_broken_file(request, node, file, edit, said):
    h = request.getfixturevalue(node)
    tmp = h.check_output("mktemp -d")
    try:
        h.check_output(f"cp /etc/slurm/*.conf {tmp}/ && sed -i '{edit}' {tmp}/{file}")
        out = h.run(f"/usr/local/sbin/gpufleet-slurm-check {tmp}")
        assert out.rc == 1
        assert said in out.stderr
    finally:
        h.run(f"rm -rf {tmp}")


def test_the_verification_package_imports_where_the_phase_runs_it(head, gpu):
    """cluster_verify: the controller runs the phase's driver (pydantic, PyYAML, Jinja2 in its
    venv, installed from wheels), the GPU node the burn-in module; both from /opt/gpufleet/lib,
    the package this checkout packed."""
    env = "PYTHONPATH=/opt/gpufleet/lib python3 -c"
    venv = "PYTHONPATH=/opt/gpufleet/lib /opt/gpufleet/verify-driver/bin/python -c"
    driver = head.run(f"{venv} 'import gpufleet.verify.campaign as c; print(c.REASON_PREFIX)'")
    assert driver.rc == 0 and driver.stdout.strip() == "gpufleet-verify:", driver.stderr
    burnin = gpu.run(f"{env} 'import gpufleet.verify.burnin as b; print(b.SCHEMA)'")
    assert burnin.rc == 0 and burnin.stdout.strip() == "gpufleet.burnin/1", burnin.stderr
    assert not gpu.file("/opt/gpufleet/nccl-tests").exists  # nothing built in a container
