"""Which run each size row belongs to, decided over the whole log, not row by row.

Two runs interleaved without a launch prefix can both ask for the row that comes
next: an all_reduce of 2 ranks waiting for its 32 MiB float row and a sendrecv whose
table has just begun at 32 MiB look alike to that row (same busbw/algbw ratio, op
and size/count ratio). Only later rows tell: the sendrecv goes on in doubles. A
parser that gives the row to one run at once, and lets the next rows follow it,
can end with a run of the wrong collective.

So every placement a row allows is followed as its own hypothesis (a
`gpufleet.verify.nccl_demux.Demux`), each with the cost of the rows it placed
(`_row_cost`: a size the run did not ask for next, another type or op, a
busbw/algbw ratio of another rank count, ...). Hypotheses that read the rest of the
log alike (same signature) are merged, keeping the cheaper; at the end the
cheapest one is the log. When two merged or final hypotheses cost the same and
gave runs rows that measured something else, nothing in the log tells them apart:
those sizes are marked ambiguous in both runs (`NcclRun.ambiguous_sizes`, with
`interleaved_with` naming the other run), which the judge turns into a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpufleet.verify.nccl_demux import Demux
from gpufleet.verify.nccl_lines import Kind, Piece, classify, split_line
from gpufleet.verify.nccl_model import NcclLog

# Hypotheses followed at once, and how much more than the cheapest one a hypothesis may
# cost before it is dropped: a wrong placement costs at least 2 (`_row_cost`) and the
# right one of a row behind an elision or without a known rank count up to 48 more, for
# a while.
BEAM = 12
MARGIN = 64


def demultiplex(lines: Iterable[str], source: str) -> NcclLog:
    """Split the lines of a log into runs (see `gpufleet.verify.nccl_demux`)."""
    hypotheses = [Demux(source)]
    number = 0
    for lineno, raw in enumerate(lines, start=1):
        for piece in split_line(raw):
            number += 1
            kind, match = classify(piece.text)
            if kind is Kind.ROW and match is not None:
                hypotheses = _place_row(hypotheses, number, lineno, piece, match)
                continue
            for hypothesis in hypotheses:
                hypothesis.feed(number, lineno, piece, kind, match)
    best, *others = hypotheses
    for other in others:
        if other.cost == best.cost:
            best.absorb(other)
    return best.finish()


def _place_row(
    hypotheses: list[Demux], number: int, lineno: int, piece: Piece, match: re.Match[str]
) -> list[Demux]:
    """Every hypothesis, once for each run the row may go to; then the best of them."""
    grown: list[Demux] = []
    for hypothesis in hypotheses:
        choices = hypothesis.row_choices(piece, match)
        if not choices:
            grown.append(hypothesis)
            continue
        twins = [hypothesis.fork() for _ in choices[1:]]
        for twin, choice in zip([hypothesis, *twins], choices, strict=True):
            twin.take_row(number, lineno, piece, choice)
            grown.append(twin)
    if len(grown) == 1:
        return grown
    return _prune(grown)


def _prune(grown: list[Demux]) -> list[Demux]:
    """Cheapest first (ties in the order the rows' choices were ranked); one hypothesis
    per signature, the others absorbed when they cost the same."""
    grown.sort(key=lambda h: h.cost)
    limit = grown[0].cost + MARGIN
    kept: dict[tuple[object, ...], Demux] = {}
    for hypothesis in grown:
        if hypothesis.cost > limit:
            break
        signature = hypothesis.signature()
        twin = kept.get(signature)
        if twin is None:
            if len(kept) < BEAM:
                kept[signature] = hypothesis
        elif twin.cost == hypothesis.cost:
            twin.absorb(hypothesis)
    return list(kept.values())
