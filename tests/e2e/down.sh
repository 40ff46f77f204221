#!/usr/bin/env bash
# Usage: tests/e2e/down.sh [--purge]
#   Tears down everything the tests/e2e scripts started, each daemon by its recorded pid
#   only: containerd (containerd.sh down), both registries (registry.sh down), and removes the
#   "registry.test # df-e2e" line from /etc/hosts (pki.sh down).
#   --purge: also unmounts and deletes all state: containerd root, podman storage, registry
#   data and logs, the PKI and the image cache, i.e. the whole $E2E_ROOT (default /tmp/df-e2e).
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/lib.sh"
PURGE=
case ${1:-} in --purge) PURGE=--purge ;; "") ;; *) sed -n '2p' "$0" >&2; exit 2 ;; esac
rc=0
"$HERE/containerd.sh" down $PURGE || rc=1
"$HERE/registry.sh" down $PURGE || rc=1
if [ -n "$PURGE" ]; then "$HERE/podman.sh" purge || rc=1; fi
"$HERE/pki.sh" down $PURGE || rc=1
if [ -n "$PURGE" ] && [ -d "$E2E_ROOT" ]; then
    root=$(readlink -f "$E2E_ROOT")
    case $root in /*/*) ;; *) e2e_die "refusing to delete E2E_ROOT=$root (want at least two levels deep)" ;; esac
    e2e_umount_under "$root"
    rm -rf "$root"
fi
exit $rc
