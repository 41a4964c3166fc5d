"""Lines of an nccl-tests log: launcher prefixes off, then what each line is.

Launchers and the tools around them put prefixes in front of every line, often
several at once (docs/verify.md lists the shapes): timestamps, `srun --label`
task ids (`  0: `), `-prepend-rank` ids (`[0] `), Open MPI `--tag-output` tags
(`[1,0]<stdout>:`, also in the middle of a line because each write() of a rank
is tagged), `[hostname:pid]`, `kubectl logs --prefix` (`[pod/name/container] `)
and orchestration groups such as `(head, rank=0, pid=4242) `.

Prefixes that name one process (host and pid, a pod, a group with a pid) are
kept as the line's launch key: two launches appending to one file can be told
apart by them. Task ids, MPI tags and timestamps name no launch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_OMPI_TAG = re.compile(r"\[\d+,\d+\]<std(?:out|err)>:")

# Leading prefixes, tried in turn until none matches; a `key` group names a process.
_PREFIXES: tuple[re.Pattern[str], ...] = (
    # ISO 8601 / RFC 3339 (kubectl --timestamps, journald -o short-iso, most loggers),
    # optionally in brackets and with a comma before the fraction (Python logging).
    re.compile(
        r"^\s*\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?:?\s+"
    ),
    # syslog (`Jul 19 10:00:00 `), and the `host program[pid]: ` that follows it.
    re.compile(
        r"^\s*[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)?\s+"
        r"(?:(?P<key>[\w.-]+ [\w./-]+\[\d+\]):\s)?"
    ),
    # Time of day (`[10:00:00.123] `), epoch seconds, dmesg.
    re.compile(r"^\s*\[?\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?\s+"),
    re.compile(r"^\s*\[?\d{9,10}\.\d+\]?\s+"),
    re.compile(r"^\s*\[\s*\d+\.\d{6}\]\s+"),
    # srun --label: the task id, right-aligned.
    re.compile(r"^\s{0,6}\d{1,5}: "),
    # MPICH / Intel MPI -prepend-rank.
    re.compile(r"^\[\d{1,6}\] "),
    # [hostname:pid], kubectl logs --prefix, orchestration groups `(head, rank=0, pid=42) `.
    re.compile(r"^\[(?P<key>[A-Za-z0-9][\w.-]*:\d+)\]:?\s?"),
    re.compile(r"^\[(?P<key>pod/[^\]\s]+)\]\s"),
    re.compile(r"^\((?P<key>[^()]*\bpid=\d+[^()]*)\)\s?"),
)
_MAX_PREFIXES = 12
# First characters any prefix can start with: most lines have none, and skip the patterns.
_PREFIX_START = frozenset("[( \t0123456789ADFJMNOS")


@dataclass(frozen=True)
class Piece:
    """One line of one process, prefixes removed; `key` names its launch if a prefix did."""

    text: str
    key: str | None = None


def _strip_leading(text: str) -> tuple[str, list[str]]:
    """Remove prefixes from the start of a line up to an Open MPI tag (spliced later)."""
    keys: list[str] = []
    for _ in range(_MAX_PREFIXES):
        if not text or text[0] not in _PREFIX_START or _OMPI_TAG.match(text):
            break
        m = next((m for rx in _PREFIXES if (m := rx.match(text))), None)
        if m is None or m.end() == 0:
            break
        if m.groupdict().get("key"):
            keys.append(m.group("key"))
        text = text[m.end() :]
    return text, keys


def _splice(line: str) -> list[str]:
    """Split a line at Open MPI tags: the first tag's parts are one line, the others' their own.

    `[1,0]<stdout>: 8 2 float sum -1[1,0]<stdout>: 85.70` is one row of rank 0, while a
    `[1,3]<stdout>:` part inside it is rank 3's own line.
    """
    if "]<std" not in line:
        return [line]
    tags = list(_OMPI_TAG.finditer(line))
    if not tags:
        return [line]
    head = line[: tags[0].start()]
    first_tag = tags[0].group(0)
    own: list[str] = [head] if head.strip() else []
    others: list[str] = []
    for i, tag in enumerate(tags):
        end = tags[i + 1].start() if i + 1 < len(tags) else len(line)
        segment = line[tag.end() : end]
        (own if tag.group(0) == first_tag else others).append(segment)
    return ["".join(own), *others]


def split_line(raw: str) -> list[Piece]:
    """The pieces of one raw log line, each without its launcher prefixes."""
    text, keys = _strip_leading(raw)
    key = " ".join(keys) or None
    pieces: list[Piece] = []
    for part in _splice(text):
        inner, more = _strip_leading(part)
        pieces.append(Piece(inner, " ".join([*keys, *more]) or key))
    return pieces


class Kind(Enum):
    VERSION = "version"
    STARTING = "starting"
    CONCLUDED = "concluded"
    PARAMS = "params"
    USING_DEVICES = "using_devices"
    DEVICE = "device"
    REDUCING = "reducing"
    TABLE_HEADER = "table_header"
    OUT_OF_BOUNDS = "out_of_bounds"
    AVG = "avg"
    ELISION = "elision"
    WARN = "warn"
    INFO = "info"
    ROW = "row"
    NCCL_VERSION = "nccl_version"
    ERROR = "error"
    OTHER = "other"


_VERSION = re.compile(r"^#\s*nccl-tests version\s+(\S+)(.*)$")
_STARTING = re.compile(r"^#\s*Collective test starting:\s*(\S+)")
_CONCLUDED = re.compile(r"^#\s*Collective test concluded:\s*(\S+)")
_PARAMS = re.compile(r"^#\s*nThread\s+\d+")
_USING_DEVICES = re.compile(r"^#\s*Using devices")
DEVICE = re.compile(
    r"^#\s*Rank\s+(?P<rank>\d+)(?:\s+Group\s+(?P<group>\d+))?\s+Pid\s+(?P<pid>\d+)\s+on\s+"
    r"(?P<host>\S+)\s+device\s+(?P<device>\d+)\s+\[(?P<busid>[^\]]*)\]\s*(?P<model>.*?)\s*$"
)
_REDUCING = re.compile(r"^#\s*Reducing maxBytes to\s+(\d+)")
_TABLE_HEADER = re.compile(r"^#\s*size\s+count\s+type\s+")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)\s*(\S*)")
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(\S+)")
ROW_LIKE = re.compile(r"^\s*(\d+)\s+(\d+)\s+([A-Za-z]\w*)\s+(\S+)")
NCCL_VERSION = re.compile(r"NCCL version\s+(\d+\.\d+\.\d+\S*)")
_NCCL_INFO = re.compile(r"\bNCCL INFO\b")
_NCCL_WARN = re.compile(r"\bNCCL WARN\b")
_ELISION = re.compile(r"^\s*(?:\.\.\.|\[\.\.\.\]|…)\s*$")
# NCCL's own prefix of INFO and WARN lines: host:pid:tid [cudaDev].
NCCL_ORIGIN = re.compile(r"^(?P<host>[^\s:]+):(?P<pid>\d+):\d+ \[")
# nccl-tests' error lines start with the host (and pid): `node-9: Test NCCL failure ...`.
ERROR_ORIGIN = re.compile(r"^(?P<host>[A-Za-z0-9][\w.-]*)(?: pid \d+)?:")
# Lines that report a failure of the test or of a process.
_ERROR_PATTERNS = (
    re.compile(r"Test (?:NCCL|CUDA) failure"),
    re.compile(r"\bTest failure\b"),
    re.compile(r"remote process exited"),
    re.compile(r"\bnccl\w*Error\b"),
    re.compile(r"NCCL error", re.IGNORECASE),
    re.compile(r"mpirun noticed that process"),
    re.compile(r"exited on signal"),
    re.compile(r"^srun: error"),
    re.compile(r"Segmentation fault|Bus error|core dumped"),
    re.compile(r"Primary job\s+terminated normally, but"),
    re.compile(r"^(?:ERROR|Error):"),
)

# Header and summary lines all start with `#`.
_HASH_LINES: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (Kind.DEVICE, DEVICE),
    (Kind.VERSION, _VERSION),
    (Kind.STARTING, _STARTING),
    (Kind.PARAMS, _PARAMS),
    (Kind.CONCLUDED, _CONCLUDED),
    (Kind.USING_DEVICES, _USING_DEVICES),
    (Kind.REDUCING, _REDUCING),
    (Kind.TABLE_HEADER, _TABLE_HEADER),
    (Kind.OUT_OF_BOUNDS, _OOB),
    (Kind.AVG, _AVG),
)


def classify(text: str) -> tuple[Kind, re.Match[str] | None]:
    """What a prefix-free line is, with the match that says so."""
    stripped = text.strip()
    if not stripped:
        return Kind.OTHER, None
    if stripped[0] == "#":
        for kind, rx in _HASH_LINES:
            m = rx.match(stripped)
            if m:
                return kind, m
        return Kind.OTHER, None
    if m := _ELISION.match(stripped):
        return Kind.ELISION, m
    if "NCCL " in stripped:
        if _NCCL_WARN.search(stripped):
            return Kind.WARN, None
        if _NCCL_INFO.search(stripped):
            return Kind.INFO, None
    if m := ROW_LIKE.match(text):
        return Kind.ROW, m
    if m := NCCL_VERSION.search(stripped):
        return Kind.NCCL_VERSION, m
    if any(rx.search(stripped) for rx in _ERROR_PATTERNS):
        return Kind.ERROR, None
    return Kind.OTHER, None
