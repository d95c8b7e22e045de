#!/usr/bin/env bash
# `flashgate` as ./dev up puts it on the PATH: run from another directory with no secret in
# the environment, `flashgate users` writes the `userId,authToken` rows of the contract,
# each token an HS256 JWT of its user under the stack's AUTH_SECRET. A second link keeps
# the wrapper; a `flashgate` that ./dev did not write is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${DIR:?the stack dir, exported by ./dev test}"
. "$ROOT/infra/dev/command.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export FLASHGATE_BIN_DIR="$tmp/bin"
link_command "$DIR" >/dev/null
link_command "$DIR" >/dev/null
mkdir "$tmp/elsewhere"
(
  cd "$tmp/elsewhere"
  env -u AUTH_SECRET -u FLASHGATE_AUTH_SECRET -u FLASHGATE_DEV_DIR PATH="$tmp/bin:$PATH" \
    flashgate users --count 3 --out users.csv
)
secret=$(sed -n 's/^AUTH_SECRET=//p' "$DIR/env")
python3 - "$tmp/elsewhere/users.csv" "$secret" <<'PY'
import base64, csv, hashlib, hmac, json, sys, time
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0] == ["userId", "authToken"], rows[0]
assert len(rows) == 4, rows
def part(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
for user, token in rows[1:]:
    head, claims, sig = token.split(".")
    assert json.loads(part(head))["alg"] == "HS256"
    mac = hmac.new(sys.argv[2].encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(mac, part(sig)), f"{user}: signature"
    body = json.loads(part(claims))
    assert body["sub"] == user and body["exp"] > time.time(), body
PY
mkdir "$tmp/other"
printf '#!/bin/sh\necho installed\n' >"$tmp/other/flashgate"
FLASHGATE_BIN_DIR="$tmp/other" link_command "$DIR" >/dev/null
[ "$(cat "$tmp/other/flashgate")" = "$(printf '#!/bin/sh\necho installed')" ] \
  || { echo "command.check: a flashgate not written by ./dev was replaced" >&2; exit 1; }
echo "command.check: flashgate on the PATH writes valid users from any directory"
