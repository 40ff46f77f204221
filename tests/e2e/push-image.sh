#!/usr/bin/env bash
# Usage: tests/e2e/push-image.sh [--tag T] [--layers SIZES] [--seed S] [--repo REPO]
#   Builds a synthetic image with make-image.py (defaults: tag latest, layers 1M, seed 1,
#   repo e2e/img) and pushes it with skopeo to both registries of registry.sh:
#     docker://registry.test:${E2E_REGISTRY_HTTP_PORT:-5000}/REPO:T   (--dest-tls-verify=false)
#     docker://registry.test:${E2E_REGISTRY_TLS_PORT:-5443}/REPO:T    (--dest-cert-dir $E2E_ROOT/pki/trust)
#   They share storage, so the second push only writes the tag. Digests are preserved
#   (skopeo --preserve-digests) and checked against the registry afterwards.
#   The OCI layout is cached in $E2E_ROOT/images/<key>/ (key = make-image.py + tag + layers
#   + seed), so a repeated call only pushes (a no-op for the registry). When registry.sh runs
#   with --auth, the push logs in as e2e/e2e-pass.
#   Prints make-image.py's JSON line plus "repo" and "refs": {"http": "registry.test:5000/REPO:T",
#   "tls": "registry.test:5443/REPO:T"}.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/lib.sh"
TAG=latest LAYERS=1M SEED=1 REPO=e2e/img
while [ $# -gt 0 ]; do
    case $1 in
        --tag) TAG=$2; shift 2 ;;
        --layers) LAYERS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --repo) REPO=$2; shift 2 ;;
        *) sed -n '2p' "$0" >&2; exit 2 ;;
    esac
done
e2e_need skopeo python3 flock
HTTP=registry.test:${E2E_REGISTRY_HTTP_PORT:-5000}
TLS=registry.test:${E2E_REGISTRY_TLS_PORT:-5443}
TRUST=$E2E_ROOT/pki/trust

key=$( { sha256sum < "$HERE/make-image.py"; printf '%s\0%s\0%s' "$TAG" "$LAYERS" "$SEED"; } | sha256sum | cut -c1-16)
CACHE=$E2E_ROOT/images/$key
mkdir -p "$E2E_ROOT/images"
exec 9>"$CACHE.lock"
flock 9
if [ -s "$CACHE/image.json" ] && [ -f "$CACHE/oci/index.json" ]; then
    e2e_log "image cached in $CACHE"
else
    rm -rf "$CACHE" "$CACHE.tmp"
    mkdir -p "$CACHE.tmp"
    python3 "$HERE/make-image.py" "$CACHE.tmp/oci" --tag "$TAG" --layers "$LAYERS" --seed "$SEED" > "$CACHE.tmp/image.json.tmp"
    # the layout path in the JSON must name the final directory
    python3 - "$CACHE.tmp/image.json.tmp" "$CACHE/oci" > "$CACHE.tmp/image.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["dir"] = sys.argv[2]; print(json.dumps(d))
PY
    rm -f "$CACHE.tmp/image.json.tmp"
    mv "$CACHE.tmp" "$CACHE"
    e2e_log "built image in $CACHE ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$CACHE/image.json") s)"
fi

creds=()
if [ "$(cat "$E2E_ROOT/registry/mode" 2>/dev/null || true)" = auth ]; then creds=(--dest-creds e2e:e2e-pass); fi
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest_digest"])' "$CACHE/image.json")
push() {  # push DEST-REGISTRY SKOPEO-TLS-ARGS...
    local dest=$1 out got; shift
    out=$(skopeo copy --quiet --preserve-digests --retry-times 2 "$@" "${creds[@]}" \
        "oci:$CACHE/oci:$TAG" "docker://$dest/$REPO:$TAG" 2>&1) \
        || { printf '%s\n' "$out" >&2; e2e_die "skopeo copy to $dest failed"; }
    local src_creds=(); [ ${#creds[@]} -eq 0 ] || src_creds=(--creds e2e:e2e-pass)
    local tls=("${@/--dest-/--}")
    got=$(skopeo inspect --format '{{.Digest}}' "${tls[@]}" "${src_creds[@]}" "docker://$dest/$REPO:$TAG") \
        || e2e_die "skopeo inspect docker://$dest/$REPO:$TAG failed"
    [ "$got" = "$want" ] || e2e_die "$dest/$REPO:$TAG has digest $got, built $want"
}
push "$HTTP" --dest-tls-verify=false
push "$TLS" --dest-cert-dir "$TRUST"
e2e_log "pushed $REPO:$TAG ($want) to $HTTP and $TLS"

python3 - "$CACHE/image.json" "$REPO" "$HTTP/$REPO:$TAG" "$TLS/$REPO:$TAG" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["repo"] = sys.argv[2]
d["refs"] = {"http": sys.argv[3], "tls": sys.argv[4]}
print(json.dumps(d))
PY
