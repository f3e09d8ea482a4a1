# %post ($1: 1 = install, 2 = upgrade). As %systemd_post and
# %sysusers_create_compat would do, plus: a first install enables the unit
# without starting it (edit /etc/tailrace/tailrace.yaml, then
# `systemctl start tailrace`); an upgrade restarts it if it was running.
systemd-sysusers /usr/lib/sysusers.d/tailrace.conf || :
systemd-tmpfiles --create /usr/lib/tmpfiles.d/tailrace.conf || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable tailrace.service >/dev/null 2>&1 || :
else
    systemctl try-restart tailrace.service >/dev/null 2>&1 || :
fi
