"""How verdicts say sizes, hosts and distances from a limit, the same everywhere."""

from __future__ import annotations


def fmt_size(size: int) -> str:
    """Bytes as nccl-tests users say them: 16 GiB, 512 MiB, 8 B."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def fmt_rate(value: float) -> str:
    """A rate with the digits that matter: 674, 47.8, 0.0555 (a CPU's "TFLOPS" in the lab)."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


def fmt_hosts(hosts: list[str]) -> str:
    if not hosts:
        return "unknown hosts"
    if len(hosts) <= 3:
        return "+".join(hosts)
    return f"{hosts[0]}..{hosts[-1]} ({len(hosts)} nodes)"


def pct_below(value: float, limit: float) -> float:
    return 100 * (limit - value) / limit if limit else 0.0


def below(value: float, limit: float, what: str) -> str:
    """`12% below the floor of ...`, never `0% below`: one decimal under 1%, and
    `at the ...` when the value is the limit to a twentieth of a percent."""
    pct = pct_below(value, limit)
    if pct < 0.05:
        return f"at {what}"
    if pct < 1:
        return f"{pct:.1f}% below {what}"
    return f"{pct:.0f}% below {what}"
