#!/usr/bin/env bash
# Usage: tests/e2e/install.sh
#   Installs the third-party programs the end-to-end tests drive, from Debian 12 packages:
#     docker-registry (distribution 2.8), skopeo, containerd, runc, podman, openssl,
#     ca-certificates, python3, python3-yaml (PyYAML: the YAML 1.1 round trip of the daemon
#     configs), curl, apache2-utils (htpasswd, for registry.sh --auth),
#     systemd (systemd-analyze verify checks the unit files dfctl writes), tmux (the
#     `dfctl top` screen test drives the TUI in it).
#   Only missing packages are installed (dpkg-query check), so with everything present it
#   is a no-op apart from printing the versions. 'apt-get update' runs only when the
#   install needs it (no package lists yet, or the first attempt fails).
#   Package postinst scripts would start system services (docker-registry on *:5000, a
#   system containerd): when /usr/sbin/policy-rc.d does not exist, one that exits 101 is
#   put there for the duration of the install and removed afterwards.
#   Needs root. apt output goes to ${E2E_ROOT:-/tmp/df-e2e}/install/apt.log.
#   Then k8s-tools.sh installs helm and kubernetes-validate for the Helm chart tests.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"

PKGS=(docker-registry skopeo containerd runc podman openssl ca-certificates python3 python3-yaml curl apache2-utils systemd tmux
      lintian dpkg-dev binutils)

missing=()
for p in "${PKGS[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || e2e_die "missing packages (${missing[*]}) and not root"
    mkdir -p "$E2E_ROOT/install"
    LOG=$E2E_ROOT/install/apt.log
    : > "$LOG"
    POLICY=/usr/sbin/policy-rc.d
    own_policy=0
    cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$POLICY"; fi; }
    trap cleanup EXIT
    if [ ! -e "$POLICY" ] && [ ! -L "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, from tests/e2e/install.sh: no service starts during the install\nexit 101\n' > "$POLICY"
        chmod 0755 "$POLICY"
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    APT=(apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    apt_update() { e2e_log "apt-get update"; "${APT[@]}" update >>"$LOG" 2>&1; }
    apt_install() { "${APT[@]}" install --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1; }
    e2e_log "installing: ${missing[*]}"
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then apt_update || true; fi
    if ! apt_install; then
        apt_update || { tail -20 "$LOG" >&2; e2e_die "apt-get update failed (log $LOG)"; }
        apt_install || { tail -20 "$LOG" >&2; e2e_die "apt-get install failed (log $LOG)"; }
    fi
    cleanup; trap - EXIT
    for p in "${missing[@]}"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] \
            || e2e_die "$p is still not installed (log $LOG)"
    done
fi

# the versions, one line each (what the tests run against)
ver() { printf '%-16s %s\n' "$1" "$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null)"; }
for p in "${PKGS[@]}"; do ver "$p"; done

# helm and kubernetes-validate, for the chart tests (tests/it/helm.rs)
K8S_BIN=$("$(dirname "$(readlink -f "$0")")/k8s-tools.sh")
printf '%-16s %s\n' helm "$("$K8S_BIN/helm" version --short)"
printf '%-16s %s\n' kubernetes-validate "$("$K8S_BIN/kubernetes-validate" --version 2>&1)"
