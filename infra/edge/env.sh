# Environment for building the edge worker and running wrangler (sourced).
# Debian's rustc-web builds std for wasm32 (build-std); see shared TOOLCHAIN notes in docs/edge.md.
_fg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$_fg_root/infra/versions.env"
. "$_fg_root/infra/dev/paths.sh"
export PATH="$FG_DEBIAN_RUST/bin:$FG_NODE22_BIN:$FG_WASM_BINDGEN_ROOT/bin:$FG_WORKER_BUILD_ROOT/bin:$_fg_root/node_modules/.bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-19
export WASM_BINDGEN_BIN="$FG_WASM_BINDGEN_ROOT/bin/wasm-bindgen"
export WASM_OPT_BIN="$_fg_root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$_fg_root/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
unset _fg_root
