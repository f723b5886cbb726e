#!/bin/sh
# Probe one service: its manager, whether it is installed, whether the manager says it runs, and its
# live main process id. Waits up to WAIT seconds for it to run. Read-only; prints key=value lines.
#   usage: probe.sh SERVICE WAIT [pidfile PIDFILE | pattern | auto]
#   auto: systemd's MainPID on systemd hosts, no process check on init-script hosts
#   (the pgrep pattern comes in $SERVICE_RESTART_PATTERN, so this shell never matches itself)
# An operator can run it by hand: sh probe.sh nginx 0 pidfile /run/nginx.pid
service=$1 wait=$2 method=${3:-auto} pidfile=$4

if [ -d /run/systemd/system ]; then
    manager=systemd
    loaded=$(systemctl show --property=LoadState --value -- "$service" 2>/dev/null)
    if [ "$loaded" = loaded ]; then installed=yes; else installed=no; fi
else
    manager=init
    if [ -x "/etc/init.d/$service" ]; then installed=yes; else installed=no; fi
fi
if [ "$method" = auto ]; then
    if [ "$manager" = systemd ]; then method=systemd; else method=none; fi
fi
echo "manager=$manager"
echo "installed=$installed"
[ "$installed" = yes ] || exit 0

live_pid() {
    case "$method" in
        pidfile) pid=$({ tr -dc 0-9 <"$pidfile"; } 2>/dev/null) ;;
        pattern) pid=$(pgrep -o -f -- "$SERVICE_RESTART_PATTERN") ;;
        systemd) pid=$(systemctl show --property=MainPID --value -- "$service") ;;
        *) pid=; return ;;
    esac
    # a zombie is not a live process
    if [ -z "$pid" ] || [ "$pid" = 0 ] || [ ! -d "/proc/$pid" ] ||
        grep -qs '^State:[[:space:]]*Z' "/proc/$pid/status"; then
        pid=
    fi
}

while :; do
    if [ "$manager" = systemd ]; then
        systemctl is-active --quiet -- "$service"
    else
        "/etc/init.d/$service" status >/dev/null 2>&1
    fi
    status=$?
    live_pid
    if [ "$status" = 0 ] && { [ "$method" = none ] || [ -n "$pid" ]; }; then
        break
    fi
    [ "$wait" -gt 0 ] || break
    wait=$((wait - 1))
    sleep 1
done
echo "status=$status"
echo "pid=${pid:-0}"
