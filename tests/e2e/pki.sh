#!/usr/bin/env bash
# Usage: tests/e2e/pki.sh [up]        create the test PKI (kept if still valid) + /etc/hosts line
#        tests/e2e/pki.sh down [--purge]   remove the /etc/hosts line (--purge: and the PKI)
#   Files, under $E2E_ROOT/pki (E2E_ROOT defaults to /tmp/df-e2e):
#     ca.crt ca.key                 test CA, EC P-256, basicConstraints=critical,CA:TRUE
#     registry.test.crt/.key        server cert signed by it: SANs DNS:registry.test,
#                                   DNS:localhost, IP:127.0.0.1; EKU serverAuth
#     registry.test.chain.crt       server cert followed by the CA
#     trust/ca.crt                  ONLY the CA. Pass this directory to skopeo/podman
#                                   --cert-dir/--src-cert-dir/--dest-cert-dir: they take every
#                                   *.crt there as a CA and demand X.cert for every X.key, so
#                                   the pki directory itself (with ca.key) is rejected.
#   Trust elsewhere: curl --cacert $E2E_ROOT/pki/ca.crt; containerd hosts.toml ca = "...ca.crt".
#   /etc/hosts gets "127.0.0.1 registry.test # df-e2e". Go clients never send loopback
#   literals (127.0.0.1, localhost) through an HTTP proxy, so tests address the registry
#   by this name. Nothing goes into the system trust store.
#   Idempotent: an existing CA and a server cert that still verifies against it, has the
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
mkdir -p "$PKI/trust"
chmod 0755 "$PKI"

ca_ok() {
    [ -s "$PKI/ca.crt" ] && [ -s "$PKI/ca.key" ] \
        && openssl x509 -in "$PKI/ca.crt" -noout -checkend 86400 >/dev/null 2>&1
}
server_ok() {
    [ -s "$PKI/$NAME.crt" ] && [ -s "$PKI/$NAME.key" ] \
        && openssl verify -CAfile "$PKI/ca.crt" "$PKI/$NAME.crt" >/dev/null 2>&1 \
        && openssl x509 -in "$PKI/$NAME.crt" -noout -checkend 86400 >/dev/null 2>&1 \
        && openssl x509 -in "$PKI/$NAME.crt" -noout -ext subjectAltName 2>/dev/null \
            | grep -q "DNS:$NAME, DNS:localhost, IP Address:127.0.0.1"
}

if ! ca_ok; then
    rm -f "$PKI/ca.crt" "$PKI/ca.key" "$PKI/$NAME.crt" "$PKI/$NAME.key"
    openssl req -x509 -new -nodes -sha256 -days 3650 \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj "/CN=df-e2e test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -keyout "$PKI/ca.key.tmp" -out "$PKI/ca.crt.tmp" 2>/dev/null
    mv "$PKI/ca.key.tmp" "$PKI/ca.key"; mv "$PKI/ca.crt.tmp" "$PKI/ca.crt"
    e2e_log "created CA $PKI/ca.crt"
fi

if ! server_ok; then
    cat > "$PKI/$NAME.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$SAN
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=$NAME" \
        -keyout "$PKI/$NAME.key.tmp" -out "$PKI/$NAME.csr" 2>/dev/null
    openssl x509 -req -sha256 -days 825 -in "$PKI/$NAME.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -extfile "$PKI/$NAME.ext" -out "$PKI/$NAME.crt.tmp" 2>/dev/null
    mv "$PKI/$NAME.key.tmp" "$PKI/$NAME.key"; mv "$PKI/$NAME.crt.tmp" "$PKI/$NAME.crt"
    rm -f "$PKI/$NAME.csr" "$PKI/$NAME.ext"
    e2e_log "created server cert $PKI/$NAME.crt ($SAN)"
fi
cat "$PKI/$NAME.crt" "$PKI/ca.crt" > "$PKI/$NAME.chain.crt"
chmod 0600 "$PKI/ca.key" "$PKI/$NAME.key"
# trust/ holds the CA and nothing else (stale files from older runs are removed)
find "$PKI/trust" -mindepth 1 ! -name ca.crt -exec rm -rf {} +
cmp -s "$PKI/ca.crt" "$PKI/trust/ca.crt" || cp "$PKI/ca.crt" "$PKI/trust/ca.crt"

e2e_hosts_add 127.0.0.1 "$NAME"
echo "$PKI"
