"""Copy the node-side block of gpufleet.fabric.node into the Ansible module.

Ansible ships library/gpufleet_fabric_facts.py to the node alone, so the module carries the
parsers and checks itself (as library/nvidia_gpu_facts.py does). The block between the
BEGIN/END markers of node.py is the one source; this writes it into the module:

    python -m gpufleet.fabric.embed library/gpufleet_fabric_facts.py           # rewrite
    python -m gpufleet.fabric.embed --check library/gpufleet_fabric_facts.py   # exit 1 if stale

tests/unit/test_fabric_module.py runs the check.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

BEGIN = "# BEGIN gpufleet.fabric.node"
END = "# END gpufleet.fabric.node"
USAGE = "usage: python -m gpufleet.fabric.embed [--check] library/gpufleet_fabric_facts.py"


def node_source() -> str:
    """The text of gpufleet/fabric/node.py, from the installed package."""
    return files("gpufleet.fabric").joinpath("node.py").read_text(encoding="utf-8")


def block(text: str, where: str) -> tuple[int, int]:
    """Start and end offsets of the marked block (markers included) in `text`."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: no '{BEGIN}' ... '{END}' block")
    return start, text.index("\n", end) + 1


def embedded(module_text: str, node_text: str) -> str:
    """module_text with its block replaced by node_text's."""
    s, e = block(node_text, "node.py")
    ms, me = block(module_text, "module")
    return module_text[:ms] + node_text[s:e] + module_text[me:]


def main(argv: list[str]) -> int:
    paths = [a for a in argv if a != "--check"]
    if len(paths) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    module = Path(paths[0])
    module_text = module.read_text(encoding="utf-8")
    new = embedded(module_text, node_source())
    if "--check" in argv:
        if new != module_text:
            print(f"{module}: its node-side block differs from gpufleet/fabric/node.py; run")
            print(f"python -m gpufleet.fabric.embed {module}")
            return 1
        return 0
    if new != module_text:
        module.write_text(new, encoding="utf-8")
        print(f"updated {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
