"""library/nvidia_gpu_facts.py: parsers on outputs recorded on real H100 systems, and checks.

Recordings live in tests/data/hardware/ and, for those the lab replays on its GPU nodes, in the
package data src/gpufleet/lab/replay/recordings/ (copied unchanged from the shared reference set
or from public repositories, or recorded by us on a lent H100 VM; line 1 names the source and is
stripped before parsing). The only real pending remap and non-zero ECC counters are on an A100
(510.73.08); no recording shows a downtrained PCIe link, an NVLink link down, a failed
`nvlink -s`, an unreadable ECC mode or a missing serial on bare metal, and the only XML
(`-q -x`) recording has one GPU: those inputs are small constructed ones, named CONSTRUCTED_*
below.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Both folders of recordings: the tests' own and the lab's replay set (package data).
DATA_DIRS = (REPO / "tests" / "data" / "hardware", REPO / "src/gpufleet/lab/replay/recordings")

_spec = importlib.util.spec_from_file_location(
    "nvidia_gpu_facts", REPO / "library" / "nvidia_gpu_facts.py"
)
assert _spec and _spec.loader
facts_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(facts_mod)

HEALTHY_8X = "nvidia-smi-q-leptonai-gpud-535.161.08-8xh100.txt"
PASSTHROUGH_8X = "nvidia-smi-q-leptonai-gpud-535.183.01-8xh100-passthrough.txt"
SINGLE_590 = "nvidia-smi-q-utkuozdemir-nvidia_gpu_exporter-h100-590.48.01.txt"
TOPO = "nvidia-smi-topo-m-devopsrustem-slurmv4-aihub0007.txt"
NVLINK = "nvidia-smi-nvlink-s-utkuozdemir-nvidia_gpu_exporter-h100.txt"
FM_MISMATCH = "systemctl-status-nvidia-fabricmanager-akash-docs-version-mismatch.txt"
FM_RUNNING = "systemctl-status-nvidia-fabricmanager-devopsrustem-slurmv4-aihub0007.txt"
FM_JOURNAL = "journalctl-u-nvidia-fabricmanager-orimanabu-zenndocs-p5.txt"
FABRIC_DONE = "nvidia-smi-q-grep-fabric-completed-orimanabu-zenndocs-p5.txt"
FABRIC_IN_PROGRESS = "nvidia-smi-q-grep-fabric-in-progress-orimanabu-zenndocs-p5.txt"

H100_EXPECT = {
    "gpu_count": 8,
    "driver_version": "535.161.08",
    "fabric_manager": True,
    "persistence": True,
    "ecc": True,
    "pcie_gen": 5,
    "pcie_width": 16,
    "nvlink": True,
    "peermem": True,
}


def _recording(name: str) -> Path:
    found = [d / name for d in DATA_DIRS if (d / name).is_file()]
    assert len(found) == 1, f"{name}: in {len(found)} of {DATA_DIRS}"
    return found[0]


def recorded(name: str) -> str:
    text = _recording(name).read_text()
    assert text.startswith("# source:"), f"{name}: line 1 must name the source"
    return text.split("\n", 1)[1]


def healthy_facts() -> dict:
    facts = facts_mod.parse_smi_query_text(recorded(HEALTHY_8X))
    facts["fabricmanager"] = facts_mod.parse_fabricmanager_status(recorded(FM_RUNNING))
    facts["nvlink"] = facts_mod.parse_nvlink_status(recorded(NVLINK))
    facts["peermem_loaded"] = True
    return facts


# ---------------------------------------------------------------- nvidia-smi -q (text)


def test_text_query_healthy_8x_h100_header_and_count():
    facts = facts_mod.parse_smi_query_text(recorded(HEALTHY_8X))
    assert facts["driver_version"] == "535.161.08"
    assert facts["cuda_version"] == "12.2"
    assert facts["attached_gpus"] == 8
    assert facts["gpu_count"] == 8
    assert [g["bus_id"] for g in facts["gpus"]] == [
        f"00000000:{b}:00.0" for b in ("19", "3B", "4C", "5D", "9B", "BB", "CB", "DB")
    ]


def test_text_query_first_gpu_fields():
    gpu = facts_mod.parse_smi_query_text(recorded(HEALTHY_8X))["gpus"][0]
    assert gpu["product_name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["architecture"] == "Hopper"
    assert gpu["vbios_version"] == "96.00.74.00.0D"
    assert gpu["uuid"] == "GPU-ee7954ec-da95-fd7a-ddfd-c6b32cc2f8aa"
    assert gpu["minor_number"] == 0
    assert gpu["persistence_mode"] is True
    assert gpu["ecc_mode"] == {"current": True, "pending": True}
    assert gpu["remapped_rows"] == {
        "correctable": 0,
        "uncorrectable": 0,
        "pending": False,
        "failure": False,
    }
    # H100 reports retired pages as N/A (row remapping replaced page retirement).
    assert gpu["retired_pages"] == {"single_bit": None, "double_bit": None, "pending": None}
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16}
    assert gpu["fabric"] == {"state": "Completed", "status": "Success"}


def test_text_query_clock_event_reasons_nested_hw_slowdown():
    # The recording shows HW Power Brake Slowdown active under HW Slowdown on GPU 0.
    gpu = facts_mod.parse_smi_query_text(recorded(HEALTHY_8X))["gpus"][0]
    assert gpu["clocks_event_reasons"]["HW Power Brake Slowdown"] is True
    assert gpu["clocks_event_reasons"]["HW Thermal Slowdown"] is False
    assert gpu["clocks_event_reasons_active"] == ["HW Power Brake Slowdown", "HW Slowdown"]


@pytest.mark.parametrize(
    ("name", "driver", "count", "vbios"),
    [
        (PASSTHROUGH_8X, "535.183.01", 8, None),
        (SINGLE_590, "590.48.01", 1, "96.00.A5.00.01"),
    ],
)
def test_text_query_other_recordings(name, driver, count, vbios):
    facts = facts_mod.parse_smi_query_text(recorded(name))
    assert (facts["driver_version"], facts["gpu_count"]) == (driver, count)
    assert all(g["fabric"]["state"] == "Completed" for g in facts["gpus"])
    assert all(g["pcie"]["gen_current"] == 5 for g in facts["gpus"])
    if vbios:
        assert facts["gpus"][0]["vbios_version"] == vbios
        # 590.48.01: Idle is the only active reason; wider columns parse the same.
        assert facts["gpus"][0]["clocks_event_reasons_active"] == ["Idle"]


@pytest.mark.parametrize(
    ("name", "state", "status"),
    [(FABRIC_DONE, "Completed", "Success"), (FABRIC_IN_PROGRESS, "In Progress", None)],
)
def test_text_query_fabric_grep_excerpts(name, state, status):
    facts = facts_mod.parse_smi_query_text(recorded(name))
    assert facts["gpu_count"] == 1
    assert facts["gpus"][0]["fabric"] == {"state": state, "status": status}


# constructed: the 535.161.08 recording's first GPU with its Remapped Rows block changed to a
# pending remap (no recording of a pending remap is available).
CONSTRUCTED_PENDING_REMAP = """\
Driver Version                            : 535.161.08
Attached GPUs                             : 1
GPU 00000000:19:00.0
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 1
        Pending                           : Yes
        Remapping Failure Occurred        : No
"""

# constructed: PCIe link trained at Gen 4 x8 on an x16 Gen 5 slot (no recording shows it).
CONSTRUCTED_PCIE_DOWNTRAINED = """\
Driver Version                            : 535.161.08
Attached GPUs                             : 1
GPU 00000000:19:00.0
    PCI
        GPU Link Info
            PCIe Generation
                Max                       : 5
                Current                   : 4
            Link Width
                Max                       : 16x
                Current                   : 8x
"""

# constructed: older drivers call the section "Clocks Throttle Reasons".
CONSTRUCTED_THROTTLE_REASONS = """\
GPU 00000000:19:00.0
    Clocks Throttle Reasons
        Idle                              : Not Active
        SW Thermal Slowdown               : Active
"""


def test_text_query_constructed_pending_remap():
    gpu = facts_mod.parse_smi_query_text(CONSTRUCTED_PENDING_REMAP)["gpus"][0]
    assert gpu["remapped_rows"]["pending"] is True
    assert gpu["remapped_rows"]["uncorrectable"] == 1


def test_text_query_constructed_pcie_downtrained():
    gpu = facts_mod.parse_smi_query_text(CONSTRUCTED_PCIE_DOWNTRAINED)["gpus"][0]
    assert gpu["pcie"] == {"gen_current": 4, "gen_max": 5, "width_current": 8, "width_max": 16}


def test_text_query_constructed_throttle_reasons_old_name():
    gpu = facts_mod.parse_smi_query_text(CONSTRUCTED_THROTTLE_REASONS)["gpus"][0]
    assert gpu["clocks_event_reasons_active"] == ["SW Thermal Slowdown"]


def test_text_query_empty_output_has_no_gpus():
    facts = facts_mod.parse_smi_query_text("")
    assert facts["gpu_count"] == 0
    assert facts["driver_version"] is None


# ---------------------------------------------------------------- nvidia-smi -q -x (XML)

# constructed: a two-GPU document shaped after NVIDIA's nvsmi DTD (element names as documented),
# with an unhealthy second GPU that no recording shows.
CONSTRUCTED_XML = """<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>550.127.05</driver_version>
  <cuda_version>12.4</cuda_version>
  <attached_gpus>2</attached_gpus>
  <gpu id="00000000:19:00.0">
    <product_name>NVIDIA H100 80GB HBM3</product_name>
    <product_architecture>Hopper</product_architecture>
    <persistence_mode>Enabled</persistence_mode>
    <minor_number>0</minor_number>
    <vbios_version>96.00.74.00.0D</vbios_version>
    <pci><pci_gpu_link_info>
      <pcie_gen><max_link_gen>5</max_link_gen><current_link_gen>5</current_link_gen></pcie_gen>
      <link_widths><max_link_width>16x</max_link_width>
        <current_link_width>16x</current_link_width></link_widths>
    </pci_gpu_link_info></pci>
    <clocks_event_reasons>
      <clocks_event_reason_gpu_idle>Active</clocks_event_reason_gpu_idle>
      <clocks_event_reason_hw_slowdown>Not Active</clocks_event_reason_hw_slowdown>
    </clocks_event_reasons>
    <ecc_mode><current_ecc>Enabled</current_ecc><pending_ecc>Enabled</pending_ecc></ecc_mode>
    <retired_pages>
      <multiple_single_bit_retirement><retired_count>N/A</retired_count>
      </multiple_single_bit_retirement>
      <double_bit_retirement><retired_count>N/A</retired_count></double_bit_retirement>
      <pending_blacklist>N/A</pending_blacklist>
    </retired_pages>
    <remapped_rows>
      <remapped_row_corr>0</remapped_row_corr><remapped_row_unc>0</remapped_row_unc>
      <remapped_row_pending>No</remapped_row_pending>
      <remapped_row_failure>No</remapped_row_failure>
    </remapped_rows>
    <fabric><state>Completed</state><status>Success</status></fabric>
  </gpu>
  <gpu id="00000000:3B:00.0">
    <persistence_mode>Disabled</persistence_mode>
    <pci><pci_gpu_link_info>
      <pcie_gen><max_link_gen>5</max_link_gen><current_link_gen>3</current_link_gen></pcie_gen>
    </pci_gpu_link_info></pci>
    <ecc_mode><current_ecc>Disabled</current_ecc><pending_ecc>Enabled</pending_ecc></ecc_mode>
    <remapped_rows><remapped_row_pending>Yes</remapped_row_pending></remapped_rows>
    <fabric><state>In Progress</state><status>N/A</status></fabric>
  </gpu>
</nvidia_smi_log>
"""


def test_xml_query_constructed():
    facts = facts_mod.parse_smi_query_xml(CONSTRUCTED_XML)
    assert (facts["driver_version"], facts["cuda_version"], facts["gpu_count"]) == (
        "550.127.05",
        "12.4",
        2,
    )
    first, second = facts["gpus"]
    assert first["bus_id"] == "00000000:19:00.0"
    assert first["vbios_version"] == "96.00.74.00.0D"
    assert first["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16}
    assert first["clocks_event_reasons_active"] == ["gpu_idle"]
    assert first["remapped_rows"]["pending"] is False
    assert second["persistence_mode"] is False
    assert second["ecc_mode"] == {"current": False, "pending": True}
    assert second["pcie"]["gen_current"] == 3
    assert second["remapped_rows"]["pending"] is True
    assert second["fabric"] == {"state": "In Progress", "status": None}


def test_text_and_xml_agree_on_shape():
    text = facts_mod.parse_smi_query_text(recorded(HEALTHY_8X))
    xml = facts_mod.parse_smi_query_xml(CONSTRUCTED_XML)
    assert set(text) == set(xml)
    assert set(text["gpus"][0]) == set(xml["gpus"][0])


# ---------------------------------------------------------------- topo -m


def test_topo_matrix_recorded_hgx_h100():
    topo = facts_mod.parse_topo_matrix(recorded(TOPO))
    assert topo["devices"][:8] == [f"GPU{i}" for i in range(8)]
    assert len(topo["devices"]) == 20
    assert topo["nics"]["NIC11"] == "mlx5_11"
    gpu0 = topo["gpus"]["GPU0"]
    assert gpu0["nvlink_peers"] == {f"GPU{i}": 18 for i in range(1, 8)}
    assert gpu0["cpu_affinity"] == "0-191"
    assert gpu0["numa_affinity"] == "0"
    # GPU-to-NIC affinity as recorded (the NIC numbering skips NIC3/NIC4 and NIC9/NIC10, which
    # are attached to each other only, not to a GPU).
    closest = {g: (v["closest_nics"], v["closest_nic_link"]) for g, v in topo["gpus"].items()}
    assert closest == {
        "GPU0": (["mlx5_0"], "PIX"),
        "GPU1": (["mlx5_1"], "PIX"),
        "GPU2": (["mlx5_2"], "PIX"),
        "GPU3": (["mlx5_5"], "PIX"),
        "GPU4": (["mlx5_6"], "PIX"),
        "GPU5": (["mlx5_7"], "PIX"),
        "GPU6": (["mlx5_8"], "PIX"),
        "GPU7": (["mlx5_11"], "PIX"),
    }


def test_topo_matrix_not_a_matrix():
    assert facts_mod.parse_topo_matrix("NVIDIA-SMI has failed")["gpus"] == {}


# ---------------------------------------------------------------- nvlink -s


def test_nvlink_recorded_all_18_links_up():
    nv = facts_mod.parse_nvlink_status(recorded(NVLINK))
    gpu = nv["gpus"][0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert sorted(gpu["links"]) == list(range(18))
    assert {lk["speed_gbps"] for lk in gpu["links"].values()} == {26.562}
    assert gpu["links_down"] == []


# constructed: nvidia-smi prints "<inactive>" for a link that is down (no recording shows one).
CONSTRUCTED_NVLINK_DOWN = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)
\t Link 0: 26.562 GB/s
\t Link 1: <inactive>
"""


def test_nvlink_constructed_link_down():
    gpu = facts_mod.parse_nvlink_status(CONSTRUCTED_NVLINK_DOWN)["gpus"][0]
    assert gpu["links_down"] == [1]
    assert gpu["links"][1] == {"up": False, "speed_gbps": None, "raw": "<inactive>"}


# ---------------------------------------------------------------- Fabric Manager


def test_fm_status_recorded_version_mismatch():
    fm = facts_mod.parse_fabricmanager_status(recorded(FM_MISMATCH))
    assert fm["version_mismatch"] == {"fabric_manager": "550.127.05", "driver": "550.120"}
    assert fm["start_failed"] is True
    assert fm["nvswitches_configured"] is False


def test_fm_status_recorded_running_with_nvswitch_error():
    fm = facts_mod.parse_fabricmanager_status(recorded(FM_RUNNING))
    assert (fm["active_state"], fm["sub_state"]) == ("active", "running")
    assert fm["version_mismatch"] is None
    assert fm["start_failed"] is False
    assert fm["nvswitches_configured"] is True
    assert fm["nvswitch_errors"] == [{"kind": "non-fatal", "code": 22013}]


def test_fm_journal_recorded_healthy_start():
    fm = facts_mod.parse_fabricmanager_status(recorded(FM_JOURNAL))
    assert fm["nvswitches_configured"] is True
    assert fm["version_mismatch"] is None
    assert fm["nvswitch_errors"] == []


# ---------------------------------------------------------------- checks


def test_check_healthy_recordings_pass():
    assert facts_mod.check_node(healthy_facts(), H100_EXPECT) == []


def test_check_nothing_expected_nothing_checked_but_remaps():
    facts = facts_mod.parse_smi_query_text(CONSTRUCTED_PENDING_REMAP)
    assert facts_mod.check_node(facts, {}) == [
        "pending_remaps: seen pending on 00000000:19:00.0, expected none (reset the GPU)"
    ]


def test_check_recorded_driver_mismatch_and_count():
    facts = facts_mod.parse_smi_query_text(recorded(SINGLE_590))
    facts["fabricmanager"] = facts_mod.parse_fabricmanager_status(recorded(FM_RUNNING))
    lines = facts_mod.check_node(facts, H100_EXPECT)
    assert "gpu_count: seen 1, expected 8" in lines
    assert "driver_version: seen 590.48.01, expected 535.161.08" in lines


def test_check_recorded_fm_version_mismatch():
    facts = healthy_facts()
    fm = facts_mod.parse_fabricmanager_status(recorded(FM_MISMATCH))
    fm["active_state"] = "failed"  # what `systemctl is-active` prints after status=1/FAILURE
    facts["fabricmanager"] = fm
    assert facts_mod.check_node(facts, H100_EXPECT) == [
        "fabric_manager: seen failed (journal: Fabric Manager 550.127.05 does not match driver "
        "550.120), expected active"
    ]


def test_check_recorded_fabric_in_progress():
    facts = facts_mod.parse_smi_query_text(recorded(FABRIC_IN_PROGRESS))
    facts["fabricmanager"] = {"active_state": "active"}
    assert facts_mod.check_node(facts, {"fabric_manager": True, "remaps": False}) == [
        "fabric_state: seen 0=In Progress, expected Completed on every GPU"
    ]


def test_check_constructed_pcie_downtrained():
    facts = facts_mod.parse_smi_query_text(CONSTRUCTED_PCIE_DOWNTRAINED)
    assert facts_mod.check_node(facts, {"pcie_gen": 5, "pcie_width": 16}) == [
        "pcie_gen: seen 00000000:19:00.0=4, expected 5 on every GPU",
        "pcie_width: seen 00000000:19:00.0=8, expected 16 on every GPU",
    ]


def test_check_constructed_nvlink_down_and_peermem_missing():
    facts = healthy_facts()
    facts["nvlink"] = facts_mod.parse_nvlink_status(CONSTRUCTED_NVLINK_DOWN)
    facts["peermem_loaded"] = False
    assert facts_mod.check_node(facts, H100_EXPECT) == [
        "nvlink: seen down: GPU0 link 1, expected all links up",
        "nvidia_peermem: seen not loaded, expected loaded (GPUDirect RDMA)",
    ]


def test_check_constructed_xml_second_gpu_unhealthy():
    facts = facts_mod.parse_smi_query_xml(CONSTRUCTED_XML)
    facts["fabricmanager"] = {"active_state": "active"}
    lines = facts_mod.check_node(
        facts, {"gpu_count": 2, "persistence": True, "ecc": True, "fabric_manager": True}
    )
    assert lines == [
        "fabric_state: seen 00000000:3B:00.0=In Progress, expected Completed on every GPU",
        "persistence_mode: seen off on 00000000:3B:00.0, expected Enabled",
        "ecc_mode: seen off on 00000000:3B:00.0, expected Enabled",
        "pending_remaps: seen pending on 00000000:3B:00.0, expected none (reset the GPU)",
    ]


def test_check_accepts_values_templated_as_strings():
    # Ansible may hand the module "8" and "True" instead of 8 and True.
    facts = facts_mod.parse_smi_query_text(recorded(SINGLE_590))
    lines = facts_mod.check_node(facts, {"gpu_count": "8", "ecc": "True", "peermem": "False"})
    assert lines == ["gpu_count: seen 1, expected 8"]


def test_replay_tool_only_serves_recordings_present_in_the_replay_set():
    from importlib.machinery import SourceFileLoader

    tool = REPO / "src/gpufleet/lab/replay/bin/nvidia-smi"
    loader = SourceFileLoader("replay_nvidia_smi", str(tool))
    spec = importlib.util.spec_from_loader("replay_nvidia_smi", loader)
    assert spec
    replay = importlib.util.module_from_spec(spec)
    loader.exec_module(replay)
    files = {name for recset in replay.SETS.values() for name in recset.values()}
    assert files
    assert all((DATA_DIRS[1] / name).is_file() for name in files)  # the lab ships them
    for name in files:
        assert recorded(name)  # exists and starts with its provenance line


# ------------------------------------------------- recorded by gpufleet on a lent H100 VM

LENT_XML = "nvidia-smi-q-x-gpufleet-lent-h100-vm-580.159.04.txt"
LENT_TEXT = "nvidia-smi-q-gpufleet-lent-h100-vm-580.159.04.txt"
LENT_TOPO = "nvidia-smi-topo-m-gpufleet-lent-h100-vm-1gpu.txt"

# The text form names clock event reasons as printed ("SW Power Cap"), the XML form by element
# ("sw_power_cap"); everything else must be identical.
_TEXT_TO_XML_REASON = {
    "Idle": "gpu_idle",
    "Applications Clocks Setting": "applications_clocks_setting",
    "SW Power Cap": "sw_power_cap",
    "HW Slowdown": "hw_slowdown",
    "HW Thermal Slowdown": "hw_thermal_slowdown",
    "HW Power Brake Slowdown": "hw_power_brake_slowdown",
    "Sync Boost": "sync_boost",
    "SW Thermal Slowdown": "sw_thermal_slowdown",
    "Display Clock Setting": "display_clocks_setting",
}


def test_xml_query_recorded_on_h100():
    facts = facts_mod.parse_smi_query_xml(recorded(LENT_XML))
    assert (facts["driver_version"], facts["cuda_version"], facts["gpu_count"]) == (
        "580.159.04",
        "13.0",
        1,
    )
    (gpu,) = facts["gpus"]
    assert gpu["product_name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["architecture"] == "Hopper"
    assert gpu["vbios_version"] == "96.00.DA.00.0C"
    assert gpu["persistence_mode"] is True
    assert gpu["ecc_mode"] == {"current": True, "pending": True}
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16}
    assert gpu["remapped_rows"] == {
        "correctable": 0,
        "uncorrectable": 0,
        "pending": False,
        "failure": False,
    }
    assert gpu["clocks_event_reasons_active"] == ["gpu_idle"]


def test_xml_and_text_forms_of_one_recording_agree():
    xml = facts_mod.parse_smi_query_xml(recorded(LENT_XML))
    text = facts_mod.parse_smi_query_text(recorded(LENT_TEXT))
    # The two commands ran a moment apart: the averaged power readings moved, as recorded.
    assert (xml["gpus"][0]["power"]["draw_w"], text["gpus"][0]["power"]["draw_w"]) == (71.84, 71.86)
    assert (
        xml["gpus"][0]["power"]["memory_draw_w"],
        text["gpus"][0]["power"]["memory_draw_w"],
    ) == (
        42.63,
        42.65,
    )
    for facts in (xml, text):
        for gpu in facts["gpus"]:
            del gpu["power"]["draw_w"], gpu["power"]["memory_draw_w"]
            reasons = gpu.pop("clocks_event_reasons")
            active = gpu.pop("clocks_event_reasons_active")
            gpu["reasons"] = {_TEXT_TO_XML_REASON.get(k, k): v for k, v in reasons.items()}
            gpu["active"] = [_TEXT_TO_XML_REASON.get(k, k) for k in active]
    assert xml == text
    assert len(xml["gpus"][0]["reasons"]) == 9


def test_recorded_h100_passes_the_single_gpu_checks():
    facts = facts_mod.parse_smi_query_xml(recorded(LENT_XML))
    expect = {"gpu_count": 1, "driver_version": "580.159.04", "ecc": True, "persistence": True}
    assert facts_mod.check_node(facts, expect) == []
    assert facts_mod.check_node(facts, {**expect, "gpu_count": 8}) != []


def test_topo_with_ansi_underlined_header_recorded_on_h100():
    topo = facts_mod.parse_topo_matrix(recorded(LENT_TOPO))
    assert topo["devices"] == ["GPU0"]
    assert topo["matrix"] == {"GPU0": {"GPU0": "X"}}
    assert topo["gpus"]["GPU0"]["cpu_affinity"] == "0-15"
    assert topo["gpus"]["GPU0"]["numa_affinity"] == "0"
    assert topo["gpus"]["GPU0"]["closest_nics"] == []


# ------------------------------------ issue 21 item 11: serials, ECC, clocks, temperatures, power

Q565_GPU0 = "nvidia-smi-q-thamada-nvidia-smi-565.57.01-8xh100-gpu0.txt"
A100_REMAP = "nvidia-smi-q-stas00-ml-engineering-a100-510.73.08-remap-pending.txt"
NVLINK_8X = "nvidia-smi-nvlink-s-p5-48xlarge-550.90.07-8xh100.txt"
TABLE_550 = "nvidia-smi-leptonai-gpud-550.90.07-8xh100.txt"
TABLE_565 = "nvidia-smi-thamada-nvidia-smi-565.57.01-8xh100.txt"
TABLE_570 = "nvidia-smi-orimanabu-zenndocs-p5-570.133.20.txt"
TABLE_590_LOAD = "nvidia-smi-utkuozdemir-nvidia_gpu_exporter-h100-load.txt"

# The parser each nvidia-smi recording is read with; a new recording must be added here.
PARSERS = {
    "nvidia-smi-q-x-": "parse_smi_query_xml",
    "nvidia-smi-q-": "parse_smi_query_text",
    "nvidia-smi-nvlink-s-": "parse_nvlink_status",
    "nvidia-smi-topo-m-": "parse_topo_matrix",
    "nvidia-smi-": "parse_smi_table",
}


def parsed(name: str) -> dict:
    prefix = next(p for p in PARSERS if name.startswith(p))
    return getattr(facts_mod, PARSERS[prefix])(recorded(name))


@pytest.mark.parametrize("name", sorted(p.name for d in DATA_DIRS for p in d.glob("nvidia-smi*")))
def test_every_nvidia_smi_recording_parses_to_gpus(name):
    facts = parsed(name)
    gpus = facts.get("gpus") or {}
    assert gpus, f"{name}: no GPU parsed"
    if name.startswith("nvidia-smi-q-") and "grep" not in name:
        # Full -q recordings: every GPU has a serial or says why not, and every new section.
        for gpu in gpus:
            assert gpu["serial_number"] or gpu["serial_number_problem"]
            assert gpu["remapped_rows"] is not None
            if "stas00" not in name:  # an excerpt without these sections
                for section in ("clocks", "temperature", "power", "fb_memory", "ecc_errors"):
                    assert gpu[section] is not None, f"{name}: {section}"


def _first(name: str) -> dict:
    return parsed(name)["gpus"][0]


@pytest.mark.parametrize(
    ("name", "serial", "board", "module_id"),
    [
        (HEALTHY_8X, "1650124031592", "692-2G520-0200-000", 2),
        (PASSTHROUGH_8X, "1655022005478", "692-2G520-0200-000", 7),
        (Q565_GPU0, "1654423001593", "692-2G520-0200-000", 2),
        (LENT_TEXT, "1752824027026", "695-2G520-0200-000", 3),
        (LENT_XML, "1752824027026", "695-2G520-0200-000", 3),
    ],
)
def test_serial_and_part_numbers_recorded(name, serial, board, module_id):
    gpu = _first(name)
    assert gpu["serial_number"] == serial
    assert gpu["serial_number_problem"] is None
    assert gpu["board_part_number"] == board
    assert gpu["gpu_part_number"] == "2330-885-A1"
    assert gpu["fru_part_number"] is None  # printed N/A
    # 535 prints "Module ID" at GPU level; 565 and later "Module Id" under Platform Info.
    assert gpu["module_id"] == module_id


def test_serials_of_all_eight_gpus_recorded():
    gpus = parsed(HEALTHY_8X)["gpus"]
    assert [(g["serial_number"], g["module_id"]) for g in gpus] == [
        ("1650124031592", 2),
        ("1650124008135", 4),
        ("1650124047722", 1),
        ("1650124032506", 3),
        ("1650124030635", 7),
        ("1650124048576", 5),
        ("1650124047010", 6),
        ("1650124007084", 8),
    ]
    gpus = parsed(PASSTHROUGH_8X)["gpus"]
    assert [g["serial_number"] for g in gpus] == [
        "1655022005478",
        "1654522012780",
        "1654922018857",
        "1654522012479",
        "1654922016523",
        "1655022006092",
        "1654522012843",
        "1654922015414",
    ]


def test_serial_masked_in_the_recording_says_so():
    # The exporter's capture replaced the serial (and UUID) by zeros.
    gpu = _first(SINGLE_590)
    assert gpu["serial_number"] is None
    assert gpu["serial_number_problem"].startswith("all zeros: masked")
    assert "board label or the BMC" in gpu["serial_number_problem"]


def test_serial_absent_from_an_excerpt_says_so():
    for name in (FABRIC_DONE, A100_REMAP):
        gpu = _first(name)
        assert gpu["serial_number"] is None
        assert gpu["serial_number_problem"].startswith("not in the nvidia-smi output")


# constructed: serial lines as a board without one would print them (no recording shows it).
CONSTRUCTED_SERIAL_NA = """\
GPU 00000000:19:00.0
    Serial Number                         : N/A
GPU 00000000:3B:00.0
    Serial Number                         : [Unknown Error]
GPU 00000000:4C:00.0
    Serial Number                         :
"""


def test_serial_constructed_na_unreadable_and_empty():
    a, b, c = facts_mod.parse_smi_query_text(CONSTRUCTED_SERIAL_NA)["gpus"]
    assert a["serial_number"] is None and a["serial_number_problem"].startswith(
        "nvidia-smi printed N/A"
    )
    assert b["serial_number_problem"] == "unreadable: nvidia-smi printed '[Unknown Error]'"
    assert c["serial_number_problem"].startswith("nvidia-smi printed an empty value")


_H100_ECC_COUNTERS = {
    "sram_correctable": 0,
    "sram_uncorrectable_parity": 0,
    "sram_uncorrectable_secded": 0,
    "dram_correctable": 0,
    "dram_uncorrectable": 0,
}


@pytest.mark.parametrize(
    ("name", "repair_flags"),
    [
        (HEALTHY_8X, None),  # 535 prints no repair/unrepairable lines
        (PASSTHROUGH_8X, None),
        (Q565_GPU0, None),
        (LENT_TEXT, False),  # 580 and 590 print them: No
        (LENT_XML, False),
        (SINGLE_590, False),
    ],
)
def test_ecc_counters_hopper_layout(name, repair_flags):
    for gpu in parsed(name)["gpus"]:
        ecc = gpu["ecc_errors"]
        assert ecc["volatile"] == _H100_ECC_COUNTERS
        assert ecc["aggregate"] == _H100_ECC_COUNTERS
        assert (ecc["volatile_correctable"], ecc["volatile_uncorrectable"]) == (0, 0)
        assert (ecc["aggregate_correctable"], ecc["aggregate_uncorrectable"]) == (0, 0)
        assert ecc["sram_threshold_exceeded"] is False
        assert ecc["aggregate_uncorrectable_sram_sources"] == {
            "sram_l2": 0,
            "sram_sm": 0,
            "sram_microcontroller": 0,
            "sram_pcie": 0,
            "sram_other": 0,
        }
        assert ecc["channel_repair_pending"] is repair_flags
        assert ecc["tpc_repair_pending"] is repair_flags
        assert ecc["unrepairable_memory"] is repair_flags


def test_ecc_counters_and_remap_recorded_on_a100_older_layout():
    gpu = _first(A100_REMAP)
    ecc = gpu["ecc_errors"]
    # 510 prints SRAM Uncorrectable without the Parity / SEC-DED split.
    assert ecc["volatile"] == {
        "sram_correctable": 0,
        "sram_uncorrectable": 0,
        "dram_correctable": 177,
        "dram_uncorrectable": 0,
    }
    assert ecc["aggregate"] == ecc["volatile"]
    assert (ecc["volatile_correctable"], ecc["volatile_uncorrectable"]) == (177, 0)
    assert (ecc["aggregate_correctable"], ecc["aggregate_uncorrectable"]) == (177, 0)
    assert ecc["aggregate_uncorrectable_sram_sources"] is None
    assert ecc["sram_threshold_exceeded"] is None
    assert gpu["remapped_rows"] == {
        "correctable": 1,
        "uncorrectable": 0,
        "pending": True,
        "failure": False,
    }
    assert gpu["remap_banks"] == {"max": 639, "high": 1, "partial": 0, "low": 0, "none": 0}
    assert gpu["retired_pages"] == {"single_bit": None, "double_bit": None, "pending": None}
    # The excerpt elides clocks, temperatures, power and memory: None, not zeros.
    assert (gpu["clocks"], gpu["temperature"], gpu["power"], gpu["fb_memory"]) == (None,) * 4


# constructed: the counters as the 550 branch prints them when ECC reads fail ("Unknown Error"
# for the mode, N/A for every counter) - no recording with its source is available.
CONSTRUCTED_ECC_UNREADABLE = """\
Driver Version                            : 550.90.07
GPU 00000000:52:00.0
    ECC Mode
        Current                           : Unknown Error
        Pending                           : Unknown Error
    ECC Errors
        Volatile
            SRAM Correctable              : N/A
            SRAM Uncorrectable Parity     : N/A
            SRAM Uncorrectable SEC-DED    : N/A
            DRAM Correctable              : N/A
            DRAM Uncorrectable            : N/A
        Aggregate
            SRAM Correctable              : N/A
            SRAM Uncorrectable Parity     : N/A
            SRAM Uncorrectable SEC-DED    : N/A
            DRAM Correctable              : N/A
            DRAM Uncorrectable            : N/A
            SRAM Threshold Exceeded       : N/A
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 1
        Pending                           : N/A
        Remapping Failure Occurred        : N/A
"""


def test_ecc_counters_constructed_unreadable_are_none_not_zero():
    gpu = facts_mod.parse_smi_query_text(CONSTRUCTED_ECC_UNREADABLE)["gpus"][0]
    ecc = gpu["ecc_errors"]
    assert set(ecc["volatile"].values()) == {None}
    assert ecc["volatile_uncorrectable"] is None
    assert ecc["aggregate_correctable"] is None
    assert gpu["ecc_mode"] == {"current": None, "pending": None}


@pytest.mark.parametrize(
    ("name", "index", "current", "maximum"),
    [
        # (graphics, SM, memory, video) MHz now, then the max clocks.
        (HEALTHY_8X, 0, (86, 86, 2619, 765), (1980, 1980, 2619, 1545)),
        (PASSTHROUGH_8X, 2, (1980, 1980, 2619, 1545), (1980, 1980, 2619, 1545)),  # busy GPU
        (PASSTHROUGH_8X, 0, (345, 345, 2619, 765), (1980, 1980, 2619, 1545)),
        (Q565_GPU0, 0, (345, 345, 2619, 765), (1980, 1980, 2619, 1545)),
        (LENT_TEXT, 0, (345, 345, 2619, 765), (1980, 1980, 2619, 1545)),
        (LENT_XML, 0, (345, 345, 2619, 765), (1980, 1980, 2619, 1545)),
        (SINGLE_590, 0, (345, 345, 2619, 765), (1980, 1980, 2619, 1545)),
    ],
)
def test_clocks_recorded(name, index, current, maximum):
    clocks = parsed(name)["gpus"][index]["clocks"]
    assert (
        clocks["graphics_mhz"],
        clocks["sm_mhz"],
        clocks["memory_mhz"],
        clocks["video_mhz"],
    ) == current
    assert (
        clocks["max_graphics_mhz"],
        clocks["max_sm_mhz"],
        clocks["max_memory_mhz"],
        clocks["max_video_mhz"],
    ) == maximum


@pytest.mark.parametrize(
    ("name", "index", "gpu_c", "memory_c", "tlimit_c"),
    [
        (HEALTHY_8X, 0, 29, 39, 56),
        (HEALTHY_8X, 7, 31, 38, 55),
        (PASSTHROUGH_8X, 0, 36, 44, 50),
        (Q565_GPU0, 0, 30, 36, 57),
        (LENT_TEXT, 0, 38, 41, 49),
        (LENT_XML, 0, 38, 41, 49),
        (SINGLE_590, 0, 41, 48, 46),
    ],
)
def test_temperatures_recorded(name, index, gpu_c, memory_c, tlimit_c):
    temp = parsed(name)["gpus"][index]["temperature"]
    assert (temp["gpu_c"], temp["memory_c"], temp["tlimit_c"]) == (gpu_c, memory_c, tlimit_c)
    # Hopper on 535 and later prints the limits relative to the GPU's T.Limit, not absolute.
    assert (
        temp["shutdown_tlimit_c"],
        temp["slowdown_tlimit_c"],
        temp["max_operating_tlimit_c"],
        temp["memory_max_operating_tlimit_c"],
    ) == (-8, -2, 0, 0)
    assert (temp["shutdown_c"], temp["slowdown_c"], temp["max_operating_c"]) == (None,) * 3
    assert temp["target_c"] is None  # printed N/A


# constructed: absolute thresholds as branches before 535 print them (no recording here has
# a Temperature section of such a branch).
CONSTRUCTED_TEMPERATURE_ABSOLUTE = """\
GPU 00000000:10:1C.0
    Temperature
        GPU Current Temp                  : 33 C
        GPU Shutdown Temp                 : 92 C
        GPU Slowdown Temp                 : 89 C
        GPU Max Operating Temp            : 85 C
        GPU Target Temperature            : N/A
        Memory Current Temp               : 41 C
        Memory Max Operating Temp         : 95 C
"""


def test_temperatures_constructed_absolute_thresholds():
    temp = facts_mod.parse_smi_query_text(CONSTRUCTED_TEMPERATURE_ABSOLUTE)["gpus"][0][
        "temperature"
    ]
    assert (temp["shutdown_c"], temp["slowdown_c"], temp["max_operating_c"]) == (92, 89, 85)
    assert (temp["memory_max_operating_c"], temp["gpu_c"], temp["memory_c"]) == (95, 33, 41)
    assert temp["tlimit_c"] is None


@pytest.mark.parametrize(
    ("name", "index", "draw", "instant", "memory_draw"),
    [
        # 535 and 565 print "Power Draw"; 580 and 590 "Average" and "Instantaneous Power Draw".
        (HEALTHY_8X, 0, 67.74, None, None),
        (PASSTHROUGH_8X, 2, 118.01, None, None),
        (Q565_GPU0, 0, 100.89, None, 69.61),
        (LENT_TEXT, 0, 71.86, 71.81, 42.65),
        (LENT_XML, 0, 71.84, 71.81, 42.63),
        (SINGLE_590, 0, 69.85, 69.62, 43.19),
    ],
)
def test_power_recorded(name, index, draw, instant, memory_draw):
    power = parsed(name)["gpus"][index]["power"]
    assert (power["draw_w"], power["instant_draw_w"], power["memory_draw_w"]) == (
        draw,
        instant,
        memory_draw,
    )
    assert (
        power["limit_w"],
        power["requested_limit_w"],
        power["default_limit_w"],
        power["min_limit_w"],
        power["max_limit_w"],
    ) == (700.0, 700.0, 700.0, 200.0, 700.0)


@pytest.mark.parametrize(
    ("name", "index", "memory"),
    [
        (HEALTHY_8X, 0, (81559, 551, 0, 81007)),
        (PASSTHROUGH_8X, 2, (81559, 551, 9221, 71786)),
        (Q565_GPU0, 0, (81559, 454, 1, 81106)),
        (LENT_TEXT, 0, (81559, 480, 0, 81079)),
        (LENT_XML, 0, (81559, 480, 0, 81079)),
        (SINGLE_590, 0, (81559, 479, 0, 81081)),
    ],
)
def test_framebuffer_memory_recorded(name, index, memory):
    fb = parsed(name)["gpus"][index]["fb_memory"]
    assert (fb["total_mib"], fb["reserved_mib"], fb["used_mib"], fb["free_mib"]) == memory


def test_remap_bank_availability_recorded_on_h100():
    for name in (HEALTHY_8X, Q565_GPU0, LENT_TEXT, LENT_XML, SINGLE_590):
        assert _first(name)["remap_banks"] == {
            "max": 2560,
            "high": 0,
            "partial": 0,
            "low": 0,
            "none": 0,
        }


# ---------------------------------------------------------------- default table (550/565/570/590)


@pytest.mark.parametrize(
    ("name", "driver", "cuda", "count", "first"),
    [
        # first GPU: bus, persistence, volatile uncorrectable ECC, temp, draw, cap, used, total,
        # utilization
        (
            TABLE_550,
            "550.90.07",
            "12.4",
            8,
            ("00000000:19:00.0", True, 0, 27, 72, 700, 1, 81559, 0),
        ),
        (
            TABLE_565,
            "565.57.01",
            "12.7",
            8,
            ("00000000:18:00.0", True, 0, 30, 100, 700, 1, 81559, 0),
        ),
        # 570: persistence off, taken while Fabric State was still In Progress
        (
            TABLE_570,
            "570.133.20",
            "12.8",
            8,
            ("00000000:53:00.0", False, 0, 26, 67, 700, 0, 81559, 0),
        ),
        # 590 under gpu_burn and memhog
        (
            TABLE_590_LOAD,
            "590.48.01",
            "13.1",
            1,
            ("00000000:00:09.0", True, 0, 59, 629, 700, 19818, 81559, 100),
        ),
    ],
)
def test_default_table_recorded(name, driver, cuda, count, first):
    table = facts_mod.parse_smi_table(recorded(name))
    assert (table["driver_version"], table["cuda_version"], table["gpu_count"]) == (
        driver,
        cuda,
        count,
    )
    gpu = table["gpus"][0]
    assert (
        gpu["bus_id"],
        gpu["persistence_mode"],
        gpu["ecc_volatile_uncorrectable"],
        gpu["temperature_c"],
        gpu["power_draw_w"],
        gpu["power_cap_w"],
        gpu["memory_used_mib"],
        gpu["memory_total_mib"],
        gpu["utilization_pct"],
    ) == first
    assert (gpu["fan_pct"], gpu["performance_state"], gpu["mig_mode"]) == (None, "P0", "Disabled")
    assert [g["index"] for g in table["gpus"]] == list(range(count))


def test_default_table_and_query_of_one_machine_agree():
    # thamada's 8x H100 on 565.57.01: the table and the -q excerpt were taken minutes apart.
    table = facts_mod.parse_smi_table(recorded(TABLE_565))["gpus"][0]
    query = _first(Q565_GPU0)
    assert table["bus_id"] == query["bus_id"]
    assert table["temperature_c"] == query["temperature"]["gpu_c"] == 30
    assert table["power_draw_w"] == int(query["power"]["draw_w"]) == 100
    assert table["memory_used_mib"] == query["fb_memory"]["used_mib"] == 1
    assert table["ecc_volatile_uncorrectable"] == query["ecc_errors"]["volatile_uncorrectable"]


def test_default_table_not_a_table():
    assert facts_mod.parse_smi_table("NVIDIA-SMI has failed")["gpus"] == []


# -------------------------------------------- issue 14 item 7: NVLink failure and link counts


def test_nvlink_recorded_eight_gpus_eighteen_links_each():
    nv = facts_mod.parse_nvlink_status(recorded(NVLINK_8X))
    assert sorted(nv["gpus"]) == list(range(8))
    assert {g["links_up"] for g in nv["gpus"].values()} == {18}
    assert nv["gpus"][7]["uuid"] == "GPU-904c6966-ccb1-735a-fb5b-718b34a7c0cd"
    assert nv["error"] is None


# constructed: what nvidia-smi prints, with exit code 9, when it cannot reach the driver.
CONSTRUCTED_SMI_NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def test_nvlink_failed_run_keeps_the_reason():
    nv = facts_mod.nvlink_facts(9, CONSTRUCTED_SMI_NO_DRIVER, "")
    assert nv == {
        "gpus": {},
        "error": "nvidia-smi nvlink -s failed (rc 9): NVIDIA-SMI has failed because it couldn't "
        "communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed "
        "and running.",
    }
    assert (
        facts_mod.nvlink_facts(2, "", "")["error"]
        == "nvidia-smi nvlink -s failed (rc 2): no output"
    )
    assert facts_mod.nvlink_facts(0, recorded(NVLINK_8X), "")["error"] is None


LINKS = {"nvlink": True, "nvlink_links_per_gpu": 18}


def _eight_gpu_facts() -> dict:
    facts = facts_mod.parse_smi_query_text(recorded(HEALTHY_8X))
    facts["nvlink"] = facts_mod.parse_nvlink_status(recorded(NVLINK_8X))
    return facts


def test_check_nvlink_links_recorded_eight_by_eighteen_pass():
    facts = _eight_gpu_facts()
    assert facts_mod.check_node(facts, LINKS) == []
    checks = facts_mod.judge_node(facts, LINKS)
    assert checks["nvlink"] == {"status": "pass", "detail": ""}
    assert checks["nvlink_links"] == {"status": "pass", "detail": ""}
    # Templated by Ansible as a string.
    assert facts_mod.check_node(facts, {"nvlink_links_per_gpu": "18"}) == []


def test_check_nvlink_links_against_another_profile():
    # The same recording judged against a profile of 12 links per GPU (an H100 NVL, say).
    lines = facts_mod.check_node(_eight_gpu_facts(), {"nvlink_links_per_gpu": 12})
    assert lines == [
        "nvlink_links: seen "
        + ", ".join(f"GPU{i}=18" for i in range(8))
        + ", expected 12 links up on every GPU"
    ]


def test_check_nvlink_status_of_one_gpu_for_eight():
    # The recorded 1-GPU nvlink -s beside the recorded 8-GPU -q: seven GPUs have no status.
    facts = healthy_facts()
    assert facts_mod.check_node(facts, LINKS) == [
        "nvlink_links: seen "
        + ", ".join(f"GPU{i}=not listed" for i in range(1, 8))
        + ", expected 18 links up on every GPU"
    ]


def test_check_nvlink_constructed_link_down_counts_too():
    facts = facts_mod.parse_smi_query_text(recorded(SINGLE_590))
    facts["nvlink"] = facts_mod.parse_nvlink_status(CONSTRUCTED_NVLINK_DOWN)
    assert facts_mod.check_node(facts, LINKS) == [
        "nvlink: seen down: GPU0 link 1, expected all links up",
        "nvlink_links: seen GPU0=1, expected 18 links up on every GPU",
    ]


def test_check_nvlink_failed_is_a_failure_with_the_reason():
    facts = _eight_gpu_facts()
    facts["nvlink"] = facts_mod.nvlink_facts(9, CONSTRUCTED_SMI_NO_DRIVER, "")
    reason = facts["nvlink"]["error"]
    assert facts_mod.check_node(facts, LINKS) == [f"nvlink: seen {reason}, expected all links up"]
    checks = facts_mod.judge_node(facts, LINKS)
    assert checks["nvlink"]["status"] == "fail"
    # One cause, one line: the link count says it had nothing to count.
    assert checks["nvlink_links"]["status"] == "no_data"
    # Without the nvlink expectation, the count check carries the reason itself.
    assert facts_mod.check_node(facts, {"nvlink_links_per_gpu": 18}) == [
        f"nvlink_links: seen {reason}, expected 18 links up on every GPU"
    ]


def test_check_nvlink_not_run_is_unknown_not_a_pass():
    # Before: the facts held None and the check passed without a word.
    facts = _eight_gpu_facts()
    facts["nvlink"] = None
    assert facts_mod.check_node(facts, {"nvlink": True}) == [
        "nvlink: seen no link status (nvidia-smi nvlink -s was not run: module option nvlink is "
        "false), expected all links up"
    ]
    assert facts_mod.judge_node(facts, {"nvlink": True})["nvlink"]["status"] == "unknown"


def test_check_nvlink_empty_output_is_a_failure():
    facts = _eight_gpu_facts()
    facts["nvlink"] = facts_mod.parse_nvlink_status("")
    assert facts_mod.check_node(facts, {"nvlink": True}) == [
        "nvlink: seen no GPU in the output of nvidia-smi nvlink -s, expected all links up"
    ]


def test_check_nvlink_keys_as_strings_after_ansible_json():
    # Facts that went through JSON (set_fact, a fact cache) have string GPU indexes.
    import json

    facts = json.loads(json.dumps(_eight_gpu_facts()))
    assert facts_mod.check_node(facts, LINKS) == []


# ------------------------------------------------ every check that can be None says so


def test_check_results_name_every_check_and_its_status():
    checks = facts_mod.judge_node(_eight_gpu_facts(), {"gpu_count": 8})
    assert list(checks) == list(facts_mod.CHECKS)
    assert checks["gpu_count"] == {"status": "pass", "detail": ""}
    assert checks["driver_version"] == {"status": "not_checked", "detail": ""}
    assert checks["pending_remaps"]["status"] == "pass"  # the default check


def test_check_constructed_unreadable_ecc_is_unknown_not_off():
    facts = facts_mod.parse_smi_query_text(CONSTRUCTED_ECC_UNREADABLE)
    lines = facts_mod.check_node(facts, {"ecc": True, "ecc_errors": True, "remaps": True})
    unknown = "unknown on 00000000:52:00.0 (not printed or unreadable)"
    assert lines == [
        f"ecc_mode: seen {unknown}, expected Enabled",
        f"ecc_errors: seen {unknown}, expected no uncorrectable ECC error (drain the node, reset "
        "the GPU, run DCGM diagnostics)",
        f"pending_remaps: seen {unknown}, expected none (reset the GPU)",
        f"remapping_failure: seen {unknown}, expected none (replace the GPU)",
    ]
    checks = facts_mod.judge_node(facts, {"ecc": True})
    assert checks["ecc_mode"]["status"] == "unknown"
    # Not asked for explicitly: the default remap checks report no_data and do not fail.
    assert checks["pending_remaps"]["status"] == "no_data"
    assert facts_mod.check_node(facts, {}) == []


def test_check_remaps_on_an_excerpt_without_them():
    facts = facts_mod.parse_smi_query_text(recorded(FABRIC_DONE))
    assert facts_mod.judge_node(facts, {})["pending_remaps"] == {
        "status": "no_data",
        "detail": "seen unknown on 0 (not printed or unreadable), expected none (reset the GPU)",
    }
    assert facts_mod.check_node(facts, {"remaps": True})[0].startswith(
        "pending_remaps: seen unknown"
    )


def test_check_recorded_pending_remap_on_a100():
    facts = facts_mod.parse_smi_query_text(recorded(A100_REMAP))
    assert facts_mod.check_node(facts, {"ecc_errors": True, "remaps": True}) == [
        "pending_remaps: seen pending on 00000000:10:1C.0, expected none (reset the GPU)"
    ]
    # 177 correctable DRAM errors are not a failure; uncorrectable ones would be.
    assert facts_mod.judge_node(facts, {"ecc_errors": True})["ecc_errors"]["status"] == "pass"


# constructed: the 535.161.08 recording's first GPU with volatile uncorrectable DRAM errors.
CONSTRUCTED_ECC_UNCORRECTABLE = """\
GPU 00000000:19:00.0
    ECC Errors
        Volatile
            SRAM Correctable              : 0
            SRAM Uncorrectable Parity     : 0
            SRAM Uncorrectable SEC-DED    : 0
            DRAM Correctable              : 3
            DRAM Uncorrectable            : 2
        Aggregate
            SRAM Correctable              : 0
            SRAM Uncorrectable Parity     : 0
            SRAM Uncorrectable SEC-DED    : 0
            DRAM Correctable              : 3
            DRAM Uncorrectable            : 2
            SRAM Threshold Exceeded       : No
"""


def test_check_constructed_uncorrectable_ecc_errors():
    facts = facts_mod.parse_smi_query_text(CONSTRUCTED_ECC_UNCORRECTABLE)
    assert facts["gpus"][0]["ecc_errors"]["volatile_uncorrectable"] == 2
    assert facts_mod.check_node(facts, {"ecc_errors": True}) == [
        "ecc_errors: seen errors on 00000000:19:00.0 (2 uncorrectable since the last reset), "
        "expected no uncorrectable ECC error (drain the node, reset the GPU, run DCGM diagnostics)"
    ]


def test_check_serials():
    assert (
        facts_mod.check_node(facts_mod.parse_smi_query_text(recorded(HEALTHY_8X)), {"serial": True})
        == []
    )
    facts = facts_mod.parse_smi_query_text(recorded(SINGLE_590))
    assert facts_mod.check_node(facts, {"serial": True}) == [
        "serial_number: seen none on 00000000:00:09.0 (all zeros: masked (by a hypervisor or "
        "collector) or never programmed; read it from the board label or the BMC), expected a "
        "serial number on every GPU (the vendor asks for it in an RMA)"
    ]


# constructed: persistence and PCIe lines nvidia-smi could not read.
CONSTRUCTED_UNREADABLE_MODES = """\
GPU 00000000:19:00.0
    Persistence Mode                      : Unknown Error
    PCI
        GPU Link Info
            PCIe Generation
                Max                       : 5
                Current                   : Unknown Error
            Link Width
                Max                       : 16x
                Current                   : 16x
"""


def test_check_constructed_unreadable_values_say_unknown():
    facts = facts_mod.parse_smi_query_text(CONSTRUCTED_UNREADABLE_MODES)
    expect = {"persistence": True, "pcie_gen": 5, "pcie_width": 16, "driver_version": "535.161.08"}
    assert facts_mod.check_node(facts, expect) == [
        "driver_version: seen none (not printed), expected 535.161.08",
        "persistence_mode: seen unknown on 00000000:19:00.0 (not printed or unreadable), "
        "expected Enabled",
        "pcie_gen: seen 00000000:19:00.0=unknown, expected 5 on every GPU",
    ]
    statuses = {k: v["status"] for k, v in facts_mod.judge_node(facts, expect).items()}
    assert (statuses["persistence_mode"], statuses["pcie_gen"], statuses["pcie_width"]) == (
        "unknown",
        "unknown",
        "pass",
    )


def test_check_peermem_not_read_is_unknown():
    facts = _eight_gpu_facts()
    assert facts_mod.check_node(facts, {"peermem": True}) == [
        "nvidia_peermem: seen unknown (not read), expected loaded (GPUDirect RDMA)"
    ]
