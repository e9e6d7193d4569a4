#!/usr/bin/env bash
# walink demo, entirely offline: starts the bundled mock WhatsApp server
# (mock-wa), runs walinkd against it, links an account by "scanning" its QR,
# sends a message, receives one, restarts the daemon (no second QR) and
# shows the status. Run it with `make demo`.
set -euo pipefail

bin=${1:-target/debug}
for b in walinkd walink mock-wa; do
  [ -x "$bin/$b" ] || { echo "demo: $bin/$b is missing; run \`make demo\`" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "demo: curl is needed (apt-get install curl)" >&2; exit 1; }
command -v jq >/dev/null || { echo "demo: jq is needed (apt-get install jq)" >&2; exit 1; }

work=$(mktemp -d /tmp/walink-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
walink() { "$bin/walink" --socket "$work/walink.sock" "$@"; }

# Polls a command until it succeeds, for at most $1 seconds.
until_ok() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "demo: timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

step "Starting mock-wa, a WhatsApp Web protocol server on loopback"
"$bin/mock-wa" --listen 127.0.0.1:0 --admin 127.0.0.1:0 >"$work/mock.json" 2>"$work/mock.log" &
pids+=($!)
until_ok 10 test -s "$work/mock.json"
ws=$(head -n1 "$work/mock.json" | jq -r .ws)
admin=$(head -n1 "$work/mock.json" | jq -r .admin)
echo "WebSocket: $ws   admin API: $admin"

cat >"$work/walink.toml" <<TOML
[daemon]
socket = "$work/walink.sock"
state_dir = "$work/state"
log_target = "stderr"

[connection]
url = "$ws"
# The mock cannot tell us the current WhatsApp Web version; pin one.
client_version = "2.3000.1023456789"

[[account]]
name = "sales"
TOML

start_daemon() {
  "$bin/walinkd" --config "$work/walink.toml" 2>>"$work/walinkd.log" &
  daemon=$!
  pids+=("$daemon")
  until_ok 20 walink status
}

step "Starting walinkd (log: $work/walinkd.log)"
start_daemon
walink status

step "Linking account 'sales': walink qr sales --raw, and the phone scans it"
walink qr sales --raw >"$work/qr.out" &
qr=$!
until_ok 20 test -s "$work/qr.out"
echo "QR payload received ($(head -n1 "$work/qr.out" | cut -c1-24)...); scanning it"
curl -fsS -X POST --data-binary "$(head -n1 "$work/qr.out")" "$admin/admin/scan" | jq .
wait "$qr"
echo "walink qr exited 0; linked as $(tail -n1 "$work/qr.out")"
until_ok 60 sh -c "'$bin/walink' --socket '$work/walink.sock' status sales --json | jq -e '.accounts[0].state == \"connected\"'"
walink status

step "Sending: walink send sales +15551234567 'order shipped'"
walink send sales +15551234567 "order shipped"
echo "What contact +15551234567 received on the mock server:"
curl -fsS "$admin/admin/inbox?contact=15551234567" | jq .

step "Receiving: contact +15557654321 writes to the account (walink events sales --json)"
walink events sales --json >"$work/events.out" &
events=$!
pids+=("$events")
sleep 0.5
jid=$(walink status sales --json | jq -r '.accounts[0].jid | sub(":[0-9]+@"; "@")')
curl -fsS -X POST -H 'content-type: application/json' \
  --data "{\"from\":\"15557654321\",\"to\":\"$jid\",\"text\":\"where is my order?\"}" \
  "$admin/admin/deliver" | jq -c .
until_ok 20 grep -q message_received "$work/events.out"
grep message_received "$work/events.out" | jq .
kill "$events" 2>/dev/null || true

step "Restarting walinkd: the account reconnects with no new QR"
kill -TERM "$daemon"
wait "$daemon" || true
start_daemon
until_ok 60 sh -c "'$bin/walink' --socket '$work/walink.sock' status sales --json | jq -e '.accounts[0].state == \"connected\"'"
walink status
curl -fsS "$admin/admin/stats" | jq '{pairings, logins, handshakes_ik, messages_received}'

step "Health (exit status 0 = healthy)"
walink health
echo
echo "Demo done: linked once, sent a message, restarted without a second QR."
