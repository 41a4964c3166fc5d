"""Reading cluster.yaml: site resolution, strict YAML (no duplicate keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpufleet.errors import Problem, UserError

SPEC_FILE = "cluster.yaml"
INVENTORIES = Path("inventories")

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc]  # a base chosen at import time
    """SafeLoader that records duplicate mapping keys instead of keeping the last one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[Problem] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as key: the schema reports it
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(
                    Problem(
                        f"line {line}",
                        f"duplicate key '{key}' (first at line {seen[key]})",
                        "remove one of them: YAML would silently keep the last",
                    )
                )
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def parse_yaml(text: str, source: str = "") -> Any:
    """Parse YAML text; raise UserError for syntax errors and duplicate keys."""
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(
            [Problem(where, f"YAML syntax error: {err.problem}", "fix the indentation or quoting")],
            title=f"{source}: not valid YAML" if source else "not valid YAML",
        ) from None
    except yaml.YAMLError as err:
        raise UserError([Problem("", f"YAML error: {err}")], title=source) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise UserError(loader.duplicates, title=f"{source}: duplicate keys" if source else "")
    return data


def resolve_spec_path(site_or_path: str | Path, root: Path | None = None) -> Path:
    """Map `inventories/example-ib`, `example-ib` or a path to cluster.yaml to the file."""
    raw = Path(site_or_path)
    base = root or Path.cwd()
    candidates = [raw, raw / SPEC_FILE]
    if not raw.is_absolute():
        candidates += [base / raw, base / raw / SPEC_FILE, base / INVENTORIES / raw / SPEC_FILE]
    for cand in candidates:
        if cand.is_file():
            return cand
    sites = sorted(p.parent.name for p in (base / INVENTORIES).glob(f"*/{SPEC_FILE}"))
    hint = f"known sites: {', '.join(sites)}" if sites else "give the path to a cluster.yaml"
    raise UserError([Problem(str(site_or_path), "no cluster.yaml found there", hint)])


def read_spec_data(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError([Problem(str(path), f"cannot read: {err.strerror}")]) from None
    except UnicodeDecodeError:
        raise UserError([Problem(str(path), "not UTF-8 text", "save the file as UTF-8")]) from None
    return parse_yaml(text, str(path))
