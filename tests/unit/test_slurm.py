"""gpufleet.slurm: node lines, gres.conf and topology.conf from hardware facts, and the
problems Slurm would only report at run time.

GPU facts come from library/nvidia_gpu_facts.py's parsers on outputs recorded on real 8 x H100
systems (src/gpufleet/lab/replay/recordings, provenance on line 1 of each). The `lscpu -p`
layouts are CONSTRUCTED (no recording exists in this repository): the CPU numbering Linux gives
a two-socket server with hyperthreads (siblings numbered after all first threads), named so below.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jinja2
import pytest

from gpufleet.slurm import (
    FilterModule,
    controller_problems,
    default_controllers,
    gres_count,
    gres_gpu_lines,
    gres_problems,
    gres_type,
    logical_cores,
    node_line,
    parse_cpu_list,
    parse_gres,
    parse_lscpu,
    parse_slurmd_c,
    partition_problems,
    ranges,
    topology_conf,
)

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "src/gpufleet/lab/replay/recordings"

_spec = importlib.util.spec_from_file_location(
    "nvidia_gpu_facts", REPO / "library" / "nvidia_gpu_facts.py"
)
assert _spec and _spec.loader
smi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smi)

# `slurmd -C` as Debian 12's slurmd 22.05.8 printed it in a container on this project's build
# machine (2 cores, 24 GB), 2026-12-02.
SLURMD_C_BUILD_HOST = (
    "NodeName=d5545e8a42f0 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1"
    " RealMemory=24105\nUpTime=0-03:41:04\n"
)


def recorded(name: str) -> str:
    return (RECORDINGS / name).read_text().split("\n", 1)[1]


def constructed_lscpu(sockets: int, cores: int, threads: int) -> str:
    """CONSTRUCTED `lscpu -p=CPU,CORE,SOCKET`: Linux numbers the first thread of every core
    socket by socket, then the sibling threads in the same order."""
    lines = [
        "# The following is the parsable format, which can be fed to other",
        "# CPU,Core,Socket",
    ]
    total = sockets * cores
    for t in range(threads):
        for core in range(total):
            lines.append(f"{t * total + core},{core},{core // cores}")
    return "\n".join(lines) + "\n"


def h100_facts() -> dict:
    facts = smi.parse_smi_query_text(recorded("nvidia-smi-q-leptonai-gpud-535.161.08-8xh100.txt"))
    facts["topology"] = smi.parse_topo_matrix(
        recorded("nvidia-smi-topo-m-devopsrustem-slurmv4-aihub0007.txt")
    )
    return facts


# --- slurmd -C and node lines ----------------------------------------------------------------


def test_parse_slurmd_c():
    assert parse_slurmd_c(SLURMD_C_BUILD_HOST) == {
        "CPUs": 2,
        "Boards": 1,
        "SocketsPerBoard": 1,
        "CoresPerSocket": 2,
        "ThreadsPerCore": 1,
        "RealMemory": 24105,
    }


def test_parse_slurmd_c_refuses_a_partial_line():
    with pytest.raises(ValueError, match="RealMemory"):
        parse_slurmd_c(
            "NodeName=x CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1"
        )


def test_node_line_lowers_memory_and_carries_gres():
    hw = parse_slurmd_c(SLURMD_C_BUILD_HOST)
    assert node_line("gpu001", hw, memory_headroom_percent=2, gres="gpu:h100:8") == (
        "NodeName=gpu001 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1"
        " RealMemory=23622 Gres=gpu:h100:8 State=UNKNOWN"
    )
    line = node_line("gpu001", hw, address="10.1.0.101")
    assert " NodeAddr=10.1.0.101 " in line and " RealMemory=24105 " in line
    assert "Gres=" not in line


def test_node_line_refuses_a_headroom_of_everything():
    with pytest.raises(ValueError, match="0-99"):
        node_line("gpu001", parse_slurmd_c(SLURMD_C_BUILD_HOST), memory_headroom_percent=100)


# --- CPU lists and cores --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0-3,8", {0, 1, 2, 3, 8}), ("5", {5}), ("0-1,1-2", {0, 1, 2}), ("", set())],
)
def test_parse_cpu_list(text, cpus):
    assert parse_cpu_list(text) == cpus


def test_parse_cpu_list_refuses_other_text():
    with pytest.raises(ValueError):
        parse_cpu_list("N/A")


@pytest.mark.parametrize(
    ("numbers", "text"), [([], ""), ([3], "3"), ([0, 1, 2, 3, 8, 10, 11], "0-3,8,10-11")]
)
def test_ranges(numbers, text):
    assert ranges(numbers) == text


def test_hyperthreads_map_to_their_cores():
    rows = parse_lscpu(constructed_lscpu(sockets=2, cores=56, threads=2))
    assert len(rows) == 224
    # NUMA node 0 of such a server: first threads 0-55 and their siblings 112-167.
    assert logical_cores(parse_cpu_list("0-55,112-167"), rows) == list(range(56))
    assert logical_cores(parse_cpu_list("56-111,168-223"), rows) == list(range(56, 112))
    # Only a sibling thread named: still its core.
    assert logical_cores({170}, rows) == [58]


def test_parse_lscpu_refuses_another_layout():
    with pytest.raises(ValueError, match="CPU,CORE,SOCKET"):
        parse_lscpu("0,0\n")


# --- gres.conf from recorded GPU facts ---------------------------------------------------


def test_gres_lines_from_recorded_h100_facts_on_a_two_socket_layout():
    facts = h100_facts()
    lines = gres_gpu_lines(
        "gpu001", "h100", facts["gpus"], facts["topology"], constructed_lscpu(2, 48, 2)
    )
    # The recorded node has 192 CPUs on one NUMA node: every GPU's affinity is 0-191, all 96 cores.
    assert lines == [
        f"NodeName=gpu001 Name=gpu Type=h100 File=/dev/nvidia{i} Cores=0-95" for i in range(8)
    ]


def test_gres_lines_follow_minor_numbers_and_per_gpu_affinity():
    gpus = [{"minor_number": 3}, {"minor_number": 0}]
    topology = {
        "gpus": {"GPU0": {"cpu_affinity": "56-111,168-223"}, "GPU1": {"cpu_affinity": "N/A"}}
    }
    lines = gres_gpu_lines("gpu002", "h100", gpus, topology, constructed_lscpu(2, 56, 2))
    assert lines == [
        "NodeName=gpu002 Name=gpu Type=h100 File=/dev/nvidia3 Cores=56-111",
        # No readable affinity: no Cores=, never a guess.
        "NodeName=gpu002 Name=gpu Type=h100 File=/dev/nvidia0",
    ]


def test_gres_lines_on_a_smaller_machine_keep_the_cores_it_has():
    # The molecule scenario: a recorded 192-CPU affinity on a 2-core container.
    facts = h100_facts()
    lines = gres_gpu_lines("n", "h100", facts["gpus"], facts["topology"], "0,0,0\n1,1,0\n")
    assert {line.split(" Cores=")[1] for line in lines} == {"0-1"}


def test_gres_lines_refuse_a_gpu_without_minor_number():
    with pytest.raises(ValueError, match="minor number"):
        gres_gpu_lines("n", "h100", [{"minor_number": None}], None, "0,0,0\n")


# --- topology.conf ------------------------------------------------------------------------


def test_topology_groups_nodes_by_their_rail_leaves():
    leaves = {f"su{u}-leaf{r}" for u in (1, 2) for r in range(8)}
    assert len(leaves) == 16
    nodes = {
        "gpu001": [f"su1-leaf{r}" for r in range(8)],
        "gpu002": [f"su1-leaf{r}" for r in range(8)],
        "gpu033": [f"su2-leaf{r}" for r in range(8)],
        "head1": [],
    }
    text = topology_conf(nodes)
    assert [x for x in text.splitlines() if not x.startswith("#")] == [
        "SwitchName=su1-leaf0 Nodes=gpu001,gpu002",
        "SwitchName=su2-leaf0 Nodes=gpu033",
        "SwitchName=spine Switches=su1-leaf0,su2-leaf0",
    ]


def test_topology_of_one_unit_has_no_spine_and_none_without_leaves():
    assert "spine" not in topology_conf({"gpu1": ["lab-leaf0", "lab-leaf1"]})
    assert topology_conf({"gpu1": [], "gpu2": []}) == ""


def test_topology_refuses_two_leaf_sets_with_the_same_first_leaf():
    with pytest.raises(ValueError, match="su1-leaf0"):
        topology_conf({"a": ["su1-leaf0", "su1-leaf1"], "b": ["su1-leaf0", "su9-leaf1"]})


# --- the bad inputs `gpufleet validate` will report ---------------------------------------


def test_partition_naming_a_node_that_does_not_exist():
    problems = partition_problems(
        [{"name": "train", "nodes": ["gpu001", "gpu099"]}, {"name": "all", "nodes": "ALL"}],
        ["gpu001", "gpu002"],
    )
    assert [str(p) for p in problems] == [
        "partitions[0].nodes: partition train names node gpu099, which does not exist"
        " (fix: name a compute node of the cluster (gpu001, gpu002))"
    ]


def test_partition_defined_twice():
    problems = partition_problems(
        [{"name": "a", "nodes": "ALL"}, {"name": "a", "nodes": "ALL"}], []
    )
    assert [p.path for p in problems] == ["partitions[1].name"]


def test_two_controllers_with_the_same_name():
    problems = controller_problems(["head1", "head1"])
    assert [str(p) for p in problems] == [
        "controllers[1]: controller head1 is listed twice: a backup must be another host"
        " (fix: name two different head nodes)"
    ]
    assert controller_problems(["head1", "head2"]) == []
    assert [p.message for p in controller_problems([])] == ["no Slurm controller"]
    assert "3 controllers" in controller_problems(["a", "b", "c"])[0].message


@pytest.mark.parametrize(
    ("gres", "count"),
    [("gpu:h100:8", 8), ("gpu:8", 8), ("gpu", 1), ("nic:2", 0), ("gpu:a:2,gpu:b:1", 3)],
)
def test_gres_count(gres, count):
    assert gres_count(gres) == count


def test_gres_count_above_the_profile():
    problems = gres_problems("gpu001", "gpu:h100:9", 8)
    assert [p.message for p in problems] == [
        "gpu001: Gres gpu:h100:9 claims 9 GPUs, the profile has 8"
    ]
    assert gres_problems("gpu001", "gpu:h100:8", 8) == []


# --- the spec's defaults ----------------------------------------------------------------------


def test_default_controllers_are_the_first_two_heads_by_name():
    assert default_controllers(["head3", "head1", "head2"]) == ("head1", "head2")
    assert default_controllers(["head1"]) == ("head1",)
    assert default_controllers([]) == ()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("H100-SXM5-80GB", "h100"),
        ("A100-PCIE-40GB", "a100"),
        ("L40S", "l40s"),
        ("GH200 480GB", "gh200"),
        ("-", None),
    ],
)
def test_gres_type_is_the_models_first_token(model, expected):
    assert gres_type(model) == expected


def test_parse_gres_reads_the_specs_two_forms():
    assert parse_gres("gpu:h100:8") == ("h100", 8)
    assert parse_gres("gpu:8") == (None, 8)
    with pytest.raises(ValueError, match="not gpu:<type>:<count>"):
        parse_gres("nic:2")


# --- the filters, as the role calls them ------------------------------------------------------


def test_filters_render_in_jinja():
    env = jinja2.Environment()
    env.filters.update(FilterModule().filters())
    facts = h100_facts()
    out = env.from_string(
        "{{ facts | gpufleet_slurm_gres_gpus('n1', 'h100', lscpu) | length }} "
        "{{ 'n1' | gpufleet_slurm_node_line(text | gpufleet_slurmd_hardware,"
        " memory_headroom_percent=2, gres='gpu:h100:8') }}"
    ).render(facts=facts, lscpu="0,0,0\n1,1,0\n", text=SLURMD_C_BUILD_HOST)
    assert out.startswith("8 NodeName=n1 CPUs=2 ")
    assert out.endswith(" RealMemory=23622 Gres=gpu:h100:8 State=UNKNOWN")


def test_a_spec_with_a_valid_slurm_section_loads(tmp_path):
    from gpufleet.model import load_cluster

    minimal = (REPO / "tests/data/specs/minimal-ib.yaml").read_text()
    section = (
        "slurm:\n  controllers: [head01]\n  gres: {hgx-h100-8gpu-ib: 'gpu:h100:8'}\n"
        "  partitions:\n    - {name: train, nodes: ALL, default: true}\n"
        "    - {name: debug, nodes: [gpu002], exclusive: false, max_time: '1:00:00'}\n"
    )
    (tmp_path / "cluster.yaml").write_text(minimal.replace("\nnodes:\n", f"\n{section}nodes:\n"))
    cluster = load_cluster(tmp_path / "cluster.yaml")
    assert [n.name for n in cluster.nodes_by_role("gpu")] == ["gpu001", "gpu002"]
