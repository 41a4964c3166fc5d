"""Turn pydantic validation errors into Problem lines a person can act on."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gpufleet.errors import Problem


def format_path(loc: tuple[int | str, ...]) -> str:
    """('nodes', 12, 'bmc', 'url') -> 'nodes[12].bmc.url'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated to reach a model, list or dict type."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at loc (loc excludes the field itself)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if origin is list:
            current = get_args(current)[0]
        elif origin is dict:
            current = get_args(current)[1]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def translate(err: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """One Problem per pydantic error, with the path, what is wrong and a fix."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path = format_path(loc)
        kind = e["type"]
        ctx = e.get("ctx") or {}
        given = e.get("input")
        if kind == "gpufleet":
            problems.append(
                Problem(path, str(ctx.get("message", e["msg"])), str(ctx.get("hint", "")))
            )
        elif kind == "extra_forbidden":
            key = str(loc[-1])
            model = _model_at(root, loc[:-1])
            valid = sorted(model.model_fields) if model else []
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            if close:
                hint = f"did you mean '{close[0]}'?"
            elif valid:
                hint = "valid keys here: " + ", ".join(valid)
            else:
                hint = "remove it"
            problems.append(Problem(path, f"unknown key '{key}'", hint))
        elif kind == "missing":
            key = str(loc[-1])
            model = _model_at(root, loc[:-1])
            field = model.model_fields.get(key) if model else None
            desc = field.description if field and field.description else ""
            hint = f"add '{key}' ({desc})" if desc else f"add '{key}'"
            problems.append(Problem(path, f"required key '{key}' is missing", hint))
        elif kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip()]
            close = difflib.get_close_matches(str(given), choices, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"use one of {expected}"
            problems.append(Problem(path, f"{_short(given)} is not allowed", hint))
        elif kind == "string_pattern_mismatch":
            desc = ""
            model = _model_at(root, loc[:-1]) if loc and isinstance(loc[-1], str) else None
            if model is not None:
                field = model.model_fields.get(str(loc[-1]))
                desc = field.description or "" if field else ""
            problems.append(
                Problem(
                    path,
                    f"{_short(given)} has the wrong format",
                    desc or f"it must match {ctx.get('pattern', '')}",
                )
            )
        elif kind in ("model_type", "dict_type"):
            problems.append(
                Problem(
                    path,
                    f"expected a mapping (key: value), got {_short(given)}",
                    "indent the keys under it",
                )
            )
        elif kind == "list_type":
            problems.append(
                Problem(
                    path,
                    f"expected a list, got {_short(given)}",
                    "write it as a YAML list (- item)",
                )
            )
        elif kind == "too_short":
            problems.append(Problem(path, "must not be empty", "add at least one entry"))
        else:
            msg = str(e["msg"])
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            problems.append(Problem(path, f"{msg} (got {_short(given)})", ""))
    return problems


def closest(word: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean X?)'-style hint fragment, or a list of choices."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known: " + ", ".join(options)
