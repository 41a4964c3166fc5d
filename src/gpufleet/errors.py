"""Errors meant for people: one line per problem, exit code 2, no traceback."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# user:password@ in a URL: never repeated back, whatever the problem is about.
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@")
_INDEX = re.compile(r"\[\d+\]")

# A spec with thousands of problems prints the first SHOWN and a count per kind.
SHOWN = 20


def redact(text: str) -> str:
    """`https://admin:secret@bmc/...` -> `https://***@bmc/...`."""
    return _CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what, and how to fix it."""

    path: str
    message: str
    hint: str = ""

    def __post_init__(self) -> None:
        for name in ("path", "message", "hint"):
            value = getattr(self, name)
            if "@" in value:
                object.__setattr__(self, name, redact(value))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} (fix: {self.hint})" if self.hint else text

    @property
    def kind(self) -> str:
        """The path with list indices generalised: `nodes[*].boot_mac`."""
        return _INDEX.sub("[*]", self.path) or "(the document)"


class UserError(Exception):
    """Bad input or environment. The CLI prints each problem and exits with code 2."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem] | str, title: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems: list[Problem] = list(problems)
        self.title = title
        super().__init__(self.render())

    def render(self) -> str:
        """The title and one line per problem; beyond SHOWN problems, the first SHOWN
        and one line counting all of them by kind (never thousands of lines)."""
        lines = [self.title] if self.title else []
        lines.extend(str(p) for p in self.problems[:SHOWN])
        if len(self.problems) > SHOWN:
            kinds = Counter(p.kind for p in self.problems).most_common()
            listed = ", ".join(f"{kind} {count:,}" for kind, count in kinds[:10])
            more = f", and {len(kinds) - 10} more kinds" if len(kinds) > 10 else ""
            lines.append(
                f"... {SHOWN} of {len(self.problems):,} problems shown; all by kind: {listed}{more}"
            )
        return "\n".join(lines)
