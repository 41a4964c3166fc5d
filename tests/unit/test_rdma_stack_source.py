"""rdma_stack's two sources, through the role's own task expressions and templates (roles_render).

The distribution's rdma-core (the default) is installed and tested in the molecule scenario;
DOCA-OFED comes from NVIDIA's repository through roles/version_lock, as the GPU roles do. No
machine here can reach NVIDIA's repository, so these tests render what the role would do on each
target: the source line, the key it checks, the packages it installs from the distribution, the
lock, the pins, and the preflight refusing bad input. The version_lock templates rendered are
that role's own.
"""

from __future__ import annotations

from typing import Any

import pytest
from roles_render import ROLES, load_yaml, render, render_file, role_vars, task_named, templar

ROLE = ROLES / "rdma_stack"
MAIN = ROLE / "tasks" / "main.yml"
PREFLIGHT = ROLE / "tasks" / "preflight.yml"
LOCK = ROLES / "version_lock"

DISTRIBUTION_PACKAGES = [
    "rdma-core",
    "ibverbs-providers",
    "ibverbs-utils",
    "infiniband-diags",
    "rdmacm-utils",
]
# Release and revision as a public install note pins them (doca-ofed=2.9.5-0.1.8); the
# fingerprint is a placeholder of the right shape (the real one is the site's to check).
DOCA = {
    "rdma_stack_doca_version": "2.9.5",
    "rdma_stack_doca_package_revision": "0.1.8",
    "rdma_stack_doca_repo_key_fingerprint": "0123456789ABCDEF0123456789ABCDEF01234567",
}

# Target -> (ansible_facts, the repository directory NVIDIA names it by).
TARGETS = {
    "Debian 12": ({"distribution": "Debian", "distribution_version": "12.11",
                   "distribution_major_version": "12"}, "debian12"),
    "Ubuntu 22.04": ({"distribution": "Ubuntu", "distribution_version": "22.04",
                      "distribution_major_version": "22"}, "ubuntu22.04"),
    "Ubuntu 24.04": ({"distribution": "Ubuntu", "distribution_version": "24.04",
                      "distribution_major_version": "24"}, "ubuntu24.04"),
}  # fmt: skip


def variables(target: str, **extra: Any) -> dict[str, Any]:
    facts, _ = TARGETS[target]
    return {
        **role_vars("rdma_stack"),
        "inventory_hostname": "gpu1",
        "ansible_facts": {**facts, "architecture": "x86_64", "os_family": "Debian"},
        **extra,
    }


def step(name: str) -> dict[str, Any]:
    return task_named(MAIN, name)


def include_vars(v: dict[str, Any], name: str) -> dict[str, Any]:
    """The vars an include_role step hands version_lock, rendered as the play would."""
    return {key: templar(v).template(value) for key, value in step(name)["vars"].items()}


def when(v: dict[str, Any], task: dict[str, Any]) -> bool:
    return bool(render(v, f"({task['when']}) | bool"))


DOCA_STEPS = (
    "Drift of DOCA-OFED against the version lock installed last time",
    "DOCA repository and signing key",
    "DOCA-OFED at the locked version, pinned and held",
)


@pytest.mark.parametrize("target", TARGETS)
def test_distribution_is_the_default_and_unchanged(target):
    v = variables(target)
    assert v["rdma_stack_source"] == "distribution"
    assert render(v, "__rdma_stack_apt_packages") == DISTRIBUTION_PACKAGES
    sm = variables(target, rdma_stack_subnet_manager=True)
    assert render(sm, "__rdma_stack_apt_packages") == [*DISTRIBUTION_PACKAGES, "opensm"]
    # No repository, lock or pin of DOCA on the distribution path.
    for name in DOCA_STEPS:
        assert not when(v, step(name)), name
        assert step(name)["ansible.builtin.include_role"]["name"] == "version_lock"


@pytest.mark.parametrize("target", TARGETS)
def test_doca_repository_line_and_key(target):
    v = variables(target, rdma_stack_source="doca", **DOCA)
    assert when(v, step("DOCA repository and signing key"))
    repo = include_vars(v, "DOCA repository and signing key")
    url = f"https://linux.mellanox.com/public/repo/doca/2.9.5/{TARGETS[target][1]}/x86_64/"
    assert repo["version_lock_repo_url"] == url
    assert repo["version_lock_repo_key_url"] == url + "GPG-KEY-Mellanox.pub"
    assert repo["version_lock_repo_key_fingerprint"] == DOCA["rdma_stack_doca_repo_key_fingerprint"]
    # The deb822 source version_lock writes: flat (suite "/"), trusted with this key only.
    lock = {
        **role_vars("version_lock"),
        **repo,
        "ansible_facts": v["ansible_facts"],
        "ansible_parent_role_names": ["rdma_stack"],
    }
    source = render_file(lock, LOCK / "templates/etc/apt/sources.list.d/flat.sources.j2")
    lines = [ln for ln in source.splitlines() if not ln.startswith("#")]
    assert lines == [
        "Types: deb",
        f"URIs: {url}",
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/gpufleet-nvidia-doca.asc",
    ]


def test_doca_mirror_and_arm_servers():
    v = variables("Ubuntu 22.04", rdma_stack_source="doca", **DOCA)
    arm = {**v, "ansible_facts": {**v["ansible_facts"], "architecture": "aarch64"}}
    assert render(arm, "__rdma_stack_doca_repo_url").endswith("/ubuntu22.04/arm64-sbsa/")
    mirror = {**v, "rdma_stack_doca_repo_url": "https://mirror.example/doca/2.9.5/jammy"}
    assert render(mirror, "__rdma_stack_doca_key_url") == (
        "https://mirror.example/doca/2.9.5/jammy/GPG-KEY-Mellanox.pub"
    )


@pytest.mark.parametrize("target", TARGETS)
def test_doca_packages_lock_and_pins(target):
    v = variables(target, rdma_stack_source="doca", **DOCA)
    # The distribution's RDMA packages are not installed beside DOCA's own builds.
    assert render(v, "__rdma_stack_apt_packages") == []
    sm = variables(target, rdma_stack_source="doca", rdma_stack_subnet_manager=True, **DOCA)
    assert render(sm, "__rdma_stack_apt_packages") == ["opensm"]
    name = "DOCA-OFED at the locked version, pinned and held"
    assert when(v, step(name))
    install = include_vars(v, name)
    assert install["version_lock_name"] == "rdma_stack"
    assert install["version_lock_packages"] == ["doca-ofed"]
    assert install["version_lock_version"] == "2.9.5-0.1.8"
    lock = {**role_vars("version_lock"), **install, "ansible_parent_role_names": ["rdma_stack"]}
    lockfile = render_file(lock, LOCK / "templates/etc/gpufleet/version-lock.d/lock.j2")
    assert [ln for ln in lockfile.splitlines() if not ln.startswith("#")] == [
        "doca-ofed 2.9.5-0.1.8"
    ]
    pin = render_file(lock, LOCK / "templates/etc/apt/preferences.d/pin.j2")
    stanzas = [s for s in pin.split("\n\n") if "Package:" in s]
    body = [[ln for ln in s.splitlines() if not ln.startswith("#")] for s in stanzas]
    assert body[0] == ["Package: doca-ofed", "Pin: version 2.9.5-0.1.8", "Pin-Priority: 1001"]
    user_space = body[1][0].removeprefix("Package: ").split()
    assert set(DISTRIBUTION_PACKAGES) <= set(user_space)
    assert body[1][1:] == ["Pin: version *mlnx*", "Pin-Priority: 1001"]
    # Drift is checked against the same lock, with the role's drift action.
    drift = include_vars(v, "Drift of DOCA-OFED against the version lock installed last time")
    assert drift == {"version_lock_name": "rdma_stack", "version_lock_drift_action": "fix"}


def test_doca_steps_run_in_the_version_lock_order():
    order = [t["name"] for t in load_yaml(MAIN)]
    drift, repo, install = (order.index(n) for n in DOCA_STEPS)
    assert order.index("Preflight") < drift < repo < install < order.index("Packages")
    entry = [step(n)["ansible.builtin.include_role"]["tasks_from"] for n in DOCA_STEPS]
    assert entry == ["drift", "repository", "install"]


# --- bad input ---------------------------------------------------------------------------------


def preflight_passes(v: dict[str, Any]) -> bool:
    """Every assert of preflight.yml that runs for `v` (blocks' `when` included) passes."""

    def walk(tasks: list[dict[str, Any]], active: bool) -> bool:
        ok = True
        for task in tasks:
            on = active and ("when" not in task or when(v, task))
            if "block" in task:
                ok &= walk(task["block"], on)
            elif on and "ansible.builtin.assert" in task:
                that = task["ansible.builtin.assert"]["that"]
                for cond in [that] if isinstance(that, str) else that:
                    ok &= bool(render(v, f"({cond}) | bool"))
        return ok

    return walk([dict(t) for t in load_yaml(PREFLIGHT)], True)


def test_preflight_accepts_both_sources():
    for target in TARGETS:
        assert preflight_passes(variables(target))
        assert preflight_passes(variables(target, rdma_stack_source="doca", **DOCA))


@pytest.mark.parametrize(
    "change",
    [
        {"rdma_stack_source": "mlnx_ofed"},
        {"rdma_stack_source": "doca", **DOCA, "rdma_stack_doca_version": ""},
        {"rdma_stack_source": "doca", **DOCA, "rdma_stack_doca_version": "latest"},
        {"rdma_stack_source": "doca", **DOCA, "rdma_stack_doca_package_revision": ""},
        {"rdma_stack_source": "doca", **DOCA, "rdma_stack_doca_repo_key_fingerprint": ""},
        {"rdma_stack_source": "doca", **DOCA, "rdma_stack_doca_repo_key_fingerprint": "E6D6A281"},
    ],
    ids=["unknown-source", "no-version", "latest", "no-revision", "no-key", "short-key-id"],
)  # fmt: skip
def test_preflight_refuses(change):
    assert not preflight_passes(variables("Ubuntu 22.04", **change))


def test_preflight_refuses_an_unknown_release_unless_a_repository_is_named():
    v = variables("Ubuntu 22.04", rdma_stack_source="doca", **DOCA)
    focal = {**v, "ansible_facts": {**v["ansible_facts"], "distribution_version": "20.04"}}
    assert not preflight_passes(focal)
    assert preflight_passes({**focal, "rdma_stack_doca_repo_url": "https://mirror.example/doca/"})
    # The distribution's stack does not care which release NVIDIA builds for.
    assert preflight_passes(variables("Ubuntu 22.04", ansible_facts=focal["ansible_facts"]))


def test_the_refusals_say_what_to_fix():
    tasks = {t["name"]: t for t in load_yaml(PREFLIGHT)}
    source = tasks["Require a known source of the stack"]["ansible.builtin.assert"]["fail_msg"]
    text = templar(variables("Debian 12", rdma_stack_source="mlnx_ofed")).template(source)
    assert "'mlnx_ofed' is not a source" in text and "distribution" in text and "doca" in text
    block = tasks["DOCA-OFED needs its release, package revision, key and a supported target"]
    version = block["block"][0]["ansible.builtin.assert"]["fail_msg"]
    text = templar(variables("Debian 12", rdma_stack_source="doca")).template(version)
    assert "versions.doca_ofed" in text and "revision" in text


def test_argument_specs_offer_both_sources():
    specs = load_yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert specs["rdma_stack_source"]["choices"] == ["distribution", "doca"]
    assert specs["rdma_stack_source"]["default"] == "distribution"
