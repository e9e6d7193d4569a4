# walink %preun, as %systemd_preun: on erase ($1 = 0), not on upgrade,
# disable and stop the units.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now walink.service walink.socket >/dev/null 2>&1 || :
fi
