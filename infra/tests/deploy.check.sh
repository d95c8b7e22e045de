#!/usr/bin/env bash
# The deployment files, offline (run by ./dev test): the Dockerfile passes hadolint, its
# build context (.dockerignore) holds what the build needs (a `cargo check --locked` of
# exactly that context), and the Kubernetes manifests pass the API schemas of
# K8S_SCHEMA_VERSION strictly and agree with each other and with the binary
# (infra/tests/deploy_check.py). No image is built and nothing is applied: neither a
# container engine nor a cluster runs here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. infra/versions.env
. infra/dev/paths.sh

"$FG_OPSCHECK_ROOT/bin/hadolint" --no-color --failure-threshold warning infra/docker/Dockerfile

mapfile -t manifests < <(find infra/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
"$FG_OPSCHECK_ROOT/bin/kubernetes-validate" --strict --quiet -k "$K8S_SCHEMA_VERSION" "${manifests[@]}"

"$FG_OPSCHECK_ROOT/bin/python" infra/tests/deploy_check.py "$ROOT" "${FLASHGATE_BIN:-$ROOT/target/debug/flashgate}"

# The image's build context: only what .dockerignore lets in, built as the Dockerfile does
# (check, not a release build: the point is that nothing is missing and the lock holds).
context=$(mktemp -d "${TMPDIR:-/tmp}/flashgate-docker-context.XXXXXX")
trap 'rm -rf "$context"' EXIT
"$FG_OPSCHECK_ROOT/bin/python" infra/tests/deploy_check.py --context "$ROOT" "$context"
(cd "$context" && CARGO_TARGET_DIR="$ROOT/target" cargo check -q --locked --offline \
  -p flashgate-origin --bin flashgate)
echo "deploy: Dockerfile, image context and Kubernetes manifests check out"
