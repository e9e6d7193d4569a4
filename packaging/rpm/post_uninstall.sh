# walink %postun, as %systemd_postun_with_restart: reload units, and on
# upgrade ($1 >= 1) restart a running daemon on the new binary. State in
# /var/lib/walink and the walink user are kept, as RPM packages do.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart walink.service >/dev/null 2>&1 || :
fi
