"""Threshold packs: what "normal" means for a test, as data with a source per number.

Built-in packs are the YAML files of this folder. A site may override keys of a
built-in pack and add packs of its own (for example a baseline generated from
a first healthy run with `gpufleet verify baseline`):

    overrides:                       # deep-merged onto the built-in pack of that name
      nccl-allreduce-2node-ring-ib:
        busbw: {fail_below: {value: 360, source: "site acceptance test 2025-01"}}
    packs:                           # whole packs; they win over built-in ones
      - name: site-nccl-alltoall-2node
        ...

Every figure is `{value: ..., source: "..."}`: a number without a source is
rejected at load time. The built-in packs are package data, read through
`importlib.resources` (an installed wheel has them too).

Profiles name a platform and a fabric: `hgx-h100-8gpu-ib`. The platforms are those
the packs name; the fabrics are InfiniBand, RoCE, AWS EFA, Google's GPUDirect-TCPX
and TCPXO (`tcpx`) and plain TCP sockets. Only InfiniBand and RoCE have built-in
floors; the others are judged for errors and said to be unjudged.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpufleet.errors import Problem, UserError

# The folder on disk, for tools that list the packs; loading goes through importlib.resources.
PACK_DIR = Path(__file__).parent
KINDS = ("1node", "2node", "multinode", "nic")
PROFILE_FABRICS = ("ib", "roce", "efa", "tcpx", "socket")
FABRICS = (*PROFILE_FABRICS, "any")
Fabric = Literal["ib", "roce", "efa", "tcpx", "socket", "any"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Figure(_Strict):
    """A number and where it comes from."""

    value: float
    source: str = Field(min_length=3)


class Floors(_Strict):
    """Warn and fail floors of one metric, judged at the largest size >= measure_at_bytes."""

    expected: Figure | None = None
    peak: Figure | None = None
    warn_below: Figure | None = None
    fail_below: Figure | None = None
    measure_at_bytes: int = Field(default=1 << 32, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Floors:
        if self.warn_below and self.fail_below and self.fail_below.value > self.warn_below.value:
            raise ValueError(
                f"fail_below ({self.fail_below.value}) must not exceed "
                f"warn_below ({self.warn_below.value})"
            )
        return self


class NicRule(_Strict):
    nics_per_node: int = Field(ge=1)
    per_nic_gbps: Figure


class NvlsRule(_Strict):
    """Band of busbw a ring (non-NVLS) all_reduce reaches on this platform."""

    ring_level_low: Figure
    ring_level_high: Figure


class RelativeRule(_Strict):
    """Limits relative to peers of the same sweep and to the run's own peak."""

    peer_warn_fraction: Figure | None = None
    peer_fail_fraction: Figure | None = None
    collapse_warn_fraction: Figure | None = None
    collapse_fail_fraction: Figure | None = None


class NcclPack(_Strict):
    name: str = Field(min_length=1)
    test: Literal["nccl"]
    description: str = ""
    collectives: list[str] = Field(min_length=1)
    kind: Literal["1node", "2node", "multinode", "nic"]
    platforms: list[str] = Field(min_length=1)
    fabrics: list[Fabric] = Field(min_length=1)
    ranks: int | None = Field(default=None, ge=1)
    expected_max_bytes: int | None = Field(default=None, ge=1)
    busbw: Floors | None = None
    ring_busbw: Floors | None = None
    nvls: NvlsRule | None = None
    nic: NicRule | None = None
    relative: RelativeRule | None = None
    site: bool = False

    def matches(self, collective: str, kind: str, fabric: str, platform: str) -> bool:
        return (
            collective in self.collectives
            and kind == self.kind
            and ("any" in self.fabrics or fabric in self.fabrics)
            and ("any" in self.platforms or platform in self.platforms)
        )


class DeviationRule(_Strict):
    warn_below_pct: Figure
    fail_below_pct: Figure


class BurninPack(_Strict):
    name: str = Field(min_length=1)
    test: Literal["burnin"]
    description: str = ""
    platforms: list[str] = Field(min_length=1)
    gemm_tflops: Floors
    hbm_gbps: Floors
    fleet_deviation: DeviationRule
    site: bool = False


Pack = NcclPack | BurninPack


@dataclass
class ThresholdSet:
    """Built-in packs with site overrides applied, site packs first."""

    packs: dict[str, Pack] = field(default_factory=dict)
    site_source: str | None = None

    def nccl_pack(self, collective: str, kind: str, fabric: str, platform: str) -> NcclPack | None:
        """The pack for a run: a site pack when one matches, else the built-in one."""
        found = [
            p
            for p in self.packs.values()
            if isinstance(p, NcclPack) and p.matches(collective, kind, fabric, platform)
        ]
        found.sort(key=lambda p: (not p.site, "any" in p.fabrics, "any" in p.platforms, p.name))
        return found[0] if found else None

    def burnin_pack(self, platform: str) -> BurninPack | None:
        found = [
            p
            for p in self.packs.values()
            if isinstance(p, BurninPack) and (platform in p.platforms or "any" in p.platforms)
        ]
        found.sort(key=lambda p: (not p.site, p.name))
        return found[0] if found else None


def _validate(raw: Any, where: str) -> Pack:
    if not isinstance(raw, Mapping):
        raise UserError(
            [Problem(where, "a threshold pack must be a mapping", "see docs/verify.md")]
        )
    test = raw.get("test")
    model: type[NcclPack] | type[BurninPack] = BurninPack if test == "burnin" else NcclPack
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = [
            Problem(
                f"{where}: {'.'.join(str(p) for p in e['loc']) or '(pack)'}",
                e["msg"],
                "every figure needs value and source" if "source" in str(e["loc"]) else "",
            )
            for e in err.errors()
        ]
        raise UserError(problems, title=f"invalid threshold pack {where}") from None


def _read_yaml(path: Path | Traversable) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(
            [Problem(str(path), f"cannot read: {err.strerror}", "check the path")]
        ) from None
    except yaml.YAMLError as err:
        raise UserError([Problem(str(path), f"not valid YAML: {err}", "fix the syntax")]) from None


def builtin_files() -> list[Traversable]:
    """The built-in pack files, from the package data."""
    found = [f for f in resources.files(__name__).iterdir() if f.name.endswith(".yaml")]
    return sorted(found, key=lambda f: f.name)


def builtin_raw() -> dict[str, dict[str, Any]]:
    """The built-in packs as plain dicts, by name."""
    raw: dict[str, dict[str, Any]] = {}
    for file in builtin_files():
        stem = file.name.removesuffix(".yaml")
        data = _read_yaml(file)
        if not isinstance(data, dict) or data.get("name") != stem:
            raise UserError([Problem(file.name, "pack name must equal the file name", "")])
        raw[stem] = data
    return raw


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` onto `base`: mappings merge key by key, anything else replaces."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _values_without_source(node: Any, path: str = "") -> list[str]:
    """Paths of figures in an override that change `value` but bring no `source`."""
    if not isinstance(node, Mapping):
        return []
    if "value" in node and "source" not in node:
        return [path or "(root)"]
    found: list[str] = []
    for key, child in node.items():
        found.extend(_values_without_source(child, f"{path}.{key}" if path else str(key)))
    return found


def build_thresholds(
    site: Mapping[str, Any] | None = None, site_name: str = "site"
) -> ThresholdSet:
    """Built-in packs with a site document (overrides + packs) applied; validates everything."""
    raw = builtin_raw()
    problems: list[Problem] = []
    site = site or {}
    unknown_top = set(site) - {"overrides", "packs", "site", "generated_by"}
    problems.extend(
        Problem(f"{site_name}: {key}", "unknown key", "use 'overrides' and 'packs'")
        for key in sorted(unknown_top)
    )
    overrides = site.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        problems.append(Problem(f"{site_name}: overrides", "must be a mapping of pack names", ""))
        overrides = {}
    for name, patch in overrides.items():
        if name not in raw:
            problems.append(
                Problem(
                    f"{site_name}: overrides.{name}",
                    "no built-in pack of that name",
                    f"one of: {', '.join(sorted(raw))}",
                )
            )
        elif not isinstance(patch, Mapping):
            problems.append(Problem(f"{site_name}: overrides.{name}", "must be a mapping", ""))
        else:
            problems.extend(
                Problem(
                    f"{site_name}: overrides.{name}.{path}",
                    "a new value needs its own source (the built-in source no longer applies)",
                    "add source: '...' next to value",
                )
                for path in _values_without_source(patch)
            )
            raw[name] = deep_merge(raw[name], patch)
    site_packs = site.get("packs") or []
    if not isinstance(site_packs, list):
        problems.append(Problem(f"{site_name}: packs", "must be a list of packs", ""))
        site_packs = []
    if problems:
        raise UserError(problems, title="invalid site thresholds")
    packs: dict[str, Pack] = {}
    for name, data in raw.items():
        packs[name] = _validate(data, f"{name}.yaml")
    for i, data in enumerate(site_packs):
        if isinstance(data, Mapping):
            data = {**data, "site": True}
        pack = _validate(data, f"{site_name}: packs[{i}]")
        packs[pack.name] = pack
    return ThresholdSet(packs=packs, site_source=site_name if site else None)


def load_thresholds(site_file: str | Path | None = None) -> ThresholdSet:
    """Built-in packs, plus a site YAML file if given (I/O edge of `build_thresholds`)."""
    if site_file is None:
        return build_thresholds()
    path = Path(site_file)
    data = _read_yaml(path)
    if data is not None and not isinstance(data, Mapping):
        raise UserError(
            [Problem(str(path), "site thresholds must be a mapping", "see docs/verify.md")]
        )
    return build_thresholds(data or {}, site_name=str(path))


def parse_profile(profile: str) -> tuple[str, str]:
    """`hgx-h100-8gpu-ib` -> (`hgx-h100-8gpu`, `ib`); a profile without fabric gets `ib`."""
    head, _, tail = profile.rpartition("-")
    if head and tail in PROFILE_FABRICS:
        return head, tail
    return profile, "ib"


def known_platforms(thresholds: ThresholdSet) -> list[str]:
    """Platforms some pack (built-in or the site's) names."""
    return sorted({p for pack in thresholds.packs.values() for p in pack.platforms if p != "any"})


def check_profile(profile: str, thresholds: ThresholdSet) -> tuple[str, str]:
    """(platform, fabric) of a known profile; UserError naming the choices otherwise."""
    platform, fabric = parse_profile(profile)
    platforms = known_platforms(thresholds)
    if platform in platforms:
        return platform, fabric
    choices = [f"{p}-{f}" for p in platforms for f in PROFILE_FABRICS]
    close = difflib.get_close_matches(profile, choices, n=1)
    hint = (
        f"use <platform>-<fabric> with a platform of {', '.join(platforms)} and a fabric of "
        f"{', '.join(PROFILE_FABRICS)}"
    )
    if close:
        hint = f"did you mean {close[0]}? {hint}"
    raise UserError([Problem("--profile", f"unknown profile {profile!r}", hint)])
