"""Errors meant for people: one line per problem, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what, and how to fix it."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} (fix: {self.hint})" if self.hint else text


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
        lines = [self.title] if self.title else []
        lines.extend(str(p) for p in self.problems)
        return "\n".join(lines)
