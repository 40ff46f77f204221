#!/usr/bin/env bash
# Usage: tests/e2e/selftest.sh [--keep]
#   Checks the e2e toolkit itself against the real third-party programs, with no P2P daemon:
#   install.sh, pki.sh, registry.sh up (HTTP + TLS), push-image.sh of a 3-layer image
#   (1 MiB, 200 MiB, 64 KiB), then, straight from the registries:
#     skopeo copy from the TLS registry to dir:            (blobs verified by sha256)
#     ctr content fetch with a hosts.toml whose server is the HTTP registry, twice, with
#       containerd.sh clean in between (the second fetch must download again)
#     podman pull from the HTTP registry, registries.conf without a mirror
#     registry-log.sh: each layer was GET once per client from the registry it used
#     registry.sh up --auth (401 without, 200 with e2e/e2e-pass) and back
#   and finally tears everything down (down.sh --purge) and checks nothing is left.
#   Prints one PASS/FAIL line per check, timings, and "N passed, M failed"; exits 1 if any
#   check failed. --keep leaves everything running (no teardown checks).
#   It uses the fixed ports of registry.sh and $E2E_ROOT (default /tmp/df-e2e), so it
#   replaces, and at the end removes, any e2e environment already running there.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/lib.sh"
KEEP=0
case ${1:-} in --keep) KEEP=1 ;; "") ;; *) sed -n '2p' "$0" >&2; exit 2 ;; esac

PASS=0 FAIL=0
TIMINGS=()
WORK=$E2E_ROOT/selftest
T_START=$(date +%s.%N)
elapsed() { python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(date +%s.%N)"; }
pass() { PASS=$((PASS + 1)); echo "PASS $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
check() {  # check NAME CMD...  (CMD's output goes to $WORK/check.log)
    local name=$1; shift
    if "$@" >>"$WORK/check.log" 2>&1; then pass "$name"; else fail "$name"; fi
}
timed() {  # timed LABEL CMD...  runs CMD, records its duration; returns CMD's status
    local label=$1 t rc=0; shift
    t=$(date +%s.%N)
    "$@" || rc=$?
    TIMINGS+=("$(printf '%-44s %6s s' "$label" "$(elapsed "$t")")")
    return $rc
}
finish() {
    local rc=$?
    trap - EXIT
    if [ $KEEP = 0 ]; then
        timed "teardown (down.sh --purge)" "$HERE/down.sh" --purge >/dev/null 2>&1 && pass "down.sh --purge" || fail "down.sh --purge"
        if [ -e "$E2E_ROOT" ]; then fail "nothing left in $E2E_ROOT"; else pass "nothing left in $E2E_ROOT"; fi
        if grep -q '# df-e2e$' /etc/hosts; then fail "/etc/hosts line removed"; else pass "/etc/hosts line removed"; fi
        if e2e_port_busy 127.0.0.1 "${E2E_REGISTRY_HTTP_PORT:-5000}" || e2e_port_busy 127.0.0.1 "${E2E_REGISTRY_TLS_PORT:-5443}"; then
            fail "registry ports closed"; else pass "registry ports closed"; fi
    else
        e2e_log "--keep: everything stays up; tear down with tests/e2e/down.sh --purge"
    fi
    [ $rc = 0 ] || fail "selftest aborted (exit $rc), see above"
    echo "-- timings"
    printf '%s\n' "${TIMINGS[@]}"
    printf '%-44s %6s s\n' "total" "$(elapsed "$T_START")"
    echo "$PASS passed, $FAIL failed"
    [ $FAIL = 0 ]
}
trap finish EXIT
trap 'echo "selftest: line $LINENO failed: $BASH_COMMAND" >&2' ERR
need() { "$@" || { fail "$*"; exit 1; }; }   # a bring-up step the rest depends on

# --- bring-up ------------------------------------------------------------------------------
timed "install.sh" "$HERE/install.sh" >/dev/null || { fail install.sh; exit 1; }
pass "install.sh"
rm -rf "$WORK"; mkdir -p "$WORK"

timed "pki.sh up" need "$HERE/pki.sh" up >/dev/null
PKI=$E2E_ROOT/pki
check "server cert verifies against the CA" openssl verify -CAfile "$PKI/ca.crt" "$PKI/registry.test.crt"
check "CA has critical basicConstraints CA:TRUE" bash -c \
    "openssl x509 -in '$PKI/ca.crt' -noout -ext basicConstraints | grep -q critical && openssl x509 -in '$PKI/ca.crt' -noout -ext basicConstraints | grep -q 'CA:TRUE'"
check "server cert SANs and serverAuth" bash -c \
    "openssl x509 -in '$PKI/registry.test.crt' -noout -ext subjectAltName | grep -q 'DNS:registry.test, DNS:localhost, IP Address:127.0.0.1\$' &&
     openssl x509 -in '$PKI/registry.test.crt' -noout -ext extendedKeyUsage | grep -q 'TLS Web Server Authentication'"
check "pki/trust holds only ca.crt" bash -c "[ \"\$(ls -A '$PKI/trust')\" = ca.crt ]"
before=$(sha256sum "$PKI/registry.test.crt")
"$HERE/pki.sh" up >/dev/null 2>&1
check "pki.sh is idempotent (cert kept, one hosts line)" bash -c \
    "[ \"\$(sha256sum '$PKI/registry.test.crt')\" = '$before' ] && [ \$(grep -c '^127.0.0.1 registry.test # df-e2e\$' /etc/hosts) = 1 ]"

timed "registry.sh up" need "$HERE/registry.sh" up 2>/dev/null
pids=$(cat "$E2E_ROOT/registry/http.pid" "$E2E_ROOT/registry/tls.pid")
"$HERE/registry.sh" up 2>/dev/null
check "registry.sh up again keeps the same processes" bash -c "[ \"\$(cat '$E2E_ROOT/registry/http.pid' '$E2E_ROOT/registry/tls.pid')\" = '$pids' ]"
check "http registry answers /v2/" curl -fsS http://registry.test:${E2E_REGISTRY_HTTP_PORT:-5000}/v2/
check "tls registry answers /v2/ (test CA)" curl -fsS --cacert "$PKI/ca.crt" https://registry.test:${E2E_REGISTRY_TLS_PORT:-5443}/v2/

# --- the image ---------------------------------------------------------------------------------
# shellcheck disable=SC2054
IMG_ARGS=(--tag selftest --layers 1M,200M,64K --seed selftest)
timed "push-image.sh 1M,200M,64K (build + 2 pushes)" need "$HERE/push-image.sh" "${IMG_ARGS[@]}" > "$WORK/image.json" 2>/dev/null
timed "push-image.sh again (cached)" "$HERE/push-image.sh" "${IMG_ARGS[@]}" > "$WORK/image2.json" 2>/dev/null || true
check "push-image.sh again prints the same JSON" cmp "$WORK/image.json" "$WORK/image2.json"
jq_() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$WORK/image.json" "$1"; }
MANIFEST=$(jq_ 'd["manifest_digest"]')
CONFIG=$(jq_ 'd["config_digest"]')
mapfile -t LAYERS < <(jq_ '"\n".join(l["digest"] for l in d["layers"])')
mapfile -t SIZES < <(jq_ '"\n".join(str(l["size"]) for l in d["layers"])')
REF_HTTP=$(jq_ 'd["refs"]["http"]')
REF_TLS=$(jq_ 'd["refs"]["tls"]')
check "image has 3 layers, the 2nd one > 200 MiB" bash -c "[ ${#LAYERS[@]} = 3 ] && [ ${SIZES[1]:-0} -gt 209715200 ]"
python3 "$HERE/make-image.py" "$WORK/a" --tag x --layers 64K,1M --seed det > "$WORK/a.json"
python3 "$HERE/make-image.py" "$WORK/b" --tag x --layers 64K,1M --seed det > "$WORK/b.json"
python3 "$HERE/make-image.py" "$WORK/c" --tag x --layers 64K,1M --seed other > "$WORK/c.json"
dig() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["manifest_digest"], *[l["digest"] for l in d["layers"]])' "$1"; }
check "make-image.py is deterministic (same seed, same digests)" bash -c "[ \"$(dig "$WORK/a.json")\" = \"$(dig "$WORK/b.json")\" ]"
check "make-image.py: another seed, other digests" bash -c "[ \"$(dig "$WORK/a.json")\" != \"$(dig "$WORK/c.json")\" ]"
check "layer blobs are valid gzip'd tars with the right diff_ids" python3 - "$WORK/a" "$WORK/a.json" <<'PY'
import gzip, hashlib, json, os, sys, tarfile
d = json.load(open(sys.argv[2]))
for l in d["layers"]:
    p = os.path.join(sys.argv[1], "blobs", "sha256", l["digest"].split(":")[1])
    with gzip.open(p) as f:
        h = hashlib.sha256(f.read()).hexdigest()
    assert "sha256:" + h == l["diff_id"], l
    with tarfile.open(p) as t:
        m = [x for x in t.getmembers() if x.isfile()]
        assert len(m) == 1 and m[0].size == l["payload_size"], m
PY
rm -rf "$WORK/a" "$WORK/b" "$WORK/c"

count() { "$HERE/registry-log.sh" count-blob-gets "$1" "$2"; }
declare -A BASE
for l in "${LAYERS[@]}"; do for w in http tls; do BASE[$l.$w]=$(count "$l" "$w"); done; done
BYTES0=$("$HERE/registry-log.sh" blob-bytes "${LAYERS[1]}" http)

# --- skopeo copy from the TLS registry -------------------------------------------------------------
timed "skopeo copy tls registry -> dir:" skopeo copy --quiet --preserve-digests --src-cert-dir "$PKI/trust" \
    "docker://$REF_TLS" "dir:$WORK/skopeo-dir" >/dev/null 2>"$WORK/skopeo.err" \
    && pass "skopeo copy from the TLS registry" || { fail "skopeo copy from the TLS registry"; cat "$WORK/skopeo.err"; }
check "skopeo dir: blobs and manifest match their digests" bash -c '
    cd "$1" && m=$2 && shift 2
    for d in "$@"; do h=${d#sha256:}; [ "$(sha256sum < "$h" | cut -d" " -f1)" = "$h" ] || exit 1; done
    [ "sha256:$(sha256sum < manifest.json | cut -d" " -f1)" = "$m" ]' _ "$WORK/skopeo-dir" "$MANIFEST" "$CONFIG" "${LAYERS[@]}"
rm -rf "$WORK/skopeo-dir"

# --- containerd: ctr content fetch through hosts.toml --------------------------------------------
timed "containerd.sh up" need "$HERE/containerd.sh" up > "$WORK/containerd.env" 2>/dev/null
set -a; . "$WORK/containerd.env"; set +a
check "containerd.sh up prints CONTAINERD_ADDRESS" bash -c "[ -S '${CONTAINERD_ADDRESS:-}' ]"
need "$HERE/containerd.sh" clean 2>/dev/null
need "$HERE/containerd.sh" hosts "${REF_HTTP%%/*}" "http://${REF_HTTP%%/*}" 2>/dev/null
check "hosts.toml: server is the HTTP registry, with a [host] table" bash -c \
    "f='$E2E_CONTAINERD_HOSTS_DIR/${REF_HTTP%%/*}/hosts.toml'; grep -q '^server = \"http://${REF_HTTP%%/*}\"' \$f && grep -q '^\[host.\"http://${REF_HTTP%%/*}\"\]' \$f"
content_has_all() {  # content_has_all NAMESPACE
    local have; have=$(ctr -n "$1" content ls -q)
    for d in "$MANIFEST" "$CONFIG" "${LAYERS[@]}"; do grep -qx "$d" <<<"$have" || return 1; done
}
timed "ctr content fetch (http registry)" ctr -n default content fetch --hosts-dir "$E2E_CONTAINERD_HOSTS_DIR" "$REF_HTTP" \
    >"$WORK/ctr.out" 2>&1 && pass "ctr content fetch via hosts.toml" || { fail "ctr content fetch via hosts.toml"; tail -5 "$WORK/ctr.out"; }
check "containerd holds manifest, config and the 3 layers" content_has_all default
timed "containerd.sh clean" "$HERE/containerd.sh" clean 2>/dev/null && pass "containerd.sh clean" || fail "containerd.sh clean"
timed "ctr content fetch again, other namespace" ctr -n k8s.io content fetch --hosts-dir "$E2E_CONTAINERD_HOSTS_DIR" "$REF_HTTP" \
    >"$WORK/ctr2.out" 2>&1 && pass "ctr content fetch after clean (namespace k8s.io)" || fail "ctr content fetch after clean (namespace k8s.io)"
check "containerd holds the image again (k8s.io)" content_has_all k8s.io

# --- podman pull, no mirror ---------------------------------------------------------------------------
"$HERE/podman.sh" purge 2>/dev/null   # an image left from an earlier run would not be pulled again
ENVF=$("$HERE/podman.sh" setup 2>/dev/null) || { fail "podman.sh setup"; exit 1; }
check "podman registries.conf: insecure registry, no mirror" bash -c \
    "grep -q 'insecure = true' '$E2E_ROOT/podman/registries.conf' && ! grep -q 'registry.mirror' '$E2E_ROOT/podman/registries.conf'"
touch "$WORK/etc-mark"; sleep 1
timed "podman pull (http registry, vfs)" bash -c ". '$ENVF' && podman pull -q '$REF_HTTP'" >"$WORK/podman.out" 2>&1 \
    && pass "podman pull from the HTTP registry" || { fail "podman pull from the HTTP registry"; tail -5 "$WORK/podman.out"; }
check "podman image has the pushed manifest and config digests" bash -c \
    ". '$ENVF' && [ \"\$(podman image inspect --format '{{.Digest}} {{.Id}}' '$REF_HTTP')\" = '$MANIFEST ${CONFIG#sha256:}' ]"
check "podman wrote nothing to /etc" bash -c "[ -z \"\$(find /etc -newer '$WORK/etc-mark' -print -quit)\" ]"

# --- origin GET counts ------------------------------------------------------------------------------------
# per layer: TLS: skopeo once. HTTP: ctr twice (the clean made it download again), podman once.
for i in 0 1 2; do
    l=${LAYERS[$i]}
    dt=$(( $(count "$l" tls) - ${BASE[$l.tls]} )); dh=$(( $(count "$l" http) - ${BASE[$l.http]} ))
    check "registry-log: layer $i GETs tls=$dt (want 1) http=$dh (want 3)" bash -c "[ $dt = 1 ] && [ $dh = 3 ]"
done
db=$(( $("$HERE/registry-log.sh" blob-bytes "${LAYERS[1]}" http) - BYTES0 ))
check "registry-log: 200 MiB layer bytes served over http = 3 x size" bash -c "[ $db = $(( 3 * SIZES[1] )) ]"

# --- basic auth ----------------------------------------------------------------------------------------------
if timed "registry.sh up --auth" "$HERE/registry.sh" up --auth 2>/dev/null; then
    pass "registry.sh up --auth"
    check "auth: /v2/ without credentials is 401" bash -c \
        "[ \$(curl -s -o /dev/null -w '%{http_code}' http://${REF_HTTP%%/*}/v2/) = 401 ]"
    check "auth: skopeo inspect with e2e/e2e-pass" skopeo inspect --creds e2e:e2e-pass --cert-dir "$PKI/trust" "docker://$REF_TLS"
    check "auth: skopeo inspect without credentials fails" bash -c "! skopeo inspect --tls-verify=false 'docker://$REF_HTTP'"
    check "auth: push-image.sh logs in" bash -c "'$HERE/push-image.sh' ${IMG_ARGS[*]} >/dev/null 2>&1"
    need "$HERE/registry.sh" up 2>/dev/null
    check "registry.sh up without --auth opens it again" curl -fsS http://${REF_HTTP%%/*}/v2/
else
    fail "registry.sh up --auth"
fi
