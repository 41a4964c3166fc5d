"""The DKMS, initramfs and persistence steps of roles/nvidia_driver stay in place and in order.

Containers cannot load kernel modules, regenerate an initramfs or reboot, so molecule cannot show
these steps working (it shows the headers installed and held, and the drop-in in effect in
systemd: roles/nvidia_driver/molecule/default/tests/test_nvidia_driver.py). These tests read the
role's task files and fail when a step is removed, loses its trigger, or moves before what it
needs: the headers before the driver install (DKMS builds during the install), the initramfs
regenerated when the nouveau blacklist changes and before the reboot, the persistence daemon
started with persistence mode on, and only after the reboot.
"""

from __future__ import annotations

from typing import Any

from roles_render import ROLES, load_yaml, render, render_file, role_vars

ROLE = ROLES / "nvidia_driver"
TASKS = ROLE / "tasks"


def tasks(name: str) -> list[dict[str, Any]]:
    return [dict(t) for t in load_yaml(TASKS / name)]


def names(name: str) -> list[str]:
    return [t["name"] for t in tasks(name)]


def imported(task: dict[str, Any]) -> str | None:
    return task.get("ansible.builtin.import_tasks") or task.get("ansible.builtin.include_tasks")


def main_order() -> list[str]:
    """tasks/main.yml as the imported file name or the included role's entry point."""
    out = []
    for t in tasks("main.yml"):
        role = t.get("ansible.builtin.include_role")
        out.append(imported(t) or f"{role['name']}:{role.get('tasks_from', 'main')}")
    return out


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


# --- kernel headers ---------------------------------------------------------------------------


def test_headers_installed_before_the_driver_install():
    order = main_order()
    assert "kernel.yml" in order, "tasks/main.yml no longer installs the kernel headers"
    assert order.index("kernel.yml") < order.index("version_lock:install")
    step = tasks("main.yml")[order.index("kernel.yml")]
    assert step["when"] == "nvidia_driver_kernel_headers"
    assert role_vars("nvidia_driver")["nvidia_driver_kernel_headers"] is True


def test_headers_of_the_running_kernel_are_installed_and_held():
    steps = tasks("kernel.yml")
    install = steps[0]["ansible.builtin.include_role"]
    assert install["name"] == "apt_packages"
    assert steps[0]["vars"]["apt_packages_present"] == [
        "linux-headers-{{ __nvidia_driver_kernel_release }}"
    ]
    hold = next(t for t in steps if "ansible.builtin.dpkg_selections" in t)
    assert hold["ansible.builtin.dpkg_selections"]["selection"] == "hold"
    v = {**role_vars("nvidia_driver"), "ansible_facts": {"kernel": "6.8.0-48-generic"}}
    assert render(v, "__nvidia_driver_kernel_release") == "6.8.0-48-generic"
    # What the hold loops over: the installed packages of that kernel, from dpkg-query's lines.
    state = {
        "stdout_lines": [
            "linux-image-6.8.0-48-generic ii  6.8.0-48.48",
            "linux-headers-6.8.0-48-generic ii  6.8.0-48.48",
        ]
    }
    kernel = {**v, "__nvidia_driver_kernel_state": state}
    assert render(kernel, "__nvidia_driver_kernel_versions") == {
        "linux-image-6.8.0-48-generic": "6.8.0-48.48",
        "linux-headers-6.8.0-48-generic": "6.8.0-48.48",
    }
    # A kernel that is no package (a container's, a custom build): only the headers are held.
    state = {"stdout_lines": ["linux-headers-6.8.0-48-generic ii  6.8.0-48.48"]}
    assert list(
        render({**v, "__nvidia_driver_kernel_state": state}, "__nvidia_driver_kernel_versions")
    ) == ["linux-headers-6.8.0-48-generic"]


def test_module_built_for_the_running_kernel_is_checked_after_the_reboot():
    order = main_order()
    assert order.index("reboot.yml") < order.index("start.yml")
    check = next(t for t in tasks("start.yml") if "ansible.builtin.command" in t)
    assert check["ansible.builtin.command"]["argv"][:3] == [
        "modinfo",
        "-k",
        "{{ __nvidia_driver_kernel_release }}",
    ]
    assert "nvidia_driver_version" in " ".join(
        next(t for t in tasks("start.yml") if "ansible.builtin.assert" in t)[
            "ansible.builtin.assert"
        ]["that"]
    )


# --- initramfs -------------------------------------------------------------------------------


def handlers() -> list[dict[str, Any]]:
    return [dict(h) for h in load_yaml(ROLE / "handlers" / "main.yml")]


def test_nouveau_blacklist_changes_regenerate_the_initramfs():
    for task in tasks("configure.yml"):
        if "nouveau" in task["name"]:
            assert "Regenerate the initramfs" in as_list(task.get("notify")), task["name"]
    handler = next(h for h in handlers() if h["name"] == "Regenerate the initramfs")
    assert handler["ansible.builtin.command"]["argv"] == ["update-initramfs", "-u", "-k", "all"]


def test_initramfs_is_regenerated_before_the_reboot():
    order = [h["name"] for h in handlers()]
    # Handlers run in the order written: the initramfs first, then the reboot is recorded.
    assert order.index("Regenerate the initramfs") < order.index("Reboot after a driver change")
    reboot = tasks("reboot.yml")
    flush = next(
        i for i, t in enumerate(reboot) if t.get("ansible.builtin.meta") == "flush_handlers"
    )
    boot = next(i for i, t in enumerate(reboot) if "ansible.builtin.reboot" in t)
    assert flush < boot


# --- persistence mode ------------------------------------------------------------------------


def dropin_task() -> dict[str, Any]:
    return next(t for t in tasks("service.yml") if "ansible.builtin.template" in t)


def test_persistence_mode_dropin_is_written_when_persistence_is_wanted():
    task = dropin_task()
    assert task["when"] == "nvidia_driver_persistenced"
    assert task["ansible.builtin.template"]["dest"].endswith(
        ".service.d/gpufleet-persistence-mode.conf"
    )
    assert "Reload systemd units" in as_list(task["notify"])


def test_dropin_replaces_the_packaged_command_without_no_persistence_mode():
    src = ROLE / "templates" / dropin_task()["ansible.builtin.template"]["src"]
    lines = [ln for ln in render_file({}, src).splitlines() if ln and not ln.startswith("#")]
    # An empty ExecStart= first clears the packaged one (Ubuntu's has --no-persistence-mode).
    assert lines == ["[Service]", "ExecStart=", "ExecStart=/usr/bin/nvidia-persistenced --verbose"]


def test_daemon_enabled_before_and_started_only_after_the_reboot():
    order = main_order()
    assert order.index("service.yml") < order.index("reboot.yml") < order.index("start.yml")
    assert not any(
        (t.get("ansible.builtin.systemd_service") or {}).get("state") for t in tasks("service.yml")
    ), "service.yml starts a unit before the reboot"
    start = next(
        t for t in tasks("start.yml") if "state" in (t.get("ansible.builtin.systemd_service") or {})
    )
    assert start["ansible.builtin.systemd_service"]["state"] == (
        "{{ 'started' if nvidia_driver_persistenced else 'stopped' }}"
    )
    step = tasks("main.yml")[order.index("start.yml")]
    assert step["when"] == "nvidia_driver_hardware_checks"


def test_restart_handler_waits_for_a_pending_reboot():
    handler = next(h for h in handlers() if h["name"] == "Restart nvidia-persistenced")
    assert "not (__nvidia_driver_reboot_needed | default(false))" in handler["when"]


# --- container toolkit: containerd -----------------------------------------------------------

CTK = ROLES / "nvidia_container_toolkit"


def test_containerd_configured_by_nvidia_ctk_with_cdi_only_when_asked():
    main = [dict(t) for t in load_yaml(CTK / "tasks" / "main.yml")]
    step = next(t for t in main if imported(t) == "containerd.yml")
    assert step["when"] == "nvidia_container_toolkit_containerd"
    assert role_vars("nvidia_container_toolkit")["nvidia_container_toolkit_containerd"] is False
    configure = next(
        dict(t) for t in load_yaml(CTK / "tasks" / "containerd.yml") if "ansible.builtin.shell" in t
    )
    script = configure["ansible.builtin.shell"]["cmd"]
    assert "nvidia-ctk runtime configure --runtime=containerd" in script
    assert "--cdi.enabled" in script
    assert configure["notify"] == "Restart containerd"
    handler = next(
        dict(h)
        for h in load_yaml(CTK / "handlers" / "main.yml")
        if h["name"] == "Restart containerd"
    )
    assert handler["ansible.builtin.systemd_service"] == {
        "name": "containerd",
        "state": "restarted",
    }


def test_headers_of_another_version_than_the_kernel_are_refused():
    task = next(t for t in tasks("kernel.yml") if "ansible.builtin.assert" in t)
    v = {**role_vars("nvidia_driver"), "ansible_facts": {"kernel": "6.1.0-28-amd64"}}

    def passes(lines: list[str]) -> bool:
        state = {"__nvidia_driver_kernel_state": {"stdout_lines": lines}}
        return bool(render({**v, **state}, f"({task['ansible.builtin.assert']['that']}) | bool"))

    image = "linux-image-6.1.0-28-amd64 ii  6.1.119-1"
    assert passes([image, "linux-headers-6.1.0-28-amd64 ii  6.1.119-1"])
    assert not passes([image, "linux-headers-6.1.0-28-amd64 ii  6.1.115-1"])
    # No kernel package (a container, a custom kernel): the headers alone are fine.
    assert passes(["linux-headers-6.1.0-28-amd64 ii  6.1.119-1"])


# --- version_lock: packages the extra pins cover, left at an older release --------------------

# CONSTRUCTED lines in the format of `apt-get --simulate dist-upgrade` (the molecule scenario
# produces the real case: nvidia-modprobe 550.90.07-1 seeded by hand, kept by a ">=" dependency).
CONSTRUCTED_SIMULATION = [
    "Inst nvidia-modprobe [550.90.07-1] (550.127.05-1 gpufleet TEST repository:localhost [all])",
    "Inst perl-base [5.36.0-7+deb12u3] (5.36.0-7+deb12u4 Debian-Security:12/oldstable [amd64])",
    "Inst libglx-nvidia0 [550.90.07-1] (550.127.05-1 gpufleet TEST repository:localhost [all])",
    "Inst libglx-nvidia0-extra [1.0-1] (1.1-1 elsewhere [all])",
    "Inst nvidia-new-package (550.127.05-1 gpufleet TEST repository:localhost [all])",
    "Conf nvidia-modprobe (550.127.05-1 gpufleet TEST repository:localhost [all])",
]


def test_extra_pins_bring_pulled_in_packages_to_their_pinned_version():
    pins = [{"package": "nvidia-* libglx-nvidia0", "version": "550.127.05-*", "why": "x"}]
    v = {
        **role_vars("version_lock"),
        "version_lock_extra_pins": pins,
        "__version_lock_upgrade": {"stdout_lines": CONSTRUCTED_SIMULATION},
    }
    # Installed packages the pins cover, not new ones, not other packages.
    assert render(v, "__version_lock_pulled_in") == [
        "nvidia-modprobe=550.127.05-1",
        "libglx-nvidia0=550.127.05-1",
    ]
    tasks_dir = ROLES / "version_lock" / "tasks"
    install = [dict(t) for t in load_yaml(tasks_dir / "install.yml")]
    step = next(t for t in install if t.get("ansible.builtin.include_tasks") == "extra_pins.yml")
    assert "version_lock_extra_pins | length > 0" in step["when"]
    extra = [dict(t) for t in load_yaml(tasks_dir / "extra_pins.yml")]
    bring = next(t for t in extra if t["name"] == "Bring them to the version their pin holds")
    assert bring["ansible.builtin.apt"]["name"] == "{{ __version_lock_pulled_in }}"
