#!/usr/bin/env bash
# Usage: tests/e2e/podman.sh setup [MIRROR_ADDR]   write a private podman config; prints env.sh
#        tests/e2e/podman.sh purge                 remove its images, mounts and the directory
#   Everything lives in $E2E_ROOT/podman (E2E_ROOT: /tmp/df-e2e); nothing is written to /etc:
#     registries.conf  [[registry]] prefix = location = registry.test:${E2E_REGISTRY_HTTP_PORT:-5000},
#                      insecure = true (plain HTTP), and, when MIRROR_ADDR (host:port, e.g.
#                      127.0.0.1:65001) is given, a [[registry.mirror]] location = MIRROR_ADDR,
#                      insecure = true. Without MIRROR_ADDR, pulls go straight to the registry.
#     storage.conf     driver vfs, graphroot root/, runroot run/
#     containers.conf  events_logger file, cgroup_manager cgroupfs (no systemd or journald
#                      here), engine tmp_dir and image_copy_tmp_dir below $E2E_ROOT/podman
#     env.sh           exports CONTAINERS_REGISTRIES_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_CONF
#   Use:  . "$(tests/e2e/podman.sh setup 127.0.0.1:65001)"; podman pull registry.test:5000/e2e/img:t1
#   TLS registry: podman pull --cert-dir $E2E_ROOT/pki/trust registry.test:5443/...
#   Re-running setup rewrites the config (switching the mirror on or off); images stay.
#   A podman mirror request carries neither X-Dragonfly-Registry nor ?ns=: only
#   GET /v2/<repo>/... with Host: MIRROR_ADDR, so the mirror must know its origin itself.
#   With insecure = true podman first opens TLS to the mirror's port and, when that fails,
#   repeats in plain HTTP; it then wants GET /v2/ to answer 200 or 401 (on a 404 it tries
#   /v1/_ping and gives the mirror up). Whenever the mirror fails, podman silently falls back
#   to the registry, so a test must check the mirror's or the registry's logs.
#   'podman run' does not work in this sandbox (runc cannot set rlimits); pull/images/rmi do.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
DIR=$E2E_ROOT/podman
REG=registry.test:${E2E_REGISTRY_HTTP_PORT:-5000}

case ${1:-} in
    setup)
        MIRROR=${2:-}
        case $MIRROR in *://*|*/*) e2e_die "MIRROR_ADDR is host:port, without scheme or path" ;; esac
        e2e_need podman
        mkdir -p "$DIR/root" "$DIR/run" "$DIR/tmp" "$DIR/copy-tmp" "$DIR/networks"
        {
            echo "# written by tests/e2e/podman.sh"
            echo 'unqualified-search-registries = []'
            echo
            echo '[[registry]]'
            echo "prefix = \"$REG\""
            echo "location = \"$REG\""
            echo 'insecure = true'
            if [ -n "$MIRROR" ]; then
                echo
                echo '[[registry.mirror]]'
                echo "location = \"$MIRROR\""
                echo 'insecure = true'
            fi
        } > "$DIR/registries.conf"
        cat > "$DIR/storage.conf" <<CONF
# written by tests/e2e/podman.sh
[storage]
driver = "vfs"
graphroot = "$DIR/root"
runroot = "$DIR/run"
CONF
        cat > "$DIR/containers.conf" <<CONF
# written by tests/e2e/podman.sh
[engine]
events_logger = "file"
events_logfile_path = "$DIR/events.log"
cgroup_manager = "cgroupfs"
tmp_dir = "$DIR/tmp"
image_copy_tmp_dir = "$DIR/copy-tmp"

[network]
network_config_dir = "$DIR/networks"
CONF
        cat > "$DIR/env.sh" <<CONF
# source me: podman (and skopeo) then use the config in $DIR
export CONTAINERS_REGISTRIES_CONF=$DIR/registries.conf
export CONTAINERS_STORAGE_CONF=$DIR/storage.conf
export CONTAINERS_CONF=$DIR/containers.conf
CONF
        e2e_log "podman config in $DIR (mirror: ${MIRROR:-none})"
        echo "$DIR/env.sh"
        ;;
    purge)
        if [ -f "$DIR/env.sh" ] && command -v podman >/dev/null; then
            ( . "$DIR/env.sh"; podman rmi -af >/dev/null 2>&1 || true )
        fi
        e2e_umount_under "$DIR"
        rm -rf "$DIR"
        ;;
    *) sed -n '2,3p' "$0" >&2; exit 2 ;;
esac
