#!/usr/bin/env bash
# Builds the edge worker to edge/build/ (wrangler's [build] command runs this too).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/../../edge"
exec worker-build --release
