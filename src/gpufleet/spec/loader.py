"""Reading cluster.yaml: site resolution, and YAML that is strict and cheap to refuse.

Strict: a duplicate mapping key is an error (YAML would silently keep the
last one). Cheap: a hostile or broken file costs little before any model is
built. The file's size is checked before it is read, bytes that are not UTF-8
are named by their offset, a tab used for indentation is named as such, and
the composed document is measured before it is turned into Python values: its
nesting depth, and the number of values it stands for once every alias is
expanded (an alias bomb: a few lines whose aliases expand to billions of
values). `nodes:` may hold at most MAX_NODES entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpufleet.errors import Problem, UserError

SPEC_FILE = "cluster.yaml"
INVENTORIES = Path("inventories")

# Limits, far above any real site (a 4,096-GPU-node spec is about 0.7 MB, 60,000
# values, 6 levels deep) and far below what would take seconds to refuse.
MAX_BYTES = 32 * 2**20
MAX_DEPTH = 32
MAX_VALUES = 2_000_000  # scalars and collections, aliases expanded
MAX_NODES = 20_000

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Refused(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _measure(root: yaml.Node) -> None:
    """Refuse documents nested deeper than MAX_DEPTH or standing for more than
    MAX_VALUES values once aliases are expanded; a node that contains itself too.

    Each distinct node is visited once (an alias is the same node again), so
    this is linear in the size of the text, whatever the aliases expand to.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        kids = _children(node)
        if not done:
            open_.add(key)
            stack.append((node, True))
            for kid in kids:
                if id(kid) in open_:
                    raise _Refused(
                        Problem(
                            _where(kid.start_mark),
                            "a YAML alias refers to a node that contains it (a recursive alias)",
                            "write the values out instead of the alias",
                        )
                    )
                if id(kid) not in size:
                    stack.append((kid, False))
            continue
        open_.discard(key)
        total = 1 + sum(size[id(k)] for k in kids)
        deepest = 1 + max((depth[id(k)] for k in kids), default=0)
        if total > MAX_VALUES:
            raise _Refused(
                Problem(
                    _where(node.start_mark),
                    f"its YAML aliases expand to more than {MAX_VALUES:,} values (an alias bomb?)",
                    "write the values out; a cluster spec needs few aliases, if any",
                )
            )
        if deepest > MAX_DEPTH:
            raise _Refused(_too_deep(node))
        size[key] = total
        depth[key] = deepest


def _too_deep(node: yaml.Node | None) -> Problem:
    return Problem(
        _where(node.start_mark) if node is not None else "",
        f"the document is nested more than {MAX_DEPTH} levels deep",
        "a cluster spec is about 6 levels deep: check the indentation",
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Builder:
    """Python values from the composed document: strings and plain collections
    directly, anything else (numbers, booleans, null, merge keys, explicit tags)
    through the safe constructor, so the values are those yaml.safe_load gives.
    Duplicate keys are recorded with their lines."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.built: dict[int, Any] = {}  # aliases share one value, as in PyYAML
        self.duplicates: list[Problem] = []

    def build(self, node: yaml.Node, level: int = 1) -> Any:
        if level > MAX_DEPTH:
            raise _Refused(_too_deep(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return node.value
            return self.loader.construct_object(node, deep=True)
        done = self.built.get(id(node))
        if done is not None:
            return done
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            items: list[Any] = []
            self.built[id(node)] = items
            items.extend(self.build(n, level + 1) for n in node.value)
            return items
        if (
            isinstance(node, yaml.MappingNode)
            and node.tag == _MAP
            and not any(k.tag == _MERGE for k, _ in node.value)
        ):
            mapping: dict[Any, Any] = {}
            self.built[id(node)] = mapping
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, level + 1)
                try:
                    hash(key)
                except TypeError:
                    raise _Refused(
                        Problem(
                            _where(key_node.start_mark),
                            "a list or mapping is used as a key",
                            "keys are names: fix the indentation",
                        )
                    ) from None
                line = key_node.start_mark.line + 1
                if key in first:
                    self.duplicates.append(
                        Problem(
                            f"line {line}",
                            f"duplicate key '{key}' (first at line {first[key]})",
                            "remove one of them: YAML would silently keep the last",
                        )
                    )
                else:
                    first[key] = line
                mapping[key] = self.build(value_node, level + 1)
            return mapping
        value = self.loader.construct_object(node, deep=True)
        self.built[id(node)] = value
        return value


def _syntax_problem(err: yaml.MarkedYAMLError, text: str) -> Problem:
    mark = err.problem_mark
    where = _where(mark)
    problem = str(err.problem or err)
    at_tab = mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t"
    if mark is not None and (at_tab or "'\\t'" in problem):
        offset = len(text[: mark.index].encode())
        return Problem(
            f"{where} (byte {offset})",
            "a tab character: YAML does not allow tabs for indentation",
            "indent with spaces",
        )
    if "maximum nesting depth" in problem:
        return _too_deep(None)
    return Problem(where, f"YAML syntax error: {problem}", "fix the indentation or quoting")


class _Fallback(Exception):
    """A construct the event builder leaves to PyYAML's composer (merge keys, tags)."""


class _Frame:
    __slots__ = ("anchor", "first", "key", "keyed", "size", "value")

    def __init__(self, value: dict[Any, Any] | list[Any], anchor: str | None) -> None:
        self.value = value
        self.anchor = anchor
        self.size = 1  # values this collection stands for, aliases expanded
        self.key: Any = None
        self.keyed = False  # a mapping frame holds a key waiting for its value
        self.first: dict[Any, int] = {}


def _from_events(loader: Any, text: str) -> tuple[Any, list[Problem]]:
    """Python values straight from the parser's events, as yaml.safe_load gives them.

    No node graph is built (composing one costs five times the parse), and the
    limits are checked as the events stream in: depth, values after alias
    expansion (a bomb is refused at the alias that crosses the limit), recursive
    and undefined aliases. Raises _Fallback for merge keys and tagged collections.
    """
    anchors: dict[str, tuple[Any, int]] = {}  # name -> (value, values it stands for)
    open_anchors: set[str] = set()
    stack: list[_Frame] = []
    duplicates: list[Problem] = []
    total = 0
    root: Any = None
    seen_document = False
    resolved: dict[tuple[str, bool], str] = {}

    def place(value: Any, size: int, event: Any) -> None:
        nonlocal total, root
        total += size
        if total > MAX_VALUES:
            raise _Refused(
                Problem(
                    _where(event.start_mark),
                    f"its YAML aliases expand to more than {MAX_VALUES:,} values (an alias bomb?)",
                    "write the values out; a cluster spec needs few aliases, if any",
                )
            )
        if not stack:
            root = value
            return
        frame = stack[-1]
        frame.size += size
        container = frame.value
        if isinstance(container, list):
            container.append(value)
        elif not frame.keyed:
            try:
                hash(value)
            except TypeError:
                raise _Refused(
                    Problem(
                        _where(event.start_mark),
                        "a list or mapping is used as a key",
                        "keys are names: fix the indentation",
                    )
                ) from None
            line = event.start_mark.line + 1
            if value in frame.first:
                duplicates.append(
                    Problem(
                        f"line {line}",
                        f"duplicate key '{value}' (first at line {frame.first[value]})",
                        "remove one of them: YAML would silently keep the last",
                    )
                )
            else:
                frame.first[value] = line
            frame.key, frame.keyed = value, True
        else:
            container[frame.key] = value
            frame.keyed = False

    get_event = loader.get_event
    scalar, alias = yaml.ScalarEvent, yaml.AliasEvent
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar:
            tag = event.tag
            if tag is None or tag == "!":
                if event.implicit[0]:
                    key = (event.value, bool(event.implicit[1]))
                    tag = resolved.get(key)
                    if tag is None:
                        tag = resolved[key] = loader.resolve(
                            yaml.ScalarNode, event.value, event.implicit
                        )
                else:
                    tag = _STR
            if tag == _STR:
                value: Any = event.value
            elif tag == _MERGE:
                raise _Fallback
            else:
                # libyaml's marks are another class than PyYAML's; both carry line and column.
                start: Any = event.start_mark
                end: Any = event.end_mark
                node = yaml.ScalarNode(tag, event.value, start, end, event.style)
                value = loader.construct_object(node, deep=True)
            if event.anchor is not None:
                anchors[event.anchor] = (value, 1)
            place(value, 1, event)
        elif kind in starts:
            is_map = kind is yaml.MappingStartEvent
            if event.tag not in (None, "!", _MAP if is_map else _SEQ):
                raise _Fallback
            if len(stack) >= MAX_DEPTH:
                raise _Refused(
                    Problem(
                        _where(event.start_mark),
                        f"the document is nested more than {MAX_DEPTH} levels deep",
                        "a cluster spec is about 6 levels deep: check the indentation",
                    )
                )
            container: dict[Any, Any] | list[Any] = {} if is_map else []
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            stack.append(_Frame(container, event.anchor))
        elif kind in ends:
            frame = stack.pop()
            if frame.anchor is not None:
                open_anchors.discard(frame.anchor)
                anchors[frame.anchor] = (frame.value, frame.size)
            total -= frame.size - 1  # counted again as a whole by place()
            place(frame.value, frame.size, event)
        elif kind is alias:
            if event.anchor in open_anchors:
                raise _Refused(
                    Problem(
                        _where(event.start_mark),
                        "a YAML alias refers to a node that contains it (a recursive alias)",
                        "write the values out instead of the alias",
                    )
                )
            if event.anchor not in anchors:
                raise _Refused(
                    Problem(
                        _where(event.start_mark),
                        f"alias *{event.anchor} names no anchor (&{event.anchor}) before it",
                        "define the anchor first or write the value out",
                    )
                )
            value, size = anchors[event.anchor]
            place(value, size, event)
        elif kind is yaml.DocumentStartEvent:
            if seen_document:
                raise _Refused(
                    Problem(
                        _where(event.start_mark),
                        "a second YAML document (---) in the file",
                        "keep one document per cluster.yaml",
                    )
                )
            seen_document = True
        elif kind is yaml.StreamEndEvent:
            return root, duplicates


def parse_yaml(text: str, source: str = "") -> Any:
    """Parse YAML text; raise UserError for syntax errors, duplicate keys and hostile shapes."""
    title = f"{source}: not valid YAML" if source else "not valid YAML"
    loader = _BaseLoader(text)
    try:
        try:
            data, duplicates = _from_events(loader, text)
        except _Fallback:
            loader.dispose()
            loader = _BaseLoader(text)
            data, duplicates = _from_nodes(loader, text)
    except _Refused as refused:
        raise UserError([refused.problem], title=title) from None
    except yaml.MarkedYAMLError as err:
        raise UserError([_syntax_problem(err, text)], title=title) from None
    except yaml.YAMLError as err:
        raise UserError([Problem("", f"YAML error: {err}")], title=title) from None
    finally:
        loader.dispose()
    if duplicates:
        raise UserError(duplicates, title=f"{source}: duplicate keys" if source else "")
    return data


def _from_nodes(loader: Any, text: str) -> tuple[Any, list[Problem]]:
    """The composer's way, for merge keys and tagged collections: measure, then build."""
    node = loader.get_single_node()
    if node is None:
        return None, []
    _measure(node)
    builder = _Builder(loader)
    return builder.build(node), builder.duplicates


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


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end].hex(" ")
        raise UserError(
            [
                Problem(
                    f"line {line}, column {column} (byte {err.start})",
                    f"bytes {bad} are not UTF-8 text",
                    "save the file as UTF-8",
                )
            ],
            title=f"{source}: not UTF-8",
        ) from None


def read_spec_data(path: Path) -> Any:
    """The parsed YAML of a cluster.yaml, refused early when hostile (module docstring)."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(
                [
                    Problem(
                        source,
                        f"{size:,} bytes, more than the {MAX_BYTES:,} a cluster spec may have",
                        "check that this is the cluster spec",
                    )
                ]
            )
        raw = path.read_bytes()
    except OSError as err:
        raise UserError([Problem(source, f"cannot read: {err.strerror}")]) from None
    data = parse_yaml(_decode(raw, source), source)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if isinstance(nodes, list) and len(nodes) > MAX_NODES:
        raise UserError(
            [
                Problem(
                    "nodes",
                    f"{len(nodes):,} nodes, more than the {MAX_NODES:,} one spec may hold",
                    "split the site into several specs",
                )
            ],
            title=f"{source}: invalid cluster spec",
        )
    return data
