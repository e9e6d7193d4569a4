# walink %post, as %systemd_post and %tmpfiles_create do it: directories,
# then on first install ($1 = 1) apply the distribution's preset policy
# (enable or not); never start.
systemd-tmpfiles --create /usr/lib/tmpfiles.d/walink.conf >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset walink.socket walink.service >/dev/null 2>&1 || :
fi
