# walink %pre: the walink user and group must exist before the files are
# laid down (the state directory and socket belong to them).
if command -v systemd-sysusers >/dev/null 2>&1; then
    echo 'u walink - "walink daemon" /var/lib/walink' | systemd-sysusers - || :
else
    getent group walink >/dev/null || groupadd -r walink
    getent passwd walink >/dev/null || useradd -r -g walink -d /var/lib/walink \
        -s /sbin/nologin -c "walink daemon" walink
fi
