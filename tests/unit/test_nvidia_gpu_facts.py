"""library/nvidia_gpu_facts.py: parsers on outputs recorded on real H100 systems, and checks.

Recordings live in tests/data/hardware/ (copied unchanged from the shared reference set, or
recorded by us on a lent H100 VM; line 1 names the source and is stripped before parsing). No
recording shows pending remaps, a downtrained PCIe link or an NVLink link down, and the only
XML (`-q -x`) recording has one GPU: those inputs are small constructed ones, named
CONSTRUCTED_* below.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "hardware"

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


def recorded(name: str) -> str:
    text = (DATA / name).read_text()
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


def test_replay_tool_only_serves_recordings_present_in_tests_data():
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("replay_nvidia_smi", str(REPO / "tests/replay/nvidia-smi"))
    spec = importlib.util.spec_from_loader("replay_nvidia_smi", loader)
    assert spec
    replay = importlib.util.module_from_spec(spec)
    loader.exec_module(replay)
    files = {name for recset in replay.SETS.values() for name in recset.values()}
    assert files
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
    for facts in (xml, text):
        for gpu in facts["gpus"]:
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
