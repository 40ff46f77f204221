#!/usr/bin/env bash
# Usage: tests/e2e/registry-log.sh count-blob-gets DIGEST [http|tls|all]
#        tests/e2e/registry-log.sh blob-bytes      DIGEST [http|tls|all]
#        tests/e2e/registry-log.sh list            DIGEST [http|tls|all]
#   Reads the access log of registry.sh ($E2E_ROOT/registry/{http,tls}.log, combined log
#   format) and prints, for GET /v2/<repo>/blobs/DIGEST requests (any repo, any query string):
#     count-blob-gets  how many there were (any status; also COUNT_BLOB_GETS; the default
#                      when the first argument is a digest)
#     blob-bytes       the response bytes of those answered 200 or 206, summed
#     list             the matching access log lines
#   DIGEST is sha256:<hex> or just <hex>. Which log: http, tls or all (default: all = both).
#   The logs are appended across registry restarts and only 'registry.sh down --purge'
#   deletes them, so a test takes a count before and after the step it checks.
#   A client that reads a blob in ranges (the P2P seed does) makes one GET per range:
#   compare blob-bytes with the blob size to tell "fetched once" from "fetched twice".
#   The sum is exact past 2 GiB (the logs outlive many runs; mawk's %d stops at 2^31-1).
#   The logged bytes are what the registry's handler wrote without error: over HTTP/2 (the
#   TLS registry) a GET can be logged up to 32 KiB short although the client got all of it
#   (most likely: it reset the stream after the last byte, before END_STREAM); allow that
#   per GET.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"
cmd=${1:-}
case $cmd in
    sha256:*|[0-9a-f][0-9a-f][0-9a-f][0-9a-f]*) cmd=count-blob-gets ;;
    *) shift || true ;;
esac
case $cmd in
    count-blob-gets|COUNT_BLOB_GETS|count_blob_gets) cmd=count ;;
    blob-bytes|BLOB_BYTES|blob_bytes) cmd=bytes ;;
    list) ;;
    *) sed -n '2,4p' "$0" >&2; exit 2 ;;
esac
digest=${1:?digest}
which=${2:-all}
case $digest in sha256:*) ;; *) digest=sha256:$digest ;; esac
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || e2e_die "not a sha256 digest: $digest"
case $which in
    http|tls) logs=("$E2E_ROOT/registry/$which.log") ;;
    all) logs=("$E2E_ROOT/registry/http.log" "$E2E_ROOT/registry/tls.log") ;;
    *) e2e_die "which log: http, tls or all, not $which" ;;
esac
existing=()
for l in "${logs[@]}"; do [ -f "$l" ] && existing+=("$l"); done
# combined log: IP - USER [TIME] "GET /v2/NAME/blobs/DIGEST[?Q] HTTP/1.1" STATUS BYTES "REF" "UA"
re="\"GET /v2/[^ \"]+/blobs/$digest([?][^ \"]*)? HTTP/[0-9.]+\" [0-9]{3} [0-9-]+"
if [ ${#existing[@]} -eq 0 ]; then
    case $cmd in list) ;; *) echo 0 ;; esac
    exit 0
fi
case $cmd in
    count) cat "${existing[@]}" | grep -cE "$re" || true ;;
    list) cat "${existing[@]}" | grep -E "$re" || true ;;
    bytes)
        cat "${existing[@]}" | { grep -oE "$re" || true; } \
            | awk '{ st = $(NF-1); b = $NF; if ((st == 200 || st == 206) && b != "-") s += b } END { printf "%.0f\n", s }' ;;
esac
