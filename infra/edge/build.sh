#!/usr/bin/env bash
# Builds the edge worker to edge/build/ (wrangler's [build] command runs this too).
#
# `build.sh local` is the build of wrangler.toml's top level, the local environment
# with loopback allow-listed and dev controls on. wrangler builds before it uploads and
# tells the build why (WRANGLER_COMMAND: dev, deploy, versions upload, types), so
# refusing here is what keeps a bare `wrangler deploy` from uploading those settings.
set -euo pipefail
if [ "${1:-}" = local ]; then
  case "${WRANGLER_COMMAND:-}" in
    "" | dev | types) ;;
    *)
      echo "build.sh: refusing 'wrangler ${WRANGLER_COMMAND}' of the top level of wrangler.toml" \
        "(local only: loopback allow-listed, dev controls on); pass --env production or --env dev" >&2
      exit 1
      ;;
  esac
fi
. "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/../../edge"
exec worker-build --release
