#!/usr/bin/env bash
# Usage: tests/e2e/pki.sh [up]        create the test PKI (kept if still valid) + /etc/hosts line
#        tests/e2e/pki.sh down [--purge]   remove the /etc/hosts line (--purge: and the PKI)
#   Files, under $E2E_ROOT/pki (E2E_ROOT defaults to /tmp/df-e2e):
#     ca.crt ca.key                 test CA from `dfctl cert ca` (EC P-256, CA:TRUE, pathlen 0,
#                                   O=dragonfly-lite)
#     registry.test.crt/.key        server cert from `dfctl cert issue`: SANs DNS:registry.test,
#                                   DNS:localhost, IP:127.0.0.1; EKU serverAuth; 90 days
#     registry.test.chain.crt       server cert followed by the CA
#     trust/ca.crt                  ONLY the CA. Pass this directory to skopeo/podman
#                                   --cert-dir/--src-cert-dir/--dest-cert-dir: they take every
#                                   *.crt there as a CA and demand X.cert for every X.key, so
#                                   the pki directory itself (with ca.key) is rejected.
#   Trust elsewhere: curl --cacert $E2E_ROOT/pki/ca.crt; containerd hosts.toml ca = "...ca.crt".
#   /etc/hosts gets "127.0.0.1 registry.test # df-e2e". Go clients never send loopback
#   literals (127.0.0.1, localhost) through an HTTP proxy, so tests address the registry
#   by this name. Nothing goes into the system trust store.
#   The certificates are made by the project's own dfctl ($DFCTL, default target/debug/dfctl:
#   `cargo build --bins` first), so the e2e tests prove that skopeo, containerd and podman
#   accept what `dfctl cert` issues; openssl only checks them.
#   Idempotent: an existing dfctl CA and a server cert that still verifies against it, has the
#   SANs and is valid for another day are kept. Prints the pki directory.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
PKI=$E2E_ROOT/pki
NAME=registry.test
SAN="DNS:$NAME,DNS:localhost,IP:127.0.0.1"

case ${1:-up} in
    up) ;;
    down)
        e2e_hosts_del "$NAME"
        if [ "${2:-}" = --purge ]; then rm -rf "$PKI"; fi
        exit 0 ;;
    *) sed -n '2,3p' "$0" >&2; exit 2 ;;
esac

e2e_need openssl
DFCTL=${DFCTL:-$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")/target/debug/dfctl}
[ -x "$DFCTL" ] || e2e_die "$DFCTL not found: run cargo build --bins first (or set DFCTL)"
mkdir -p "$PKI/trust"
chmod 0755 "$PKI"

ca_ok() {
    [ -s "$PKI/ca.crt" ] && [ -s "$PKI/ca.key" ] \
        && openssl x509 -in "$PKI/ca.crt" -noout -checkend 86400 >/dev/null 2>&1 \
        && openssl x509 -in "$PKI/ca.crt" -noout -subject 2>/dev/null | grep -q 'O = dragonfly-lite'
}
server_ok() {
    [ -s "$PKI/$NAME.crt" ] && [ -s "$PKI/$NAME.key" ] \
        && openssl verify -CAfile "$PKI/ca.crt" -purpose sslserver "$PKI/$NAME.crt" >/dev/null 2>&1 \
        && openssl x509 -in "$PKI/$NAME.crt" -noout -checkend 86400 >/dev/null 2>&1 \
        && openssl x509 -in "$PKI/$NAME.crt" -noout -ext subjectAltName 2>/dev/null \
            | grep -q "DNS:$NAME, DNS:localhost, IP Address:127.0.0.1"
}

if ! ca_ok; then
    rm -f "$PKI/ca.crt" "$PKI/ca.key" "$PKI/$NAME.crt" "$PKI/$NAME.key"
    "$DFCTL" cert ca --dir "$PKI" --cn "df-e2e test CA" >/dev/null
    e2e_log "created CA $PKI/ca.crt (dfctl cert ca)"
fi

if ! server_ok; then
    "$DFCTL" cert issue --ca-dir "$PKI" --name "$NAME" --force \
        --san "DNS:$NAME" --san DNS:localhost --san IP:127.0.0.1 --usage server >/dev/null
    e2e_log "created server cert $PKI/$NAME.crt ($SAN, dfctl cert issue)"
fi
cat "$PKI/$NAME.crt" "$PKI/ca.crt" > "$PKI/$NAME.chain.crt"
# trust/ holds the CA and nothing else (stale files from older runs are removed)
find "$PKI/trust" -mindepth 1 ! -name ca.crt -exec rm -rf {} +
cmp -s "$PKI/ca.crt" "$PKI/trust/ca.crt" || cp "$PKI/ca.crt" "$PKI/trust/ca.crt"

e2e_hosts_add 127.0.0.1 "$NAME"
echo "$PKI"
