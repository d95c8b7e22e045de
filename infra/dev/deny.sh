#!/usr/bin/env bash
# cargo-deny over both lockfiles (Cargo.lock: core and origin; edge/Cargo.lock: the
# worker) with deny.toml: licenses on the allow-list, no wildcard versions, crates only
# from crates.io; duplicate versions are shown as warnings. Offline once the locked crates
# are fetched: it reads the lockfiles and the local registry only.
#
# Advisories (RustSec) are not checked here: their database is a git repository on
# GitHub, which this machine cannot reach, and cargo-deny has no offline copy of it.
# Where GitHub is reachable: DENY_CHECKS="advisories bans licenses sources".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../versions.env
. "$ROOT/infra/versions.env"
. "$ROOT/infra/dev/paths.sh"
deny=$FG_CARGO_DENY_ROOT/bin/cargo-deny
[ -x "$deny" ] || { echo "[deny] cargo-deny $CARGO_DENY_VERSION is missing: run ./dev setup" >&2; exit 1; }
read -r -a checks <<<"${DENY_CHECKS:-bans licenses sources}"
offline=(--offline)
[[ " ${checks[*]} " == *" advisories "* ]] && offline=()
status=0
for manifest in Cargo.toml edge/Cargo.toml; do
  # cargo-deny reads every locked crate, those of other platforms too, which a build here
  # never downloads: fetch them from crates.io first (a no-op once they are cached).
  cargo fetch --locked --quiet --manifest-path "$ROOT/$manifest" \
    || { echo "[deny] cannot fetch the crates of ${manifest%Cargo.toml}Cargo.lock" >&2; exit 1; }
  log=$(mktemp)
  if "$deny" --manifest-path "$ROOT/$manifest" --config "$ROOT/deny.toml" --log-level error "${offline[@]}" \
    check --show-stats "${checks[@]}" >"$log" 2>&1; then
    echo "[deny] ${manifest%Cargo.toml}Cargo.lock: ok"
  else
    cat "$log" >&2
    echo "[deny] ${manifest%Cargo.toml}Cargo.lock: FAILED" >&2
    status=1
  fi
  rm -f "$log"
done
exit "$status"
