#!/bin/sh
# TEST REPOSITORY ONLY. Builds a tiny signed apt repository of dummy packages that carry the
# names and version strings of NVIDIA's real ones, so molecule can prove the role's repository
# configuration, key check, pinning, holds, exact versions and drift check for real.
# It proves nothing about NVIDIA's packages themselves (their contents, dependencies, DKMS).
# Usage: build-test-repo.sh DIR "PACKAGE VERSION [UNIT]" ...
#   UNIT: name of a stand-in systemd unit the dummy package ships (runs sleep, no GPU).
set -eu
repo=$1; shift
work=$(mktemp -d)
mkdir -p "$repo"
for spec in "$@"; do
  set -- $spec
  pkg=$1; ver=$2; unit=${3:-}
  root="$work/$pkg-$ver"
  mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$pkg"
  cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $ver
Architecture: all
Maintainer: gpufleet test repository <test@gpufleet.invalid>
Description: gpufleet TEST dummy package named like NVIDIA's $pkg (not NVIDIA software)
CONTROL
  echo "gpufleet test dummy $pkg $ver" > "$root/usr/share/doc/$pkg/README.test"
  if [ -n "$unit" ]; then
    mkdir -p "$root/lib/systemd/system"
    cat > "$root/lib/systemd/system/$unit.service" <<UNIT
[Unit]
Description=gpufleet TEST stand-in for $unit (no GPU in a container)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
UNIT
  fi
  dpkg-deb --root-owner-group --build "$root" "$repo/${pkg}_${ver#*:}_all.deb" >/dev/null
done
cd "$repo"
: > Packages
for deb in *.deb; do
  dpkg-deb -f "$deb" >> Packages
  printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$deb" "$(stat -c %s "$deb")" \
    "$(sha256sum "$deb" | cut -d' ' -f1)" >> Packages
done
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'gpufleet TEST repository <test@gpufleet.invalid>' ed25519 sign never
gpg --batch --armor --export > test-repo-key.asc
gpg --batch --with-colons --list-keys | awk -F: '$1 == "fpr" { print $10; exit }' > test-repo-key.fpr
{
  echo "Origin: gpufleet-test"
  echo "Label: gpufleet TEST repository"
  echo "Date: $(date -Ru)"
  echo "SHA256:"
  printf ' %s %s Packages\n' "$(sha256sum Packages | cut -d' ' -f1)" "$(stat -c %s Packages)"
} > Release
gpg --batch --yes --clearsign -o InRelease Release
rm -rf "$work"
