#!/usr/bin/env bash
# End-to-end test of the walink .deb under a real systemd: boots a Debian
# bookworm container with systemd-nspawn, installs the package and checks
# what an administrator would: start, status line, group access to the
# socket, pairing and sending (against mock-wa on the host), reload,
# journald fields, watchdog restart, restart keeping the pairing, hardening
# figure, and apt-get remove versus purge.
#
# Usage: scripts/test-system.sh DEB DEBUG_BIN_DIR
#   DEB            the walink .deb (`make deb`)
#   DEBUG_BIN_DIR  holds debug walinkd and mock-wa (`cargo build --workspace
#                  --all-targets`): the packaged release walinkd verifies
#                  WhatsApp's certificate chain, which mock-wa cannot pass, so
#                  pairing and sending run with the debug walinkd copied over
#                  /usr/bin/walinkd; everything else runs the packaged binary.
# Environment: WALINK_ROOTFS (default /var/tmp/walink-rootfs), made once with
# debootstrap and reused (the container runs on a volatile overlay of it).
#
# Skips (exit 0, with the reason) when not root or systemd-nspawn is missing.
set -euo pipefail

deb=${1:?usage: $0 DEB DEBUG_BIN_DIR}
debug_bin=${2:?usage: $0 DEB DEBUG_BIN_DIR}
rootfs=${WALINK_ROOTFS:-/var/tmp/walink-rootfs}
machine=walink-test-$$

skip() { echo "test-system: SKIPPED: $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root (systemd-nspawn boots a container)"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not installed (apt-get install systemd-container)"
command -v nsenter >/dev/null || skip "nsenter is not installed (util-linux)"
for tool in curl jq; do
  command -v $tool >/dev/null || skip "$tool is not installed"
done
[ -f "$deb" ] || { echo "test-system: no package at $deb; run make deb" >&2; exit 1; }
for b in walinkd mock-wa; do
  [ -x "$debug_bin/$b" ] || { echo "test-system: $debug_bin/$b is missing" >&2; exit 1; }
done

started=$SECONDS
step() { printf '\n== [%3ds] %s\n' $((SECONDS - started)) "$*"; }
fail() { echo "test-system: FAIL: $*" >&2; exit 1; }

if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
  command -v debootstrap >/dev/null || skip "no rootfs at $rootfs and debootstrap is not installed"
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  step "debootstrap bookworm into $rootfs (once) from $mirror"
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libssl3 bookworm "$rootfs.tmp" "$mirror" >/dev/null
  mv "$rootfs.tmp" "$rootfs"
fi

work=$(mktemp -d /tmp/walink-system.XXXXXX)
pkg="$work/pkg"
mkdir -p "$pkg"
cp "$deb" "$pkg/walink.deb"
cp "$debug_bin/walinkd" "$pkg/walinkd-debug"
nspawn=
mock=
cleanup() {
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    kill -TERM "$nspawn" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn" 2>/dev/null || true
  fi
  [ -n "$mock" ] && kill "$mock" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Polls a command until it succeeds, for at most $1 seconds.
until_ok() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for: $*"
    sleep 0.2
  done
}

step "mock-wa on the host's loopback (the container shares the host network)"
"$debug_bin/mock-wa" --listen 127.0.0.1:0 --admin 127.0.0.1:0 >"$work/mock.json" 2>"$work/mock.log" &
mock=$!
until_ok 10 test -s "$work/mock.json"
ws=$(head -n1 "$work/mock.json" | jq -r .ws)
admin=$(head -n1 "$work/mock.json" | jq -r .admin)
echo "mock-wa: $ws (admin $admin)"

step "boot systemd in a container"
setsid systemd-nspawn -q -D "$rootfs" -b -M "$machine" --register=no --keep-unit \
  --volatile=overlay --console=passive --bind-ro="$pkg":/mnt/pkg >"$work/nspawn.log" 2>&1 &
nspawn=$!
leader=
for _ in $(seq 100); do
  leader=$(cat /proc/$nspawn/task/*/children 2>/dev/null | awk '{print $1}' | head -n 1)
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || fail "the container did not start: $(cat "$work/nspawn.log")"
box() { nsenter -t "$leader" -a "$@"; }
booted() { box systemctl is-system-running 2>/dev/null | grep -Eq '^(running|degraded)$'; }
until_ok 60 booted
echo "container up: $(box systemctl is-system-running || true)"

step "dpkg -i: user, directories, units enabled but not started"
box dpkg -i /mnt/pkg/walink.deb
box id walink
[ "$(box stat -c '%a %U %G' /var/lib/walink)" = "700 walink walink" ] || fail "/var/lib/walink: $(box stat -c '%a %U %G' /var/lib/walink)"
[ "$(box systemctl is-enabled walink.service)" = enabled ] || fail "walink.service is not enabled"
[ "$(box systemctl is-enabled walink.socket)" = enabled ] || fail "walink.socket is not enabled"
[ "$(box systemctl is-active walink.service || true)" = inactive ] || fail "walink.service started by the package"
box test -f /usr/share/man/man8/walinkd.8.gz
box test -f /usr/share/bash-completion/completions/walink

step "configure: mock-wa, one account; a 5 s watchdog for the test"
# The shipped file has the [daemon] and [connection] tables with every key
# commented out: set two keys under [connection] and append the account.
box sed -i "s|^\[connection\]\$|[connection]\nurl = \"$ws\"\nclient_version = \"2.3000.1023456789\"|" /etc/walink/walink.toml
box sh -c 'printf "\n[[account]]\nname = \"sales\"\n" >> /etc/walink/walink.toml'
box grep -q "^url = \"$ws\"" /etc/walink/walink.toml || fail "could not set connection.url"
box mkdir -p /etc/systemd/system/walink.service.d
box sh -c 'printf "[Service]\nWatchdogSec=5\nRestartSec=1\n" > /etc/systemd/system/walink.service.d/test.conf'
box systemctl daemon-reload

step "systemctl start walink: active, STATUS= in systemctl status"
box systemctl start walink.service
[ "$(box systemctl is-active walink.service)" = active ] || fail "not active"
status=$(box systemctl status walink.service --no-pager || true)
echo "$status" | head -n 12
echo "$status" | grep -q 'Status: "1 account: ' || fail "systemctl status shows no STATUS line"
[ "$(box stat -c '%a %U %G' /run/walink/walink.sock)" = "660 walink walink" ] || fail "socket: $(box stat -c '%a %U %G' /run/walink/walink.sock)"
[ "$(box stat -c '%a %U %G' /run/walink)" = "750 walink walink" ] || fail "/run/walink: $(box stat -c '%a %U %G' /run/walink)"

step "walink status: allowed for the walink group, refused to others"
box useradd -m -G walink alice
box useradd -m bob
box runuser -u alice -- walink status
set +e
box runuser -u bob -- walink status >"$work/bob.out" 2>&1
bob=$?
set -e
[ $bob -eq 4 ] || fail "bob (not in group walink) got exit $bob: $(cat "$work/bob.out")"
echo "bob: exit $bob: $(cat "$work/bob.out")"

step "systemd-analyze security walink.service"
box systemd-analyze security walink.service --no-pager >"$work/security.txt" 2>&1 || true
exposure=$(grep -o 'Overall exposure level for walink.service: [0-9.]*' "$work/security.txt" | awk '{print $NF}')
echo "exposure: $exposure"
[ -n "$exposure" ] || fail "no exposure figure: $(cat "$work/security.txt")"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure $exposure is above 2.0"

step "watchdog: a walinkd frozen with SIGSTOP is killed and restarted"
pid=$(box systemctl show -p MainPID --value walink.service)
restarts=$(box systemctl show -p NRestarts --value walink.service)
box sh -c "kill -STOP $pid"
watchdog_restarted() {
  local now
  now=$(box systemctl show -p MainPID --value walink.service)
  [ "$now" != "$pid" ] && [ "$now" != 0 ] && [ "$(box systemctl is-active walink.service)" = active ]
}
until_ok 40 watchdog_restarted
box journalctl -u walink.service --no-pager | grep -q 'Watchdog timeout' || fail "no watchdog timeout in the journal"
echo "restarts: $restarts -> $(box systemctl show -p NRestarts --value walink.service); main pid $pid -> $(box systemctl show -p MainPID --value walink.service)"

step "pair and send (debug walinkd over /usr/bin/walinkd, see the header)"
box install -m 755 /mnt/pkg/walinkd-debug /usr/bin/walinkd
box systemctl restart walink.service
box sh -c 'walink qr sales --raw > /tmp/qr.out 2>&1' &
qr=$!
until_ok 30 box test -s /tmp/qr.out
curl -fsS -X POST --data-binary "$(box head -n 1 /tmp/qr.out)" "$admin/admin/scan" >/dev/null
wait $qr || fail "walink qr failed: $(box cat /tmp/qr.out)"
account_state() { box walink status "$1" --json | jq -r '.accounts[0].state'; }
state_is() { [ "$(account_state "$1")" = "$2" ]; }
until_ok 60 state_is sales connected
box runuser -u alice -- walink send sales +15551234567 "sent under systemd"
curl -fsS "$admin/admin/inbox?contact=15551234567" | jq -e '.[] | select(.text == "sent under systemd")' >/dev/null \
  || fail "the contact did not get the message"
since=$(box walink status sales --json | jq '.accounts[0].connected_since')

step "systemctl reload: an added account starts, sales keeps its connection"
box sh -c 'printf "\n[[account]]\nname = \"support\"\npair_on_start = true\n" >> /etc/walink/walink.toml'
box systemctl reload walink.service
until_ok 30 state_is support waiting_for_pairing
[ "$(box walink status sales --json | jq '.accounts[0].connected_since')" = "$since" ] || fail "sales reconnected on reload"
box systemctl status walink.service --no-pager | grep -q 'Status: "2 accounts: ' || fail "STATUS= not updated after reload"

step "journalctl -u walink ACCOUNT=...: structured fields"
box journalctl -u walink.service ACCOUNT=sales -o json --no-pager >"$work/sales.json"
[ -s "$work/sales.json" ] || fail "no journal entries with ACCOUNT=sales"
jq -r .ACCOUNT "$work/sales.json" | sort -u | grep -qx sales || fail "ACCOUNT=sales returned other accounts"
jq -r '.EVENT // empty' "$work/sales.json" | grep -qx paired || fail "no EVENT=paired for sales"
box journalctl -u walink.service ACCOUNT=support -o cat --no-pager | grep -q . || fail "no lines for ACCOUNT=support"
echo "ACCOUNT=sales: $(wc -l <"$work/sales.json") entries; events: $(jq -r '.EVENT // empty' "$work/sales.json" | sort -u | tr '\n' ' ')"
if box journalctl -u walink.service -o cat --no-pager | grep -Eq '2@[A-Za-z0-9+/=]{20,}'; then
  fail "a QR payload reached the journal"
fi

step "systemctl restart keeps the pairing"
before=$(curl -fsS "$admin/admin/stats")
box systemctl restart walink.service
until_ok 60 state_is sales connected
after=$(curl -fsS "$admin/admin/stats")
[ "$(jq .pairings <<<"$after")" = "$(jq .pairings <<<"$before")" ] || fail "paired again after restart"
[ "$(jq .handshakes_ik <<<"$after")" -gt "$(jq .handshakes_ik <<<"$before")" ] || fail "no IK login after restart"

step "apt-get remove keeps state and user; reinstall reconnects without pairing"
box apt-get remove -y walink >/dev/null
box test ! -e /usr/bin/walinkd || fail "/usr/bin/walinkd still there after remove"
box test -d /var/lib/walink/state || fail "remove deleted /var/lib/walink"
box id walink >/dev/null || fail "remove deleted the walink user"
[ "$(box systemctl is-active walink.service || true)" != active ] || fail "still running after remove"
box dpkg -i /mnt/pkg/walink.deb >/dev/null
box install -m 755 /mnt/pkg/walinkd-debug /usr/bin/walinkd
box systemctl start walink.service
until_ok 60 state_is sales connected
[ "$(curl -fsS "$admin/admin/stats" | jq .pairings)" = "$(jq .pairings <<<"$before")" ] || fail "paired again after reinstall"

step "apt-get purge removes state, user and config"
box apt-get purge -y walink >/dev/null
box test ! -e /var/lib/walink || fail "purge left /var/lib/walink"
if box id walink >/dev/null 2>&1; then fail "purge left the walink user"; fi
box test ! -e /etc/walink/walink.toml || fail "purge left /etc/walink/walink.toml"

step "PASS in $((SECONDS - started))s; systemd-analyze security walink.service: exposure $exposure"
