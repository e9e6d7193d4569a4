#!/bin/sh
# Checks a built walink package lists every file it must install, marks the
# config as a config file, and carries the maintainer scripts.
# Usage: scripts/check-packages.sh deb|rpm TARGET_DIR
set -eu

kind=$1
target=$2
failed=0

expect() { # what, listing, pattern...
    what=$1 listing=$2
    shift 2
    for pattern in "$@"; do
        if ! printf '%s\n' "$listing" | grep -q -- "$pattern"; then
            echo "FAIL: $what lacks $pattern" >&2
            failed=1
        fi
    done
}

files="/usr/bin/walinkd /usr/bin/walink /etc/walink/walink.toml
/usr/lib/systemd/system/walink.service /usr/lib/systemd/system/walink.socket
/usr/lib/sysusers.d/walink.conf /usr/lib/tmpfiles.d/walink.conf
/usr/share/bash-completion/completions/walink /usr/share/fish/vendor_completions.d/walink.fish
/usr/share/doc/walink/protocol.md"

case $kind in
deb)
    pkg=$(ls -t "$target"/debian/walink_*.deb | head -n 1)
    echo "checking $pkg"
    listing=$(dpkg-deb -c "$pkg")
    # shellcheck disable=SC2086
    expect "dpkg-deb -c" "$listing" $files \
        /usr/share/man/man8/walinkd.8.gz /usr/share/man/man1/walink.1.gz \
        /usr/share/man/man5/walink.toml.5.gz /usr/share/zsh/vendor-completions/_walink
    expect "conffiles" "$(dpkg-deb -I "$pkg" conffiles)" "^/etc/walink/walink.toml$"
    expect "postinst" "$(dpkg-deb -I "$pkg" postinst)" systemd-sysusers adduser \
        "daemon-reload" "systemctl enable walink.socket walink.service"
    expect "prerm" "$(dpkg-deb -I "$pkg" prerm)" "systemctl stop walink.service walink.socket"
    expect "postrm" "$(dpkg-deb -I "$pkg" postrm)" "purge)" "rm -rf /var/lib/walink" "userdel walink"
    ;;
rpm)
    pkg=$(ls -t "$target"/generate-rpm/walink-*.rpm | head -n 1)
    echo "checking $pkg"
    listing=$(rpm -qlp "$pkg")
    # shellcheck disable=SC2086
    expect "rpm -qlp" "$listing" $files \
        /usr/share/man/man8/walinkd.8 /usr/share/man/man1/walink.1 \
        /usr/share/man/man5/walink.toml.5 /usr/share/zsh/site-functions/_walink
    expect "rpm -qcp" "$(rpm -qcp "$pkg")" "^/etc/walink/walink.toml$"
    scripts=$(rpm -qp --scripts "$pkg")
    expect "rpm -qp --scripts" "$scripts" \
        "preinstall scriptlet" "systemd-sysusers" "useradd -r -g walink" \
        "postinstall scriptlet" "systemd-tmpfiles --create" "preset walink.socket walink.service" \
        "preuninstall scriptlet" "disable --now walink.service walink.socket" \
        "postuninstall scriptlet" "try-restart walink.service"
    ;;
*)
    echo "usage: $0 deb|rpm TARGET_DIR" >&2
    exit 64
    ;;
esac

if [ $failed -ne 0 ]; then
    exit 1
fi
echo "$kind package OK: $(printf '%s\n' "$listing" | wc -l) entries, config file and scripts present"
