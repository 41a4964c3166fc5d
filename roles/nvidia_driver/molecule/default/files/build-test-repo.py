#!/usr/bin/python3
"""TEST REPOSITORY ONLY: a signed apt repository of empty packages with the names, versions,
revisions and Depends: of NVIDIA's packages, so that molecule installs from it with apt's real
resolver. It proves repository configuration, key check, version resolution through
metapackages, pins, holds and the drift check; it proves nothing about NVIDIA's packages'
contents (no driver, no module, no DKMS build).

Usage: build-test-repo.py REPO GRAPH...
A graph file has one package per line, "package;version;depends;unit;execstart":
- version may contain @V@, and the line is then built once per version of the file's
  "#versions ..." line (the driver release's packages all share one version);
- depends is a Debian Depends: field (with @V@ for the same version);
- unit names a systemd unit the package ships (a stand-in, nothing runs a GPU), with execstart
  its ExecStart= (default /bin/sleep infinity: the stand-in must never be started in a container).
"""

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

repo = Path(sys.argv[1])
repo.mkdir(parents=True, exist_ok=True)
work = Path(tempfile.mkdtemp())
built = set()
for graph in sys.argv[2:]:
    versions = ["-"]
    for raw in Path(graph).read_text().splitlines():
        if raw.startswith("#versions "):
            versions = raw.split()[1:]
            continue
        if not raw.strip() or raw.startswith("#"):
            continue
        pkg, ver, deps, unit, execstart = (raw.split(";") + [""] * 5)[:5]
        for v in versions if "@V@" in ver else [ver]:
            version = ver.replace("@V@", v)
            if (pkg, version) in built:
                continue
            built.add((pkg, version))
            root = work / f"{pkg}-{version}"
            (root / "DEBIAN").mkdir(parents=True)
            control = [
                f"Package: {pkg}",
                f"Version: {version}",
                "Architecture: all",
                "Maintainer: gpufleet test repository <test@gpufleet.invalid>",
            ]
            if deps:
                control.append("Depends: " + deps.replace("@V@", v))
            control.append(
                f"Description: gpufleet TEST package named like NVIDIA's {pkg}"
                " (not NVIDIA software)"
            )
            (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
            doc = root / "usr/share/doc" / pkg
            doc.mkdir(parents=True)
            (doc / "README.test").write_text(f"gpufleet test package {pkg} {version}\n")
            if unit:
                units = root / "lib/systemd/system"
                units.mkdir(parents=True)
                (units / f"{unit}.service").write_text(
                    "[Unit]\n"
                    f"Description=gpufleet TEST stand-in for {unit} (no GPU in a container)\n\n"
                    "[Service]\n"
                    f"ExecStart={execstart or '/bin/sleep infinity'}\n\n"
                    "[Install]\nWantedBy=multi-user.target\n"
                )
            deb = repo / f"{pkg}_{version.split(':')[-1]}_all.deb"
            subprocess.run(
                ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
entries = []
for deb in sorted(repo.glob("*.deb")):
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
    )
    data = deb.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    entries.append(
        fields.stdout.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\nSHA256: {sha}\n"
    )
packages = "\n".join(entries)
(repo / "Packages").write_text(packages)
env = {**os.environ, "GNUPGHOME": str(work / "gnupg")}
(work / "gnupg").mkdir(mode=0o700)


def gpg(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--batch", "--quiet", *args], check=True, env=env, **kw)


gpg(
    "--passphrase",
    "",
    "--quick-gen-key",
    "gpufleet TEST repository <test@gpufleet.invalid>",
    "ed25519",
    "sign",
    "never",
)
(repo / "test-repo-key.asc").write_bytes(gpg("--armor", "--export", capture_output=True).stdout)
listing = gpg("--with-colons", "--list-keys", capture_output=True, text=True).stdout
fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
(repo / "test-repo-key.fpr").write_text(fpr + "\n")
digest = hashlib.sha256(packages.encode()).hexdigest()
date = subprocess.run(["date", "-Ru"], check=True, capture_output=True, text=True).stdout.strip()
(repo / "Release").write_text(
    "Origin: gpufleet-test\nLabel: gpufleet TEST repository\n"
    f"Date: {date}\nSHA256:\n {digest} {len(packages.encode())} Packages\n"
)
gpg("--yes", "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release"))
subprocess.run(["rm", "-rf", str(work)], check=True)
