# %postun ($1: 0 = erase, 1 = upgrade). Checkpoints in /var/lib/tailrace are
# kept on erase (rpm has no purge): `rm -rf /var/lib/tailrace` to drop them.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
