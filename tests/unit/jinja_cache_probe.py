"""Renders templates and expressions through ansible-core's Templar with gpufleet's controller
plugin loaded (plugins/callback/gpufleet_controller.py), in its own process: the plugin changes
ansible's template engine for the whole process. Prints one JSON document: each case's result
(or error) and how many templates Jinja generated Python code for."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jinja2.compiler
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]

generated = 0
_generate = jinja2.compiler.generate


def _counting_generate(*args, **kwargs):
    global generated
    generated += 1
    return _generate(*args, **kwargs)


jinja2.compiler.generate = _counting_generate
jinja2.environment.generate = _counting_generate

spec = importlib.util.spec_from_file_location(
    "gpufleet_controller", REPO / "plugins/callback/gpufleet_controller.py"
)
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)

VARIABLES = {
    "nodes": ["gpu1", "gpu2", "head1"],
    "rails": [{"name": "rail0", "mtu": 4200}, {"name": "rail1", "mtu": 9000}],
    "hostvars": {"gpu1": {"addr": "10.0.0.1"}, "gpu2": {"addr": "10.0.0.2"}},
    "site": "lab",
    "path": "C:\\new",
}


def main() -> None:
    cases = json.loads(sys.argv[1])
    templar = Templar(loader=DataLoader(), variables=VARIABLES)
    out = []
    for kind, text in cases:
        try:
            if kind == "template":
                value = templar.template(trust_as_template(text))
            elif kind == "template-no-escape":
                value = templar.template(trust_as_template(text), escape_backslashes=False)
            elif kind == "expression":
                value = templar.evaluate_expression(trust_as_template(text))
            else:
                value = templar.evaluate_conditional(trust_as_template(text))
            out.append({"value": value})
        except Exception as ex:  # the error is part of what the cases compare
            out.append({"error": type(ex).__name__ + ": " + str(ex).splitlines()[0]})
    print(json.dumps({"results": out, "generated": generated}, default=str))


if __name__ == "__main__":
    main()
