"""gpufleet's controller plugin (plugins/callback/gpufleet_controller.py): compiled templates
cached on disk give the same results as Jinja compiling them, and stop being used when a
filter they call changes how it is called. Each run is its own process
(tests/unit/jinja_cache_probe.py); the cases are constructed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("jinja_cache_probe.py")
REPO = Path(__file__).resolve().parents[2]

CASES = [
    ("template", "{{ nodes | select('match', 'gpu') | list }}"),
    (
        "template",
        "{{ nodes | map('extract', hostvars) | selectattr('addr', 'defined') | list | length }}",
    ),
    ("template", "{{ rails | map(attribute='mtu') | max }} {{ site | upper }}"),
    ("template", "{{ 'site_name' | regex_replace('^(.*)_name$', '\\\\1') }}"),
    ("template", "{{ path }} and {{ 'a\\\\b' }}"),
    (
        "template",
        "#jinja2:variable_start_string:'[%',variable_end_string:'%]'\n[% site %] {{ site }}",
    ),
    ("template", "{% for r in rails %}{{ r.name }}={{ r.mtu }};{% endfor %}"),
    ("template", "{% raw %}{{ not rendered }}{% endraw %}"),
    ("template", "{{ nodes | to_json }} {{ {'a': 1} | combine({'b': 2}) | dict2items | length }}"),
    ("expression", "rails | selectattr('mtu', 'gt', 5000) | map(attribute='name') | first"),
    ("expression", "nodes | length * 2"),
    ("conditional", "site == 'lab' and 'gpu1' in nodes"),
    ("conditional", "missing_variable is defined"),
    ("template", "{{ site | no_such_filter }}"),
    ("template", "{{ site "),
    # The same text as case 3, compiled without escaping backslashes: other code, other result.
    ("template-no-escape", "{{ 'site_name' | regex_replace('^(.*)_name$', '\\\\1') }}"),
]


def _probe(env: dict[str, str], cases=CASES) -> dict:
    proc = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(cases)],
        env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture
def cache_env(tmp_path):
    return {"GPUFLEET_JINJA_CACHE_DIR": str(tmp_path / "code"), "GPUFLEET_JINJA_CACHE": "on"}


def test_cached_code_renders_what_jinja_renders(cache_env, tmp_path):
    plain = _probe({**cache_env, "GPUFLEET_JINJA_CACHE": "off"})
    cold = _probe(cache_env)
    warm = _probe(cache_env)

    assert cold["results"] == plain["results"]
    assert warm["results"] == plain["results"]
    # The constructed cases really exercise something: values, a failed conditional, and
    # the errors of an unknown filter and of a syntax error.
    results = plain["results"]
    assert results[0] == {"value": ["gpu1", "gpu2"]}
    assert results[3] == {"value": "\\1"}
    assert results[15] == {"value": "site"}
    assert results[5]["value"] == "lab {{ site }}"
    assert results[12] == {"value": False}
    assert "no_such_filter" in results[13]["error"]
    assert "error" in results[14]

    assert not Path(cache_env["GPUFLEET_JINJA_CACHE_DIR"]).joinpath("x").exists()
    entries = list(Path(cache_env["GPUFLEET_JINJA_CACHE_DIR"]).iterdir())
    assert len(entries) >= 10
    assert cold["generated"] >= len(entries)
    # The warm run compiled only what failed to compile (nothing failed is cached).
    assert warm["generated"] <= 2, warm


def test_an_entry_is_compiled_again_when_its_filter_is_called_differently(cache_env, tmp_path):
    plugins = tmp_path / "filter_plugins"
    plugins.mkdir()
    shout = plugins / "shout.py"
    env = {**cache_env, "ANSIBLE_FILTER_PLUGINS": str(plugins)}
    cases = [("template", "{{ site | shout }}")]

    shout.write_text(
        "class FilterModule:\n"
        "    def filters(self):\n"
        "        return {'shout': lambda value: value.upper() + '!'}\n"
    )
    assert _probe(env, cases)["results"] == [{"value": "LAB!"}]

    # The same filter now takes Jinja's context first: code generated for the old one would
    # call it without the context and fail.
    shout.write_text(
        "from jinja2 import pass_context\n"
        "@pass_context\n"
        "def shout(context, value):\n"
        "    return value.upper() + '?' + str(context.get('site'))\n"
        "class FilterModule:\n"
        "    def filters(self):\n"
        "        return {'shout': shout}\n"
    )
    again = _probe(env, cases)
    assert again["results"] == [{"value": "LAB?lab"}]
    assert again["generated"] == 1


def test_ansible_runner_runs_load_the_plugin(cache_env, tmp_path, monkeypatch):
    """`gpufleet lab converge` runs site.yml through ansible-runner, whose own callback variable
    hid ansible.cfg's callback_plugins: with runner_env the plugin loads and fills its cache."""
    import ansible_runner

    from gpufleet.lab.converge import runner_env

    for name, value in cache_env.items():
        monkeypatch.setenv(name, value)
    # ansible-playbook of this interpreter's environment (the venv), as `make lab` runs it
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ ['a', 'b'] | map('upper') | join(',') }}\"\n"
    )
    repo = Path(__file__).resolve().parents[2]
    result = ansible_runner.run(
        private_data_dir=str(tmp_path), playbook=str(playbook),
        envvars={**runner_env(repo), "ANSIBLE_STRATEGY": "linear"}, quiet=True,
    )  # fmt: skip
    assert result.rc == 0
    assert any("A,B" in str(e.get("event_data", {}).get("res")) for e in result.events)
    assert list(Path(cache_env["GPUFLEET_JINJA_CACHE_DIR"]).iterdir())


MITOGEN_PROBE = """
import importlib.util, json, sys
import ansible.collections.list
import ansible_mitogen.planner as planner
from ansible.plugins.loader import init_plugin_loader

init_plugin_loader()  # the collection finder, as ansible-playbook installs it
listings = []
list_dirs = ansible.collections.list.list_collection_dirs
def counted(*args, **kwargs):
    listings.append(1)
    return list_dirs(*args, **kwargs)

ansible.collections.list.list_collection_dirs = counted

class Invocation:
    def __init__(self):
        self._extra_sys_paths = set()

mitogens_own = Invocation()
planner._load_collections(mitogens_own)
spec = importlib.util.spec_from_file_location("gpufleet_controller", sys.argv[1])
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)
plugin._share_mitogen_collection_dirs()
first, second = Invocation(), Invocation()
planner._load_collections(first)
planner._load_collections(second)
print(json.dumps({"listings": len(listings), "own": sorted(mitogens_own._extra_sys_paths),
                  "first": sorted(first._extra_sys_paths),
                  "second": sorted(second._extra_sys_paths)}))
"""


def test_mitogen_gets_the_collections_listed_once(cache_env):
    """Mitogen lists every installed collection for each worker's first collection module; the
    plugin lists them once (in the controller, before the forks) and gives every invocation
    the same folders Mitogen's own listing gives."""
    plugin = REPO / "plugins/callback/gpufleet_controller.py"
    proc = subprocess.run(
        [sys.executable, "-c", MITOGEN_PROBE, str(plugin)],
        env={**os.environ, **cache_env}, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["own"], "the venv's ansible package installs collections"
    assert found["first"] == found["second"] == found["own"]
    assert found["listings"] == 2  # Mitogen's own call, then the plugin's one for both


def test_the_cache_can_be_switched_off(cache_env):
    _probe({**cache_env, "GPUFLEET_JINJA_CACHE": "off"})
    assert not Path(cache_env["GPUFLEET_JINJA_CACHE_DIR"]).exists()


# Host-tasks run in the controller: a constructed play on two local hosts. The filter `where`
# notes the process that evaluates each expression (a worker's parent is the controller).
WHERE = """
import os
def where(value, path):
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {os.getppid()}\\n")
    return value
def slowly(value):
    __import__("time").sleep(0.2)
    return value
class FilterModule:
    def filters(self):
        return {"where": where, "slowly": slowly}
"""
PLAY = """
- hosts: a,b
  gather_facts: false
  connection: local
  vars: {flag: false, notes: NOTES}
  tasks:
    - name: Skipped everywhere, registered
      ansible.builtin.command: echo never
      when: flag | where(notes)
      register: skipped
    - name: Skipped with no_log
      ansible.builtin.command: echo secret
      when: flag
      no_log: true
      register: quiet
    - name: Skipped include
      ansible.builtin.include_tasks: absent.yml
      when: flag
    - name: Runs on b only
      ansible.builtin.set_fact:
        ran: "{{ inventory_hostname | where(notes) }}"
      when: inventory_hostname == 'b'
    - name: Included
      ansible.builtin.include_tasks: included.yml
    - name: An assert that fails on a, rescued
      block:
        - name: Require b
          ansible.builtin.assert:
            that: inventory_hostname | where(notes) == 'b'
            fail_msg: "{{ inventory_hostname }} is not b"
      rescue:
        - name: Keep the failure
          ansible.builtin.set_fact:
            failure: "{{ ansible_failed_result.msg }}"
    - name: Show a variable
      ansible.builtin.debug:
        var: included_fact
    - name: A slow set_fact, given to workers after its first host
      ansible.builtin.set_fact:
        slow: "{{ inventory_hostname | slowly | where(notes ~ '.slow') }}"
    - name: What the tasks registered
      ansible.builtin.copy:
        content: >-
          {{ {'skipped': skipped, 'quiet': quiet, 'ran': ran | default(false),
              'included': included_fact, 'failure': failure | default('')} | to_json }}
        dest: "{{ notes }}-{{ inventory_hostname }}.json"
        mode: "0644"
    - name: An undefined variable in a conditional fails as before
      ansible.builtin.debug:
        msg: never
      when: no_such_variable
"""
INCLUDED = """
- name: Set a fact from an included file
  ansible.builtin.set_fact:
    included_fact: "{{ inventory_hostname | upper }}"
"""


def _play(tmp_path: Path, mode: str, strategy: str) -> tuple[subprocess.Popen, str, Path]:
    folder = tmp_path / f"{mode}-{strategy}"
    (folder / "filter").mkdir(parents=True)
    (folder / "filter" / "where.py").write_text(WHERE)
    notes = folder / "notes"
    (folder / "play.yml").write_text(PLAY.replace("NOTES", str(notes)))
    (folder / "included.yml").write_text(INCLUDED)
    python = sys.executable
    (folder / "hosts").write_text(f"a ansible_python_interpreter={python}\n"
                                  f"b ansible_python_interpreter={python}\n")  # fmt: skip
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "GPUFLEET_CONTROLLER_TASKS": mode, "ANSIBLE_STRATEGY": strategy,
           "ANSIBLE_FILTER_PLUGINS": str(folder / "filter"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "plugins/callback"),
           "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(folder / "facts")}  # fmt: skip
    ansible = str(Path(python).with_name("ansible-playbook"))
    proc = subprocess.Popen([ansible, "-i", str(folder / "hosts"), str(folder / "play.yml")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    out, _ = proc.communicate(timeout=180)
    return proc, out, notes


@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_tasks_that_need_no_node_run_in_the_controller_with_the_workers_result(tmp_path, strategy):
    results = {}
    for mode in ("off", "on"):
        proc, out, notes_path = _play(tmp_path, mode, strategy)
        notes = notes_path.read_text().splitlines()
        assert proc.returncode == 2 and "'no_such_variable' is undefined" in out, out[-3000:]
        assert "fatal: [a]" in out and "fatal: [b]" in out, out[-3000:]
        recap = [line.split(":", 1)[1].split() for line in out.splitlines()
                 if line.startswith(("a   ", "b   "))]  # fmt: skip
        assert recap == [
            [
                "ok=6",
                "changed=1",
                "unreachable=0",
                "failed=1",
                "skipped=4",
                "rescued=1",
                "ignored=0",
            ],
            [
                "ok=7",
                "changed=1",
                "unreachable=0",
                "failed=1",
                "skipped=3",
                "rescued=0",
                "ignored=0",
            ],
        ], out
        assert '"included_fact": "A"' in out and '"included_fact": "B"' in out, out
        # Who evaluated the conditional, set_fact and assert: workers (their parent is
        # ansible-playbook), or ansible-playbook itself.
        evaluated_by = {"worker" if f" {proc.pid}" in n else "controller" if n.startswith(
            f"{proc.pid} ") else n for n in notes}  # fmt: skip
        assert evaluated_by == {"worker" if mode == "off" else "controller"}, (notes, proc.pid)
        slow = Path(f"{notes_path}.slow").read_text().splitlines()
        slow_by = ["worker" if f" {proc.pid}" in n else "controller" for n in slow]
        assert slow_by == (["worker"] * 2 if mode == "off" else ["controller", "worker"]), slow
        results[mode] = [json.loads(Path(f"{notes_path}-{h}.json").read_text()) for h in "ab"]
    assert results["on"] == results["off"]
    assert results["on"][0]["skipped"] == {
        "changed": False,
        "false_condition": "flag | where(notes)",
        "skip_reason": "Conditional result was False",
        "skipped": True,
    }
    assert [r["ran"] for r in results["on"]] == [False, "b"]
    assert [r["included"] for r in results["on"]] == ["A", "B"]
    assert [r["failure"] for r in results["on"]] == ["a is not b", ""]
