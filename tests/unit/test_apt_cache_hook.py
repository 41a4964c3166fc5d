"""The lab's apt proxy hook sends repositories on the node itself and on other ports
than 80 around the cache (apt-cacher-ng refuses them with 403 "prohibited port").

The URLs are constructed; the system test tests/integration/test_apt_cache.py proves
the cached path with a real apt-cacher-ng.
"""

from __future__ import annotations

import subprocess
from importlib.resources import files

import pytest

HOOK = files("gpufleet.lab") / "aptcache" / "apt-cache-detect"


def detect(url: str) -> str:
    proc = subprocess.run(
        ["sh", str(HOOK), url], capture_output=True, text=True, timeout=10, check=True
    )
    return proc.stdout.strip()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/InRelease",  # molecule's signed TEST repository
        "http://127.0.0.1/debian/dists/bookworm/InRelease",
        "http://localhost/pool/x.deb",
        "http://localhost:8080/pool/x.deb",
        "http://[::1]:80/pool/x.deb",
        "http://mirror.example.net:8080/debian/dists/bookworm/InRelease",
    ],
)
def test_local_and_other_port_repositories_bypass_the_cache(url: str) -> None:
    assert detect(url) == "DIRECT"


def test_a_debian_mirror_is_never_a_failure() -> None:
    # Through the cache when the gateway answers on its port, else DIRECT with a warning:
    # either way one line apt understands, exit 0.
    out = detect("http://deb.debian.org/debian/dists/bookworm/InRelease")
    assert out == "DIRECT" or (out.startswith("http://") and out.endswith(":3142"))
