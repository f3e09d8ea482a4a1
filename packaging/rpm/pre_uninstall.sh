# %preun ($1: 0 = erase, 1 = upgrade). Erase stops and disables the unit.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now tailrace.service >/dev/null 2>&1 || :
fi
