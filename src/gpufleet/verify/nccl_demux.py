"""Which run each line of an nccl-tests log belongs to.

A file may hold several runs: one after the other (a script running each
collective in turn, two jobs appending in turn) or interleaved (two launches
writing at the same time). Each line goes to one run by these signs, strongest
first:

1. its launch key, a prefix naming the process (`[host:pid]`, a pod, a group);
2. the shape of a run: version line, test name, parameters, the device list
   (ranks in order), the column header, rows of growing size, the summary and
   the "concluded" line naming the binary;
3. for NCCL INFO/WARN and error lines, the host and pid they name, matched
   against the device lists.

Rows are the hard part: rows of two runs with the same sizes, type and op and
no launch key cannot be told apart. Such a row goes to the run that has waited
longest for it, unless the other run has been silent since the newer one
started (a run killed mid-table, then a rerun appended), and both runs record
the size as ambiguous when both went on afterwards, so the judge can say so
instead of guessing. A test's header (version line to column header) is written
by rank 0 in one burst before any communication; without a launch key, two
headers that overlap line by line cannot be separated (docs/verify.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from gpufleet.verify.nccl_lines import (
    ERROR_ORIGIN,
    NCCL_ORIGIN,
    NCCL_VERSION,
    Kind,
    Piece,
)
from gpufleet.verify.nccl_model import (
    NOTABLE_INFO,
    ROUNDED_COLLECTIVES,
    Device,
    LogLine,
    NcclLog,
    NcclParseError,
    NcclRun,
    SizeRow,
    collective_from_binary,
    parse_columns,
    parse_params,
    parse_row,
    row_ranks_of,
    size_slack,
)


class Phase(IntEnum):
    HEAD = 0  # version or test name seen
    PARAMS = 1  # `# nThread ...` seen
    DEVICES = 2  # device list begun
    TABLE = 3  # column header seen, rows coming
    SUMMARY = 4  # out-of-bounds / average lines seen
    DONE = 5  # "Collective test concluded"


_ACTIVE = (Phase.PARAMS, Phase.DEVICES, Phase.TABLE)


@dataclass(eq=False)
class _Slot:
    """A run being assembled, with what the assignment rules need to know about it."""

    run: NcclRun
    # The piece of the log that began it: the same run in every hypothesis (see `fork`).
    ident: int
    created: int
    phase: Phase = Phase.HEAD
    keys: set[str] = field(default_factory=set)
    using_devices: bool = False
    touched: int = 0  # clock of its last structural line
    row_touched: int = 0  # clock of its last row
    # Requested sizes its table has a row for, per (type, op) series.
    filled: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def copy(self) -> _Slot:
        return replace(
            self,
            run=_copy_run(self.run),
            keys=set(self.keys),
            filled={series: set(sizes) for series, sizes in self.filled.items()},
        )


def _copy_run(run: NcclRun) -> NcclRun:
    return replace(
        run,
        devices=list(run.devices),
        rows=list(run.rows),
        errors=list(run.errors),
        warnings=list(run.warnings),
        info=list(run.info),
        notes=list(run.notes),
        ambiguous_sizes=list(run.ambiguous_sizes),
        interleaved_with=list(run.interleaved_with),
    )


@dataclass(frozen=True)
class Placed:
    """A row given to a run, linked to the rows placed before it; hypotheses share the
    part of this chain they have in common."""

    number: int  # the row's piece of the log, counted from 1 (same in every hypothesis)
    run: int  # ident of the run it went to
    size: int
    content: SizeRow  # line number 0: rows of two runs compare by what they measured
    before: Placed | None


@dataclass(frozen=True)
class RowChoice:
    """A run a row may belong to, and what placing it there costs (`_row_cost`)."""

    slot: int  # index in Demux.slots
    cost: int
    head: _RowHead


@dataclass(frozen=True)
class _RowHead:
    """The cells of a row that tell runs apart, read before the row is placed."""

    size: int
    count: int
    dtype: str
    redop: str
    bus_factor: float | None  # busbw / algbw: set by the collective and the rank count

    @classmethod
    def read(cls, m: re.Match[str]) -> _RowHead:
        tokens = m.string.split()
        fixed = 5 if len(tokens) in (9, 13) else 4
        factor = None
        try:
            algbw, busbw = float(tokens[fixed + 1]), float(tokens[fixed + 2])
            # Two decimals: below 1 GB/s the ratio is too coarse to mean anything.
            factor = busbw / algbw if algbw >= 1.0 else None
        except (IndexError, ValueError, OverflowError):
            pass
        return cls(int(m.group(1)), int(m.group(2)), m.group(3), m.group(4), factor)


class Demux:
    """One hypothesis of which run each line belongs to: feeds lines to runs, offers the
    runs a row could belong to (`row_choices`) and can be forked to follow several of
    them (see `gpufleet.verify.nccl_search`); `finish()` returns the log."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.log = NcclLog(source=source, runs=[])
        self.slots: list[_Slot] = []
        self.clock = 0
        self.recognised = 0
        self.pending: dict[tuple[str, int], list[tuple[Kind, LogLine]]] = {}
        self.orphan_version: str | None = None
        self.processes: dict[tuple[str, int], list[_Slot]] = {}
        self.piece = 0  # the piece of the log being read, counted from 1
        # What the rows placed so far cost (`_row_cost`), the last of them, and the rows
        # an equally good hypothesis placed elsewhere: (run ident, size, other run ident).
        self.cost = 0
        self.placed: Placed | None = None
        self.marks: frozenset[tuple[int, int, int]] = frozenset()

    def fork(self) -> Demux:
        """An independent copy, to follow another placement of a row."""
        twin = Demux(self.source)
        copies = {id(slot): slot.copy() for slot in self.slots}
        twin.log = replace(
            self.log, runs=[], notes=list(self.log.notes), errors=list(self.log.errors)
        )
        twin.slots = [copies[id(slot)] for slot in self.slots]
        twin.clock, twin.recognised, twin.piece = self.clock, self.recognised, self.piece
        twin.pending = {proc: list(lines) for proc, lines in self.pending.items()}
        twin.orphan_version = self.orphan_version
        twin.processes = {
            proc: [copies[id(slot)] for slot in slots] for proc, slots in self.processes.items()
        }
        twin.cost, twin.placed, twin.marks = self.cost, self.placed, self.marks
        return twin

    # ------------------------------------------------------------ feeding

    def feed(
        self, number: int, lineno: int, piece: Piece, kind: Kind, match: re.Match[str] | None
    ) -> None:
        """Read one piece (`number` counts pieces from 1) that is not a size row."""
        self.piece = number
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, lineno, piece, match)

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _new(self, lineno: int, key: str | None, phase: Phase) -> _Slot:
        slot = _Slot(NcclRun(start_line=lineno), self.piece, created=self._tick(), phase=phase)
        self.slots.append(slot)
        self._touch(slot, key)
        return slot

    def _touch(self, slot: _Slot, key: str | None) -> None:
        slot.touched = self._tick()
        self.recognised += 1
        if key is not None:
            slot.keys.add(key)
            slot.run.launch = slot.run.launch or key

    def _in(self, *phases: Phase) -> list[_Slot]:
        return [s for s in self.slots if s.phase in phases]

    @staticmethod
    def _by_key(slots: Iterable[_Slot], key: str | None) -> list[_Slot]:
        """Slots of the line's launch; slots without a key when none has it."""
        slots = list(slots)
        if key is not None:
            same = [s for s in slots if key in s.keys]
            return same or [s for s in slots if not s.keys]
        return [s for s in slots if not s.keys] or slots

    def _newest(self, slots: Iterable[_Slot], key: str | None) -> _Slot | None:
        found = self._by_key(slots, key)
        return max(found, key=lambda s: s.created) if found else None

    # ------------------------------------------------------------ header lines

    def _version(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        self._new(lineno, piece.key, Phase.HEAD).run.tests_version = m.group(1)

    def _starting(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        heads = [s for s in self._in(Phase.HEAD) if s.run.binary is None]
        slot = self._newest(heads, piece.key) or self._new(lineno, piece.key, Phase.HEAD)
        self._touch(slot, piece.key)
        slot.run.binary = m.group(1)
        slot.run.collective = collective_from_binary(m.group(1))

    def _params(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        slot = self._newest(self._in(Phase.HEAD), piece.key) or self._new(
            lineno, piece.key, Phase.PARAMS
        )
        self._touch(slot, piece.key)
        slot.run.params = parse_params(m.string)
        slot.phase = Phase.PARAMS

    def _using_devices(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        waiting = [s for s in self._in(Phase.PARAMS) if not s.using_devices]
        slot = self._newest(waiting, piece.key) or self._new(lineno, piece.key, Phase.PARAMS)
        self._touch(slot, piece.key)
        slot.using_devices = True

    def _device(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        dev = Device(
            rank=int(m["rank"]),
            group=int(m["group"]) if m["group"] is not None else None,
            pid=int(m["pid"]),
            host=m["host"],
            device=int(m["device"]),
            busid=m["busid"],
            model=m["model"],
        )
        listing = self._in(Phase.PARAMS, Phase.DEVICES)
        expecting = self._by_key([s for s in listing if len(s.run.devices) == dev.rank], piece.key)
        if expecting:
            slot = max(expecting, key=lambda s: (_affinity(s.run, dev), s.created))
        else:
            slot = self._newest(listing, piece.key) or self._new(lineno, piece.key, Phase.DEVICES)
        self._touch(slot, piece.key)
        slot.run.devices.append(dev)
        slot.phase = Phase.DEVICES
        runs_of = self.processes.setdefault((dev.host, dev.pid), [])
        if slot not in runs_of:
            runs_of.append(slot)
        for kind, line in self.pending.pop((dev.host, dev.pid), []):
            self._attach(kind, line, [slot])

    def _reducing(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        listing = self._in(Phase.PARAMS, Phase.DEVICES)
        slot = self._newest(listing, piece.key) or self._new(lineno, piece.key, Phase.PARAMS)
        self._touch(slot, piece.key)
        slot.run.reduced_max_bytes = int(m.group(1))

    def _table_header(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        listing = self._in(Phase.PARAMS, Phase.DEVICES)
        slot = self._newest(listing, piece.key) or self._new(lineno, piece.key, Phase.TABLE)
        self._touch(slot, piece.key)
        slot.run.columns = parse_columns(m.string)
        slot.phase = Phase.TABLE

    # ------------------------------------------------------------ rows

    def row_choices(self, piece: Piece, m: re.Match[str]) -> list[RowChoice]:
        """The runs a size row may belong to, cheapest first (ties: the run that has
        waited longest for a row); empty when no run has a table."""
        head = _RowHead.read(m)
        fits = [s for s in self._in(Phase.TABLE) if _fills(s, head) is not None]
        if not fits:
            # Rows after the summary lines of a test: a second table without header.
            fits = [s for s in self._in(Phase.SUMMARY) if s.run.rows and _fills(s, head)]
        fits = self._by_key(fits, piece.key)
        extra = 0
        if not fits:
            # No run asks for this row (every run has the size already, or it lies outside
            # every header's range): keep it in the run it suits best.
            tables = self._in(Phase.TABLE) or [s for s in self.slots if s.run.rows]
            fits = self._by_key(tables, piece.key)
            extra = FORCED_COST
        newest = max((s.created for s in fits), default=0)
        index = {id(slot): i for i, slot in enumerate(self.slots)}
        choices = [
            (RowChoice(index[id(s)], _row_cost(s, head) + extra + _stale_cost(s, newest), head), s)
            for s in fits
        ]
        choices.sort(key=lambda c: (c[0].cost, c[1].row_touched, c[1].created))
        return [choice for choice, _ in choices]

    def take_row(self, number: int, lineno: int, piece: Piece, choice: RowChoice) -> None:
        """Give the row to the run `choice` names."""
        self.piece = number
        slot, head = self.slots[choice.slot], choice.head
        fills = _fills(slot, head) or 0
        row = parse_row(piece.text.strip(), lineno, slot.run.columns, self.source)
        self._touch(slot, piece.key)
        slot.row_touched = slot.touched
        slot.run.rows.append(row)
        slot.filled.setdefault((head.dtype, head.redop), set()).add(fills)
        slot.phase = Phase.TABLE
        self.cost += choice.cost
        self.placed = Placed(number, slot.ident, row.size_bytes, replace(row, line=0), self.placed)

    def signature(self) -> tuple[object, ...]:
        """What the rest of the log is read against: two hypotheses with the same
        signature place every later line alike (up to which run printed last)."""
        return tuple(
            (
                s.ident,
                s.phase,
                s.using_devices,
                tuple(sorted((series, tuple(sorted(sizes))) for series, sizes in s.filled.items())),
                len(s.run.rows),
                _last_shape(s.run),
                s.run.out_of_bounds,
                s.run.avg_busbw_gbps,
                s.run.concluded,
                s.run.binary,
            )
            for s in self.slots
        )

    def absorb(self, other: Demux) -> None:
        """Take in a hypothesis as good as this one: the sizes where the two gave runs
        rows that measured something else cannot be told apart."""
        self.marks |= other.marks | _differences(self.placed, other.placed)

    # ------------------------------------------------------------ summary lines

    def _summary_slot(self, key: str | None) -> _Slot | None:
        tables = [s for s in self._in(Phase.TABLE) if s.run.rows]
        found = self._by_key(tables, key)
        if not found:
            return None
        complete = [s for s in found if _complete(s.run)]
        return max(complete or found, key=lambda s: s.row_touched)

    def _out_of_bounds(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        slot = self._summary_slot(piece.key)
        if slot is None:
            return
        self._touch(slot, piece.key)
        slot.run.out_of_bounds = int(m.group(1))
        slot.run.out_of_bounds_ok = m.group(2).upper() == "OK" if m.group(2) else None
        slot.phase = Phase.SUMMARY

    def _avg(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        summed = [s for s in self._in(Phase.SUMMARY) if s.run.avg_busbw_gbps is None]
        slot = self._newest_touched(self._by_key(summed, piece.key)) or self._summary_slot(
            piece.key
        )
        if slot is None:
            return
        self._touch(slot, piece.key)
        slot.phase = Phase.SUMMARY
        try:
            slot.run.avg_busbw_gbps = float(m.group(1))
        except ValueError:
            slot.run.notes.append(f"line {lineno}: unreadable average bus bandwidth {m.group(1)!r}")

    def _concluded(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        binary = m.group(1)
        live = [s for s in self.slots if s.phase is not Phase.DONE]
        same = self._by_key([s for s in live if s.run.binary == binary], piece.key)
        unnamed = self._by_key([s for s in live if s.run.binary is None], piece.key)
        pool = same or unnamed
        if pool:
            slot = max(pool, key=lambda s: (s.phase is Phase.SUMMARY, s.touched))
        else:
            slot = self._new(lineno, piece.key, Phase.DONE)
        self._touch(slot, piece.key)
        run = slot.run
        run.concluded = True
        run.binary = run.binary or binary
        run.collective = run.collective or collective_from_binary(binary)
        slot.phase = Phase.DONE

    def _elision(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        self.log.partial = True
        self.log.notes.append(
            f"line {lineno}: the output is an excerpt (lines elided with "
            f"{piece.text.strip()!r}); checks that need the whole log are limited"
        )

    # ------------------------------------------------------------ other processes' lines

    @staticmethod
    def _newest_touched(slots: list[_Slot]) -> _Slot | None:
        return max(slots, key=lambda s: s.touched) if slots else None

    def _current(self, key: str | None) -> _Slot | None:
        live = [s for s in self.slots if s.phase is not Phase.DONE]
        return self._newest_touched(self._by_key(live, key)) or self._newest_touched(
            self._by_key(self.slots, key)
        )

    def _origin(self, kind: Kind, line: LogLine, key: str | None) -> list[_Slot] | None:
        """Runs an INFO/WARN line belongs to by the host:pid NCCL prints; None: keep it
        until that process shows up in a device list."""
        m = NCCL_ORIGIN.match(line.text)
        if m is None:
            current = self._current(key)
            return [current] if current else []
        host, pid = m["host"], int(m["pid"])
        matching = self._by_key(self.processes.get((host, pid), []), key)
        active = [s for s in matching if s.phase in _ACTIVE]
        if active:
            return _fresh(active)
        if matching:
            return [max(matching, key=lambda s: s.created)]
        self.pending.setdefault((host, pid), []).append((kind, line))
        return None

    def _attach(self, kind: Kind, line: LogLine, slots: list[_Slot]) -> None:
        for slot in slots:
            run = slot.run
            if kind is Kind.WARN:
                run.warnings.append(line)
                continue
            run.info_count += 1
            if NOTABLE_INFO.search(line.text):
                run.info.append(line)
            if run.nccl_version is None and (v := NCCL_VERSION.search(line.text)):
                run.nccl_version = v.group(1)

    def _info(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        self.log.info_count += 1
        line = LogLine(lineno, piece.text.strip())
        slots = self._origin(Kind.INFO, line, piece.key)
        if slots:
            self._attach(Kind.INFO, line, slots)
        elif slots is not None and (v := NCCL_VERSION.search(line.text)):
            self.orphan_version = self.orphan_version or v.group(1)

    def _warn(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        line = LogLine(lineno, piece.text.strip())
        slots = self._origin(Kind.WARN, line, piece.key)
        if slots:
            self._attach(Kind.WARN, line, slots)
        elif slots is not None:
            self.log.errors.append(line)

    def _nccl_version(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        assert m is not None
        slot = self._current(piece.key)
        if slot is None:
            self.orphan_version = self.orphan_version or m.group(1)
        elif slot.run.nccl_version is None:
            slot.run.nccl_version = m.group(1)

    def _error(self, lineno: int, piece: Piece, m: re.Match[str] | None) -> None:
        line = LogLine(lineno, piece.text.strip())
        self.recognised += 1
        origin = ERROR_ORIGIN.match(line.text)
        named = (
            self._by_key([s for s in self.slots if origin["host"] in s.run.hosts], piece.key)
            if origin is not None
            else []
        )
        active = [s for s in named if s.phase is not Phase.DONE]
        slot = max(active or named, key=lambda s: s.created) if named else self._current(piece.key)
        (slot.run.errors if slot else self.log.errors).append(line)

    # ------------------------------------------------------------ the end

    def finish(self) -> NcclLog:
        """Runs in the order they began; raises NcclParseError if nothing was nccl-tests."""
        if self.recognised == 0:
            raise NcclParseError(
                "no nccl-tests output found (no '# nThread' header, device list or size table)",
                None,
                self.source,
            )
        self._place_pending()
        self._mark_ambiguous()
        kept: list[NcclRun] = []
        for slot in self.slots:
            run = slot.run
            if slot.phase is Phase.HEAD and not (run.errors or run.warnings or run.info):
                self.log.notes.append(
                    f"line {run.start_line}: {run.name} printed its version line and nothing else"
                )
                continue
            run.nccl_version = run.nccl_version or self.orphan_version
            kept.append(run)
        self.log.runs = kept
        return self.log

    def _place_pending(self) -> None:
        """INFO/WARN lines of processes no device list names: the first run takes them."""
        first = self.slots[0] if self.slots else None
        for lines in self.pending.values():
            for kind, line in lines:
                if first is not None:
                    self._attach(kind, line, [first])
                elif kind is Kind.WARN:
                    self.log.errors.append(line)
        self.pending.clear()

    def _mark_ambiguous(self) -> None:
        by_ident = {slot.ident: slot for slot in self.slots}
        for ident, size, other in sorted(self.marks):
            slot, peer = by_ident.get(ident), by_ident.get(other)
            if slot is None or peer is None:
                continue
            run = slot.run
            if size not in run.ambiguous_sizes:
                run.ambiguous_sizes.append(size)
            if peer.run.start_line not in run.interleaved_with:
                run.interleaved_with.append(peer.run.start_line)


def _affinity(run: NcclRun, dev: Device) -> int:
    """How well a device line continues a run's list: same process, then same host."""
    if not run.devices:
        return 0
    last = run.devices[-1]
    if last.host == dev.host and last.pid == dev.pid:
        return 2
    return 1 if last.host == dev.host else 0


def _fresh(slots: list[_Slot]) -> list[_Slot]:
    """Leave out runs with a table that have been silent since another of them began
    (killed mid-table, then a rerun appended)."""
    newest_start = max(s.created for s in slots)
    alive = [
        s for s in slots if not s.run.rows or s.touched > newest_start or s.created == newest_start
    ]
    return alive or slots


def _request(run: NcclRun, head: _RowHead) -> int | None:
    """The size of the header's range this row ran (rows may be rounded down)."""
    slack = size_slack(
        head.dtype, max(run.n_ranks or 1, row_ranks_of(head.size, head.count, head.dtype) or 1)
    )
    for size in run.expected_sizes():
        if size - slack < head.size <= size:
            return size
    return None


def _fills(slot: _Slot, head: _RowHead) -> int | None:
    """Which requested size a row would fill in a run's table; None if it cannot be
    the run's (that size is there already, or it lies outside the header's range and
    does not continue a series). Rows beyond the range (edited excerpts) or of a
    table without header fill 0."""
    run = slot.run
    filled = slot.filled.get((head.dtype, head.redop), set())
    request = _request(run, head)
    if request is not None:
        return None if request in filled else request
    series = [r for r in run.rows if (r.dtype, r.redop) == (head.dtype, head.redop)]
    if series:
        return 0 if head.size > series[-1].size_bytes else None
    return None if run.expected_sizes() else 0


def _next_request(slot: _Slot, head: _RowHead) -> int | None:
    """The size a run asks for next in this row's type/op series."""
    sizes = slot.run.expected_sizes()
    filled = slot.filled.get((head.dtype, head.redop), set())
    done = [i for i, size in enumerate(sizes) if size in filled]
    nxt = done[-1] + 1 if done else 0
    return sizes[nxt] if nxt < len(sizes) else None


# What a row costs in a run: twice the evidence `_row_score` misses (so that one unit is
# left for `_stale_cost`); a row no run asks for costs more than any row one asks for.
_BEST_SCORE = 31
FORCED_COST = 128


def _row_cost(slot: _Slot, head: _RowHead) -> int:
    return 2 * (_BEST_SCORE - _row_score(slot, head))


def _stale_cost(slot: _Slot, newest: int) -> int:
    """A run with a table that has been silent since another candidate began was more
    likely killed (then rerun into the same file) than slow: the least sign, which
    decides only what nothing else does."""
    silent = slot.run.rows and slot.touched <= newest and slot.created != newest
    return 1 if silent else 0


def _last_shape(run: NcclRun) -> tuple[object, ...]:
    """What later rows of a run are compared with (`_row_score`)."""
    last = run.rows[-1] if run.rows else None
    shape = (last.dtype, last.redop, last.size_bytes, last.count) if last else ()
    return (*shape, *(round(f, 3) for f in _bus_factors(run)))


def _differences(mine: Placed | None, theirs: Placed | None) -> frozenset[tuple[int, int, int]]:
    """(run, size, other run) for each size where two chains of placed rows gave runs
    rows that measured something else (the same row content in either run is no
    difference: two copies of one recording interleaved)."""
    rows: dict[tuple[int, int], tuple[list[SizeRow], list[SizeRow]]] = {}
    while mine is not theirs:
        if mine is not None and (theirs is None or mine.number >= theirs.number):
            rows.setdefault((mine.run, mine.size), ([], []))[0].append(mine.content)
            mine = mine.before
        elif theirs is not None:
            rows.setdefault((theirs.run, theirs.size), ([], []))[1].append(theirs.content)
            theirs = theirs.before
    differing: dict[int, set[int]] = {}
    for (ident, size), (a, b) in rows.items():
        if Counter(a) != Counter(b):
            differing.setdefault(size, set()).add(ident)
    return frozenset(
        (ident, size, other)
        for size, idents in differing.items()
        for ident in idents
        for other in idents
        if other != ident
    )


# Collectives that print `none` in the redop column; the others print their reduction op.
_NO_OP_COLLECTIVES = frozenset({"all_gather", "alltoall", "broadcast", "gather", "scatter"})


def _row_score(slot: _Slot, head: _RowHead) -> int:
    """How well a row continues a run, by weight: the size the run asks for next; the
    same type/op series (or an empty table); the op its collective prints; the
    size/count ratio (1, or the rank count for all_gather, reduce_scatter, alltoall)."""
    run = slot.run
    series = [r for r in run.rows if (r.dtype, r.redop) == (head.dtype, head.redop)]
    factors = _bus_factors(run)
    score = 0
    if factors and head.bus_factor is not None:
        # The strongest sign either way: a different rank count gives another ratio.
        near = any(abs(head.bus_factor - f) <= 0.03 * f for f in factors)
        score += 16 if near else -16
    if _fills(slot, head) == _next_request(slot, head):
        score += 8
    if series or not run.rows:
        score += 4
    if run.collective is None or (run.collective in _NO_OP_COLLECTIVES) == (head.redop == "none"):
        score += 2
    ratio = row_ranks_of(head.size, head.count, head.dtype)
    if series:
        last = series[-1]
        expected: tuple[int | None, ...] = (row_ranks_of(last.size_bytes, last.count, last.dtype),)
    elif run.collective in ROUNDED_COLLECTIVES:
        expected = (run.n_ranks,) if run.n_ranks else ()
    elif run.collective is not None:
        expected = (1,)
    else:
        expected = (1, run.n_ranks)
    if ratio in expected or (not expected and ratio is not None and ratio > 1):
        score += 1
    return score


def _bus_factors(run: NcclRun) -> tuple[float, ...]:
    """busbw/algbw a run's rows can show (nccl-tests doc/PERFORMANCE.md: 2(n-1)/n for
    all_reduce, (n-1)/n for all_gather, reduce_scatter and alltoall, 1 for the rest):
    its own rows' ratio once one is precise enough, else what its collective and rank
    count allow; empty when unknown."""
    for row in reversed(run.rows):
        if row.algbw_gbps is not None and row.algbw_gbps >= 1.0 and row.busbw_gbps is not None:
            return (row.busbw_gbps / row.algbw_gbps,)
    n = run.n_ranks
    if not n:
        return ()
    by_collective = {"all_reduce": 2 * (n - 1) / n, "rounded": (n - 1) / n, "other": 1.0}
    if run.collective is None:
        return tuple(by_collective.values())
    if run.collective == "all_reduce":
        return (by_collective["all_reduce"],)
    if run.collective in ROUNDED_COLLECTIVES:
        return (by_collective["rounded"],)
    return (1.0,)


def _complete(run: NcclRun) -> bool:
    sizes = run.expected_sizes()
    return bool(sizes) and run.size_reached(sizes[-1]) is not None


_HANDLERS: dict[Kind, Callable[[Demux, int, Piece, re.Match[str] | None], None]] = {
    Kind.VERSION: Demux._version,
    Kind.STARTING: Demux._starting,
    Kind.PARAMS: Demux._params,
    Kind.USING_DEVICES: Demux._using_devices,
    Kind.DEVICE: Demux._device,
    Kind.REDUCING: Demux._reducing,
    Kind.TABLE_HEADER: Demux._table_header,
    Kind.OUT_OF_BOUNDS: Demux._out_of_bounds,
    Kind.AVG: Demux._avg,
    Kind.CONCLUDED: Demux._concluded,
    Kind.ELISION: Demux._elision,
    Kind.INFO: Demux._info,
    Kind.WARN: Demux._warn,
    Kind.NCCL_VERSION: Demux._nccl_version,
    Kind.ERROR: Demux._error,
}
