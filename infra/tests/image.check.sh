#!/usr/bin/env bash
# The origin's image, built and run for real with buildah (daemonless, vfs storage in a
# throwaway directory, as root): FROM scratch with the flashgate binary, the shared
# libraries it links, CA certificates and user 10001, configured as the runtime stage of
# infra/docker/Dockerfile (entrypoint flashgate, command serve, user 10001, port 8080).
# Then, in the image (chroot isolation: no OCI runtime is installed), `--version`,
# `--help`, and `serve` against the test stack until /readyz answers ready. A few seconds.
#
# It packages the binary ./dev test built; the Dockerfile's own stages need Docker Hub's
# images, which this machine cannot reach (docs/deploy.md, "The image").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${REDIS_URL:?the stack env is exported by ./dev test}" "${MYSQL_URL:?}" "${KAFKA_BROKERS:?}"
BIN=${FLASHGATE_BIN:-$ROOT/target/debug/flashgate}
die() { echo "image: $*" >&2; exit 1; }
command -v buildah >/dev/null || die "buildah is missing; run ./dev setup"
[ -x "$BIN" ] || die "no flashgate binary at $BIN"

work=$(mktemp -d /tmp/flashgate-image.XXXXXX)
B=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
serve_pid=
# serve runs in a process group of its own (buildah does not pass a signal on to the
# process in the container): the whole group is stopped.
cleanup() {
  if [ -n "$serve_pid" ]; then
    kill -TERM -- "-$serve_pid" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 -- "-$serve_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$serve_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The root filesystem: the binary, what the dynamic loader needs for it, certificates.
rootfs=$work/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$BIN" "$rootfs/usr/local/bin/flashgate"
for lib in $(ldd "$BIN" | grep -oE '/[^ ]+'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
echo 'flashgate:x:10001:10001::/nonexistent:/usr/sbin/nologin' >"$rootfs/etc/passwd"
echo 'flashgate:x:10001:' >"$rootfs/etc/group"

start=$SECONDS
ctr=$("${B[@]}" from --name "flashgate-image-$$" scratch)
"${B[@]}" copy "$ctr" "$rootfs/" / >/dev/null
"${B[@]}" config --entrypoint '["/usr/local/bin/flashgate"]' --cmd serve --user 10001 \
  --env FLASHGATE_LISTEN=0.0.0.0:8080 --env RUST_LOG=info --port 8080 "$ctr"
image=localhost/flashgate:check
"${B[@]}" commit -q "$ctr" "$image" >/dev/null
"${B[@]}" rm "$ctr" >/dev/null
config=$("${B[@]}" inspect --format '{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}} {{.OCIv1.Config.User}}' "$image")
[ "$config" = "[/usr/local/bin/flashgate] [serve] 10001" ] || die "image config is '$config'"
echo "image: built $image in $((SECONDS - start)) s ($("${B[@]}" images --format '{{.Size}}' "$image"))"

ctr=$("${B[@]}" from --name "flashgate-run-$$" "$image")
run() { timeout -k 5 30 "${B[@]}" run --isolation chroot --user 10001 "$@"; }
version=$(run "$ctr" -- /usr/local/bin/flashgate --version)
[[ $version == "flashgate "* ]] || die "--version printed '$version'"
help=$(run "$ctr" -- /usr/local/bin/flashgate --help)
grep -q '^  serve ' <<<"$help" || die "--help lists no serve"

# serve from the image against the stack's services, on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid timeout -k 5 60 "${B[@]}" run --isolation chroot --user 10001 --env FLASHGATE_LISTEN="127.0.0.1:$port" --env FLASHGATE_REDIS_URL="$REDIS_URL" \
  --env FLASHGATE_MYSQL_URL="$MYSQL_URL" --env FLASHGATE_KAFKA_BROKERS="$KAFKA_BROKERS" \
  --env FLASHGATE_ORDERS_TOPIC="${ORDERS_TOPIC:-orders}" --env FLASHGATE_AUTH_SECRET="$AUTH_SECRET" \
  --env FLASHGATE_EDGE_SECRET="$EDGE_SECRET" --env FLASHGATE_ADMIN_TOKEN="$ADMIN_TOKEN" \
  "$ctr" -- /usr/local/bin/flashgate serve >"$work/serve.log" 2>&1 &
serve_pid=$!
ready=
for _ in $(seq 1 50); do
  ready=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null || true)
  [[ $ready == *'"status":"ready"'* ]] && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.2
done
[[ $ready == *'"status":"ready"'* ]] || { tail -20 "$work/serve.log" >&2; die "serve in the image never got ready"; }
echo "image: $version runs in it; serve answered /readyz $ready"
