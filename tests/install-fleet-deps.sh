#!/usr/bin/env bash
# Install the Debian packages tests/fleet.py needs; a no-op when they are present.
# Safe to run again and again: it only calls apt-get when something is missing.
set -euo pipefail

# openssh-server: sshd inside each host; openssh-client: ssh-keygen and the ssh Ansible uses;
# util-linux: unshare, pivot_root, mount.
packages=(openssh-server openssh-client util-linux)

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for package in "${packages[@]}"; do
    is_installed "$package" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "fleet dependencies already installed" >&2
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    # Not an error: the fleet tests then skip, or fail under CI, saying what is missing.
    echo "install-fleet-deps.sh: not root, cannot install: ${missing[*]}" >&2
    exit 0
fi

# Keep the package's postinst from starting a system sshd on port 22: the fleet runs its own
# sshd per host and never needs one on the machine. Only add the policy when none exists.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
echo "installing: ${missing[*]}" >&2
apt-get update -qq
# Wait for a dpkg lock held by another install rather than fail.
apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2
