#!/usr/bin/env bash
# `wrangler deploy --dry-run` of the edge worker, offline (run by ./dev test after the
# stack is up): the top level of wrangler.toml (local: loopback allow-listed, dev
# controls on) has a name of its own and refuses to be deployed or uploaded without
# `--env`; for the dev and production environments the custom build runs, the bundle is
# written, the rate-limit and Analytics Engine bindings and the assets are there, production allow-lists
# nobody with dev controls off, and the wasm stays within Cloudflare's size limit (3 MiB
# gzip on the free plan; flashgate's target is 1 MiB).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
. infra/edge/env.sh
out=$(mktemp -d "${TMPDIR:-/tmp}/flashgate-edge-deploy.XXXXXX")
trap 'rm -rf "$out"' EXIT

# The worker names as wrangler resolves them: the top level must not be production's.
names=$(NODE_PATH="$ROOT/node_modules" node -e '
  const { unstable_readConfig: read } = require("wrangler");
  for (const env of ["", "dev", "production"])
    console.log(`${env || "top"}=${read({ config: "wrangler.toml", env: env || undefined }).name}`);
' 2>"$out/names.log") || { cat "$out/names.log" >&2; echo "edge-deploy: cannot read wrangler.toml" >&2; exit 1; }
top=$(sed -n 's/^top=//p' <<<"$names")
prod=$(sed -n 's/^production=//p' <<<"$names")
dev=$(sed -n 's/^dev=//p' <<<"$names")
if [ -z "$top" ] || [ -z "$prod" ] || [ "$top" = "$prod" ] || [ "$top" = "$dev" ]; then
  echo "$names" >&2; echo "edge-deploy: the top level needs a name of its own" >&2; exit 1
fi

# Without --env (bare, or --env=""), nothing may be built for upload, whatever the name.
for cmd in "deploy --dry-run" "deploy --dry-run --env=" "versions upload --dry-run"; do
  log="$out/bare.log"
  rm -rf "$out/bare"
  # shellcheck disable=SC2086
  if timeout 300 wrangler $cmd --outdir "$out/bare" >"$log" 2>&1; then
    cat "$log" >&2; echo "edge-deploy: 'wrangler $cmd' without an environment succeeded" >&2; exit 1
  fi
  if ! grep -q "build.sh: refusing 'wrangler ${cmd%% --*}' of the top level" "$log" \
    || grep -q -- '--dry-run: exiting now' "$log" || [ -e "$out/bare/index.js" ]; then
    cat "$log" >&2; echo "edge-deploy: 'wrangler $cmd' was not refused by the build" >&2; exit 1
  fi
  echo "edge-deploy: 'wrangler $cmd' refused (top level $top is local only)"
done

for env in dev production; do
  log="$out/$env.log"
  if ! timeout 300 wrangler deploy --dry-run --env "$env" --outdir "$out/$env" >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "edge-deploy: wrangler deploy --dry-run --env $env failed" >&2
    exit 1
  fi
  for want in PURCHASE_LIMITER TICKET_LIMITER ANALYTICS "--dry-run: exiting now"; do
    grep -q -- "$want" "$log" || { cat "$log" >&2; echo "edge-deploy: $env: '$want' not in the output" >&2; exit 1; }
  done
  if grep -q 'not inherited by environments' "$log"; then
    cat "$log" >&2; echo "edge-deploy: $env lacks vars of the top level" >&2; exit 1
  fi
  if [ "$env" = production ]; then
    if ! grep -qE 'env\.DEV_CONTROLS \("off"\)' "$log" || grep -qE 'env\.ALLOW_IPS \("[^"]' "$log"; then
      cat "$log" >&2; echo "edge-deploy: production must allow-list nobody and keep dev controls off" >&2; exit 1
    fi
  fi
  wasm=$(find "$out/$env" -name '*.wasm' | head -1)
  [ -n "$wasm" ] && [ -s "$out/$env/index.js" ] || { ls -R "$out/$env" >&2; echo "edge-deploy: $env: no bundle" >&2; exit 1; }
  raw=$(stat -c %s "$wasm")
  gz=$(gzip -9c "$wasm" | wc -c)
  [ "$gz" -le $((1024 * 1024)) ] || { echo "edge-deploy: wasm is $gz bytes gzip, over the 1 MiB target" >&2; exit 1; }
  echo "edge-deploy: --env $env dry run ok (wasm $raw bytes raw, $gz gzip)"
done
