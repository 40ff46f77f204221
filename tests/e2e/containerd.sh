#!/usr/bin/env bash
# Usage: tests/e2e/containerd.sh up                 start a private containerd (idempotent)
#        tests/e2e/containerd.sh down [--purge]     stop it (--purge: unmount, delete its state)
#        tests/e2e/containerd.sh clean              remove images, leases, content, snapshots in ALL namespaces
#        tests/e2e/containerd.sh hosts REGISTRY SERVER_URL [MIRROR_URL [HEADER]]
#        tests/e2e/containerd.sh hosts --remove REGISTRY
#   A containerd 1.6 (Debian package, /usr/bin/containerd) of our own, config version 2,
#   overlayfs snapshotter; everything under $E2E_ROOT/containerd (E2E_ROOT: /tmp/df-e2e):
#     containerd.sock (+ .ttrpc), root/, state/, config.toml, containerd.log, certs.d/.
#   /run/containerd and /var/lib/containerd are not touched. Its environment is passed on
#   (HTTPS_PROXY etc. matter for CRI pulls, which run in the daemon).
#   'up' prints, one per line, for  export $(tests/e2e/containerd.sh up):
#     CONTAINERD_ADDRESS=$E2E_ROOT/containerd/containerd.sock
#     E2E_CONTAINERD_HOSTS_DIR=$E2E_ROOT/containerd/certs.d
#   The hosts dir is the CRI plugin's registry config_path. ctr does NOT read config_path:
#   pass --hosts-dir "$E2E_CONTAINERD_HOSTS_DIR" to 'ctr images pull' / 'ctr content fetch'.
#   'hosts' writes certs.d/REGISTRY/hosts.toml (REGISTRY as in image refs, host:port, or
#   _default for every registry). Without MIRROR_URL, SERVER_URL is also written as a
#   [host."SERVER_URL"] table: containerd 1.6 drops a hosts.toml that has no [host] table
#   ("invalid host tree"), its ca included. With MIRROR_URL, pulls go to the mirror first,
#   with the header HEADER (default X-Dragonfly-Registry): SERVER_URL and ?ns=REGISTRY, and
#   fall back to SERVER_URL. https URLs are trusted with ca = $E2E_ROOT/pki/ca.crt. The
#   file is re-read on every pull; no restart needed.
#   'clean' exists because content is shared across namespaces: a blob that CRI pulled into
#   k8s.io is not fetched again by ctr in "default", so a test could pass with no traffic.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/lib.sh"
DIR=$E2E_ROOT/containerd
SOCK=$DIR/containerd.sock
HOSTS=$DIR/certs.d
CA=$E2E_ROOT/pki/ca.crt

ctr_() { ctr --address "$SOCK" "$@"; }

write_config() {
    cat > "$1" <<TOML
# written by tests/e2e/containerd.sh
version = 2
root = "$DIR/root"
state = "$DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  level = "${E2E_CONTAINERD_LOG_LEVEL:-info}"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.test:5000/pause:3.6"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "$HOSTS"
TOML
}

ready() { [ -S "$SOCK" ] && ctr_ version >/dev/null 2>&1; }

do_up() {
    e2e_need containerd ctr
    mkdir -p "$DIR/root" "$DIR/state" "$HOSTS"
    chmod 0711 "$DIR/root"
    write_config "$DIR/config.toml.new"
    if e2e_alive containerd "$DIR"; then
        if cmp -s "$DIR/config.toml.new" "$DIR/config.toml"; then
            rm -f "$DIR/config.toml.new"
        else
            e2e_log "containerd config changed, restarting"
            e2e_stop containerd "$DIR"
        fi
    fi
    if ! e2e_alive containerd "$DIR"; then
        mv "$DIR/config.toml.new" "$DIR/config.toml"
        rm -f "$SOCK" "$SOCK.ttrpc"
        e2e_start containerd "$DIR" "$DIR/containerd.log" -- /usr/bin/containerd --config "$DIR/config.toml"
    fi
    for _ in $(seq 1 200); do
        ready && break
        e2e_alive containerd "$DIR" || { tail -20 "$DIR/containerd.log" >&2; e2e_die "containerd exited"; }
        sleep 0.1
    done
    ready || { tail -20 "$DIR/containerd.log" >&2; e2e_die "containerd socket $SOCK not ready"; }
    e2e_log "containerd up (pid $(e2e_pid containerd "$DIR"), log $DIR/containerd.log)"
    echo "CONTAINERD_ADDRESS=$SOCK"
    echo "E2E_CONTAINERD_HOSTS_DIR=$HOSTS"
}

do_clean() {
    ready || e2e_die "containerd is not running (tests/e2e/containerd.sh up)"
    local ns left=0 items
    for ns in $(ctr_ namespaces ls -q); do
        items=$(ctr_ -n "$ns" images ls -q)
        [ -z "$items" ] || ctr_ -n "$ns" images rm --sync $items >/dev/null
        items=$(ctr_ -n "$ns" leases ls -q)
        [ -z "$items" ] || ctr_ -n "$ns" leases rm --sync $items >/dev/null 2>&1 || true
        items=$(ctr_ -n "$ns" content ls -q)
        [ -z "$items" ] || ctr_ -n "$ns" content rm $items >/dev/null 2>&1 || true
        # children before parents: keep going while something can be removed
        for _ in 1 2 3 4 5 6 7 8; do
            items=$(ctr_ -n "$ns" snapshots --snapshotter overlayfs ls 2>/dev/null | awk 'NR > 1 {print $1}')
            [ -n "$items" ] || break
            ctr_ -n "$ns" snapshots --snapshotter overlayfs rm $items >/dev/null 2>&1 || true
        done
    done
    for ns in $(ctr_ namespaces ls -q); do
        left=$((left + $(ctr_ -n "$ns" content ls -q | wc -l) + $(ctr_ -n "$ns" images ls -q | wc -l)))
    done
    [ "$left" = 0 ] || e2e_die "containerd clean: $left images/blobs left"
    e2e_log "containerd: no images and no content left in any namespace"
}

do_hosts() {
    if [ "${1:-}" = --remove ]; then
        rm -rf "${HOSTS:?}/${2:?registry}"
        return 0
    fi
    local reg=${1:?registry} server=${2:?server url} mirror=${3:-} header=${4:-X-Dragonfly-Registry} f
    case $server in http://*|https://*) ;; *) e2e_die "SERVER_URL must start with http:// or https://" ;; esac
    case $mirror in ""|http://*|https://*) ;; *) e2e_die "MIRROR_URL must start with http:// or https://" ;; esac
    mkdir -p "$HOSTS/$reg"
    f=$HOSTS/$reg/hosts.toml
    {
        echo "# written by tests/e2e/containerd.sh"
        echo "server = \"$server\""
        case $server in https://*) echo "ca = \"$CA\"" ;; esac
        echo
        if [ -n "$mirror" ]; then
            echo "[host.\"$mirror\"]"
            echo "  capabilities = [\"pull\", \"resolve\"]"
            case $mirror in https://*) echo "  ca = \"$CA\"" ;; esac
            echo "  [host.\"$mirror\".header]"
            echo "    $header = [\"$server\"]"
        else
            echo "[host.\"$server\"]"
            echo "  capabilities = [\"pull\", \"resolve\", \"push\"]"
            case $server in https://*) echo "  ca = \"$CA\"" ;; esac
        fi
    } > "$f.tmp"
    mv "$f.tmp" "$f"
    e2e_log "wrote $f"
}

case ${1:-} in
    up) do_up ;;
    down)
        e2e_stop containerd "$DIR"
        rm -f "$SOCK" "$SOCK.ttrpc"
        if [ "${2:-}" = --purge ]; then e2e_umount_under "$DIR"; rm -rf "$DIR"; fi ;;
    clean) do_clean ;;
    hosts) shift; do_hosts "$@" ;;
    *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
