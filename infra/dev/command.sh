# `flashgate` on the PATH after ./dev up, so the contract's `flashgate users --count 10000
# --out users.csv` works as written, from any directory.

# Writes a wrapper named `flashgate` into cargo's bin directory (where `cargo install` puts
# commands, on the PATH of every rustup install; $FLASHGATE_BIN_DIR instead when set): it
# runs this checkout's build with the settings of the stack in $1, below the environment.
# A `flashgate` there that ./dev did not write (an installed release, say) is left alone.
link_command() { # stack dir
  local bin_dir="${FLASHGATE_BIN_DIR:-${CARGO_HOME:-$HOME/.cargo}/bin}"
  local cmd="$bin_dir/flashgate" stack
  stack=$(cd "$1" && pwd)
  if [ -e "$cmd" ] && ! grep -q '^# flashgate: written by ./dev up' "$cmd" 2>/dev/null; then
    echo "[dev] $cmd is not ./dev's: left as it is (this checkout's: $ROOT/target/debug/flashgate)"
    return 0
  fi
  mkdir -p "$bin_dir"
  {
    echo '#!/usr/bin/env bash'
    echo '# flashgate: written by ./dev up (infra/dev/command.sh): this checkout'"'"'s build with'
    echo '# its stack'"'"'s settings (.dev/env), below the environment.'
    printf 'export FLASHGATE_DEV_DIR=${FLASHGATE_DEV_DIR:-%q}\n' "$stack"
    printf 'exec %q "$@"\n' "$ROOT/target/debug/flashgate"
  } >"$cmd.tmp.$$"
  chmod +x "$cmd.tmp.$$"
  mv "$cmd.tmp.$$" "$cmd"
  COMMAND_PATH=$cmd
  [ "$(command -v flashgate)" = "$cmd" ] \
    || echo "[dev] $bin_dir is not first on your PATH for flashgate: add it, or run $cmd"
}
