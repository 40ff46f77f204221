#!/usr/bin/env bash
# Usage: tests/e2e/registry.sh up [--auth]     start both registries (idempotent)
#        tests/e2e/registry.sh down [--purge]  stop them (--purge: delete storage, logs, config)
#        tests/e2e/registry.sh status          print what runs, exit 1 if not both up
#   The real Docker Distribution registry (Debian docker-registry 2.8, /usr/bin/docker-registry),
#   started by hand in the background with configs written here (never the packaged
#   /etc/docker/registry/config.yml, which listens on *:5000 with auth):
#     http  http://registry.test:${E2E_REGISTRY_HTTP_PORT:-5000}   listening on 127.0.0.1 only
#     tls   https://registry.test:${E2E_REGISTRY_TLS_PORT:-5443}   cert from pki.sh (CA
#           $E2E_ROOT/pki/ca.crt; skopeo/podman: --cert-dir $E2E_ROOT/pki/trust)
#   Both share one storage dir ($E2E_ROOT/registry/data) and one http.secret, so an image
#   pushed to one is served by the other. storage.redirect is disabled (blobs are served by
#   the registry itself) and access logs are on: $E2E_ROOT/registry/{http,tls}.log (appended
#   across restarts; registry-log.sh counts requests in them).
#   --auth: htpasswd basic auth on both, user e2e, password e2e-pass ($E2E_ROOT/registry/htpasswd,
#   bcrypt, made with htpasswd from apache2-utils). 'up' without --auth turns it off again;
#   a registry whose config changes is restarted, one whose config is unchanged is left alone.
#   $E2E_ROOT/registry/mode holds "auth" or "open" (push-image.sh reads it).
#   Returns once GET /v2/ answers on both (200, or 401 with --auth).
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/lib.sh"
DIR=$E2E_ROOT/registry
HTTP_PORT=${E2E_REGISTRY_HTTP_PORT:-5000}
TLS_PORT=${E2E_REGISTRY_TLS_PORT:-5443}
HOST=registry.test
USER_NAME=e2e
USER_PASS=e2e-pass

write_cfg() {  # write_cfg FILE PORT tls|plain auth|open
    {
        cat <<YML
# written by tests/e2e/registry.sh
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: false
http:
  addr: 127.0.0.1:$2
  secret: df-e2e-shared-secret-for-both-instances
  headers:
    X-Content-Type-Options: [nosniff]
YML
        if [ "$3" = tls ]; then
            cat <<YML
  tls:
    certificate: $E2E_ROOT/pki/$HOST.crt
    key: $E2E_ROOT/pki/$HOST.key
YML
        fi
        if [ "$4" = auth ]; then
            cat <<YML
auth:
  htpasswd:
    realm: df-e2e
    path: $DIR/htpasswd
YML
        fi
    } > "$1"
}

v2_status() {  # v2_status http|tls -> HTTP status of GET /v2/ (000 if no answer)
    local url ca=()
    if [ "$1" = tls ]; then url=https://$HOST:$TLS_PORT/v2/; ca=(--cacert "$E2E_ROOT/pki/ca.crt")
    else url=http://$HOST:$HTTP_PORT/v2/; fi
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${ca[@]}" "$url" || true
}

start_one() {  # start_one http|tls PORT MODE
    local name=$1 port=$2 mode=$3 cfg="$DIR/$1.yml" want st
    write_cfg "$cfg.new" "$port" "$([ "$name" = tls ] && echo tls || echo plain)" "$mode"
    if e2e_alive "$name" "$DIR"; then
        if [ "$name" = tls ] && [ "$E2E_ROOT/pki/$HOST.crt" -nt "$cfg" ]; then
            e2e_log "registry $name: certificate renewed, restarting"
            e2e_stop "$name" "$DIR"
        elif cmp -s "$cfg.new" "$cfg"; then
            rm -f "$cfg.new"; e2e_log "registry $name already running (pid $(e2e_pid "$name" "$DIR"))"
        else
            e2e_log "registry $name: config changed, restarting"
            e2e_stop "$name" "$DIR"
        fi
    fi
    if ! e2e_alive "$name" "$DIR"; then
        mv "$cfg.new" "$cfg"
        for _ in $(seq 1 50); do e2e_port_busy 127.0.0.1 "$port" || break; sleep 0.1; done
        e2e_port_busy 127.0.0.1 "$port" && e2e_die "127.0.0.1:$port is in use by another program"
        e2e_start "$name" "$DIR" "$DIR/$name.log" -- /usr/bin/docker-registry serve "$cfg"
    fi
    want=200; [ "$mode" = auth ] && want=401
    for _ in $(seq 1 200); do
        st=$(v2_status "$name")
        [ "$st" = "$want" ] && return 0
        e2e_alive "$name" "$DIR" || { tail -20 "$DIR/$name.log" >&2; e2e_die "registry $name exited"; }
        sleep 0.1
    done
    tail -20 "$DIR/$name.log" >&2
    e2e_die "registry $name: GET /v2/ answers $st, expected $want"
}

case ${1:-} in
    up)
        mode=open
        case ${2:-} in --auth) mode=auth ;; "") ;; *) e2e_die "unknown option $2" ;; esac
        e2e_need docker-registry curl
        "$HERE/pki.sh" up >/dev/null
        mkdir -p "$DIR/data"
        if [ $mode = auth ]; then
            e2e_need htpasswd
            if ! { [ -s "$DIR/htpasswd" ] && htpasswd -vb "$DIR/htpasswd" "$USER_NAME" "$USER_PASS" >/dev/null 2>&1; }; then
                htpasswd -Bbn "$USER_NAME" "$USER_PASS" > "$DIR/htpasswd.tmp" 2>/dev/null
                mv "$DIR/htpasswd.tmp" "$DIR/htpasswd"
            fi
        fi
        start_one http "$HTTP_PORT" $mode
        start_one tls "$TLS_PORT" $mode
        echo $mode > "$DIR/mode"
        e2e_log "registries up ($mode): http://$HOST:$HTTP_PORT https://$HOST:$TLS_PORT"
        ;;
    down)
        e2e_stop http "$DIR"
        e2e_stop tls "$DIR"
        rm -f "$DIR/mode"
        if [ "${2:-}" = --purge ]; then rm -rf "$DIR"; fi
        ;;
    status)
        rc=0
        for n in http tls; do
            if e2e_alive $n "$DIR"; then echo "$n: running pid $(e2e_pid $n "$DIR"), GET /v2/ -> $(v2_status $n)"
            else echo "$n: not running"; rc=1; fi
        done
        exit $rc ;;
    *) sed -n '2,4p' "$0" >&2; exit 2 ;;
esac
