"""No block of six or more lines is repeated between roles' task files (issue 13).

Lines are compared with their indentation and trailing blanks stripped; blank lines and
comment-only lines are left out, so re-indenting or re-commenting a copy does not hide it.
Shared machinery goes into an internal role (roles/version_lock is the example) instead.

Run as a script to list every repeated block: `python tests/unit/test_repeated_blocks.py`.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIN_LINES = 6


@dataclass(frozen=True)
class Repeat:
    """One block of at least MIN_LINES lines found in the task files of two or more roles."""

    lines: tuple[str, ...]
    places: tuple[tuple[str, int], ...]  # (file relative to the repository, first line number)

    def describe(self) -> str:
        where = ", ".join(f"{path}:{line}" for path, line in self.places)
        return f"{len(self.lines)} lines repeated in {where}, starting: {self.lines[0]}"


def _code_lines(path: Path) -> list[tuple[int, str]]:
    kept = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            kept.append((number, line))
    return kept


def _role(path: Path) -> str:
    return path.parent.parent.name


def repeated_blocks(paths: list[Path], root: Path, min_lines: int = MIN_LINES) -> list[Repeat]:
    """Maximal blocks of >= min_lines consecutive code lines that occur in files of two roles."""
    lines = {path: _code_lines(path) for path in paths}
    windows: dict[tuple[str, ...], list[tuple[Path, int]]] = defaultdict(list)
    for path, code in lines.items():
        for i in range(len(code) - min_lines + 1):
            windows[tuple(text for _, text in code[i : i + min_lines])].append((path, i))
    # Windows seen in two roles, per file and position; then grown into maximal runs.
    shared: dict[Path, set[int]] = defaultdict(set)
    for places in windows.values():
        if len({_role(path) for path, _ in places}) > 1:
            for path, i in places:
                shared[path].add(i)
    found: set[Repeat] = set()
    for path, starts in shared.items():
        code = lines[path]
        ordered = sorted(starts)
        run_start = previous = ordered[0]
        for i in [*ordered[1:], None]:
            if i is not None and i == previous + 1:
                previous = i
                continue
            block = tuple(text for _, text in code[run_start : previous + min_lines])
            # Where else the block's first six lines stand: the copies a reader has to look at.
            places = windows[block[:min_lines]]
            found.add(
                Repeat(
                    block,
                    tuple(sorted((str(p.relative_to(root)), lines[p][j][0]) for p, j in places)),
                )
            )
            if i is not None:
                run_start = previous = i
    return sorted(found, key=lambda r: (r.places, -len(r.lines)))


def task_files(root: Path) -> list[Path]:
    return sorted(root.glob("roles/*/tasks/*.yml"))


def _write_role(root: Path, role: str, name: str, text: str) -> Path:
    path = root / "roles" / role / "tasks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Constructed task files for the detector's own tests.
SIX = """\
- name: Create the directories
  ansible.builtin.file:
    path: "{{ item }}"
    state: directory
    owner: root
    group: root
"""


def test_detector_finds_a_six_line_copy_despite_indentation_and_comments(tmp_path):
    a = _write_role(tmp_path, "one", "main.yml", SIX + '    mode: "0755"\n')
    indented = "\n".join("  " + ln if ln else ln for ln in SIX.splitlines())
    b = _write_role(
        tmp_path,
        "two",
        "setup.yml",
        "# a comment\n" + indented.replace("state", "# x\n  state") + "\n",
    )
    found = repeated_blocks([a, b], tmp_path)
    assert len(found) == 1
    assert found[0].lines == tuple(ln.strip() for ln in SIX.splitlines())
    assert found[0].places == (("roles/one/tasks/main.yml", 1), ("roles/two/tasks/setup.yml", 2))


def test_detector_grows_a_longer_copy_into_one_block(tmp_path):
    text = SIX + '    mode: "0755"\n  loop: [/a, /b]\n'
    found = repeated_blocks(
        [_write_role(tmp_path, "one", "a.yml", text), _write_role(tmp_path, "two", "b.yml", text)],
        tmp_path,
    )
    assert [len(r.lines) for r in found] == [8]


def test_detector_allows_five_lines_and_copies_inside_one_role(tmp_path):
    five = "\n".join(SIX.splitlines()[:5]) + "\n"
    paths = [
        _write_role(tmp_path, "one", "a.yml", five + "    group: wheel\n"),
        _write_role(tmp_path, "two", "b.yml", five + "    group: adm\n"),
        _write_role(tmp_path, "three", "c.yml", SIX),
        _write_role(tmp_path, "three", "d.yml", SIX),
    ]
    assert repeated_blocks(paths, tmp_path) == []


def test_no_block_repeated_between_roles():
    found = repeated_blocks(task_files(REPO), REPO)
    assert not found, "fold into an internal role:\n" + "\n".join(r.describe() for r in found)


if __name__ == "__main__":
    for repeat in repeated_blocks(task_files(REPO), REPO):
        print(repeat.describe())
    sys.exit(0)
