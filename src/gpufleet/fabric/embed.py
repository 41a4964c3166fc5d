"""Copy the node-side block of gpufleet.fabric.node into the Ansible module.

Ansible ships library/gpufleet_fabric_facts.py to the node alone, so the module carries the
parsers and checks itself (as library/nvidia_gpu_facts.py does). The block between the
BEGIN/END markers of node.py is the one source; this writes it into the module:

    python -m gpufleet.fabric.embed            # rewrite the module's block
    python -m gpufleet.fabric.embed --check    # exit 1 when they differ

tests/unit/test_fabric_module.py runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path

BEGIN = "# BEGIN gpufleet.fabric.node"
END = "# END gpufleet.fabric.node"
NODE = Path(__file__).with_name("node.py")
MODULE = Path(__file__).resolve().parents[3] / "library" / "gpufleet_fabric_facts.py"


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
    node_text = NODE.read_text()
    module_text = MODULE.read_text()
    new = embedded(module_text, node_text)
    if "--check" in argv:
        if new != module_text:
            print(
                f"{MODULE}: node-side block differs from {NODE};"
                " run python -m gpufleet.fabric.embed"
            )
            return 1
        return 0
    if new != module_text:
        MODULE.write_text(new)
        print(f"updated {MODULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
