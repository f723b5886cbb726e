"""A fleet of throwaway SSH hosts on this machine, for end-to-end tests.

Each host is an sshd on its own loopback port, running in its own mount, UTS, IPC and PID
namespaces, pivoted into an overlay of the machine's root filesystem whose upper layer lives on a
tmpfs mounted inside the host's own mount namespace. Nothing is mounted in the machine's mount
table, and when the host's first process (its sshd) dies the kernel kills every process left in
the host and drops all its mounts with the namespace.

    python tests/fleet.py up 4 --dir /tmp/fleet     # prints the inventory path
    python tests/fleet.py down --dir /tmp/fleet

Needs root, util-linux (unshare, pivot_root) and openssh-server: see tests/install-fleet-deps.sh.
Stdlib only, so it runs before the project's dependencies are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
TARGET_PYTHON = "/usr/bin/python3"
INSTALL_HINT = "run `bash tests/install-fleet-deps.sh` as root"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3
POLL_INTERVAL = 0.02
SSH_OPTIONS = (
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    " -o LogLevel=ERROR -o IdentitiesOnly=yes"
)
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Runs as PID 1 of a fresh set of namespaces made by unshare(1); argv: name ssh_dir host_dir workdir.
BOOTSTRAP = r"""
set -eu
name=$1 ssh_dir=$2 host_dir=$3 workdir=$4
mount --make-rprivate /
hostname "$name"
layers=$host_dir/layers
root=$layers/root
mount -t tmpfs -o mode=0755 "fleet-$name" "$layers"
mkdir "$layers/upper" "$layers/work" "$root"
mount -t overlay -o "lowerdir=/,upperdir=$layers/upper,workdir=$layers/work" "fleet-$name" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# read-only: a write under /sys would change the machine's kernel, not the host's
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o mode=0755,nosuid dev "$root/dev"
mknod -m 666 "$root/dev/null" c 1 3
mknod -m 666 "$root/dev/zero" c 1 5
mknod -m 666 "$root/dev/full" c 1 7
mknod -m 666 "$root/dev/random" c 1 8
mknod -m 666 "$root/dev/urandom" c 1 9
mknod -m 666 "$root/dev/tty" c 5 0
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$root/run"
mkdir -m 0755 "$root/run/sshd"
mkdir -m 1777 "$root/run/lock"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"
# The fleet's keys and logs sit in the lower layer unless /tmp (now a tmpfs) already hid them.
if [ -d "$root$workdir" ]; then
    mount -t tmpfs -o ro,size=4k,mode=0755 fleet-hidden "$root$workdir"
fi
mkdir -p "$root/etc/ssh/fleet"
cp "$ssh_dir/ssh_host_ed25519_key" "$ssh_dir/authorized_keys" "$host_dir/sshd_config" \
    "$root/etc/ssh/fleet/"
echo "$name" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$name" >"$root/etc/hosts"
# pivot_root rather than chroot: the host's mount table then shows only its own mounts.
cd "$root"
pivot_root . .
umount -l .
cd /
exec env -i PATH="$PATH" LANG=C.UTF-8 /usr/sbin/sshd -D -e -f /etc/ssh/fleet/sshd_config
"""

# PidFile is not Debian's /run/sshd.pid, so `service ssh restart` in a host cannot kill its PID 1.
SSHD_CONFIG = """\
ListenAddress 127.0.0.1:{port}
HostKey /etc/ssh/fleet/ssh_host_ed25519_key
PidFile /run/fleet-sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/fleet/authorized_keys .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
"""


class FleetError(Exception):
    """The fleet could not be started or stopped."""


class FleetUnavailable(FleetError):
    """This machine cannot run a fleet (not root, or a package is missing)."""


@dataclass(frozen=True)
class Host:
    name: str
    port: int
    pid: int  # the host's PID 1 (its sshd), as the machine numbers it
    launcher_pid: int  # the unshare(1) process waiting on it
    start_time: int  # of pid, so a recycled pid is never signalled
    pid_namespace: str  # e.g. "pid:[4026532301]"


@dataclass(frozen=True)
class Layout:
    """Where a fleet keeps its files inside its workdir."""

    workdir: Path

    @property
    def state(self) -> Path:
        return self.workdir / "fleet.json"

    @property
    def inventory(self) -> Path:
        return self.workdir / "inventory.yml"

    @property
    def ssh_dir(self) -> Path:
        return self.workdir / "ssh"

    @property
    def key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def bootstrap(self) -> Path:
        return self.workdir / "bootstrap.sh"

    @property
    def hosts_dir(self) -> Path:
        return self.workdir / "hosts"

    def host_dir(self, name: str) -> Path:
        return self.hosts_dir / name


@dataclass
class Fleet:
    workdir: Path
    hosts: list[Host]
    inventory_path: Path
    key_path: Path

    def stop(self) -> None:
        stop_fleet(self.workdir)

    def ssh_argv(self, host: Host, command: str) -> list[str]:
        """An ssh command line running `command` as root on `host`."""
        return [
            "ssh", "-i", str(self.key_path), "-p", str(host.port), "-o", "BatchMode=yes",
            *SSH_OPTIONS.split(), "root@127.0.0.1", command,
        ]


# Launchers started by this process, kept so they can be reaped instead of left as zombies.
_LAUNCHED: dict[int, subprocess.Popen[bytes]] = {}


def unavailable_reason() -> str | None:
    """Why this machine cannot run a fleet, or None when it can."""
    if os.geteuid() != 0:
        return "the fleet needs root (namespaces, mounts)"
    missing = [tool for tool in ("unshare", "pivot_root", "ssh", "ssh-keygen") if not which(tool)]
    if not SSHD.exists():
        missing.insert(0, str(SSHD))
    if missing:
        return f"the fleet needs {', '.join(missing)}: {INSTALL_HINT}"
    return None


def which(tool: str) -> str | None:
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), HOST_PATH]))


def start_fleet(n: int, workdir: Path) -> Fleet:
    """Start `n` hosts named fleet-01.., replacing any fleet already running in `workdir`."""
    if n < 1:
        raise FleetError(f"a fleet needs at least one host, not {n}")
    problem = unavailable_reason()
    if problem:
        raise FleetUnavailable(problem)
    layout = Layout(workdir.resolve())
    stop_fleet(layout.workdir)
    prepare(layout)
    try:
        hosts = launch_all(layout, host_names(n))
    except BaseException:
        stop_fleet(layout.workdir)
        raise
    write_inventory(layout, hosts)
    return Fleet(layout.workdir, hosts, layout.inventory, layout.key)


def load_fleet(workdir: Path) -> Fleet:
    """The fleet running in `workdir`, e.g. one started by `fleet.py up` in another process."""
    layout = Layout(workdir.resolve())
    hosts = load_hosts(layout)
    if not hosts or not all(is_running(host) for host in hosts):
        raise FleetError(f"no running fleet in {layout.workdir}")
    return Fleet(layout.workdir, hosts, layout.inventory, layout.key)


def host_names(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"fleet-{index:0{width}d}" for index in range(1, n + 1)]


def prepare(layout: Layout) -> None:
    layout.ssh_dir.mkdir(parents=True, exist_ok=True)
    layout.hosts_dir.mkdir(exist_ok=True)
    generate_key(layout.key, "fleet-client")
    generate_key(layout.ssh_dir / "ssh_host_ed25519_key", "fleet-host")
    shutil.copyfile(layout.key.with_suffix(".pub"), layout.ssh_dir / "authorized_keys")
    layout.bootstrap.write_text(BOOTSTRAP)


def generate_key(path: Path, comment: str) -> None:
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise FleetError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def launch_all(layout: Layout, names: list[str]) -> list[Host]:
    """Start every host at once, then wait for them; a host whose port was taken gets another."""
    ready: list[Host] = []
    pending = names
    for _ in range(PORT_ATTEMPTS):
        ports = free_ports(len(pending))
        launched: list[Host] = []
        for name, port in zip(pending, ports):
            launched.append(launch_host(layout, name, port))
            save_state(layout, ready + launched)  # so a failure half way can stop them all
        lost_port = wait_until_listening(layout, launched)
        ready += [host for host in launched if host not in lost_port]
        for host in lost_port:
            reap(host.launcher_pid)
        pending = [host.name for host in lost_port]
        if not pending:
            return sorted(ready, key=lambda host: host.name)
    raise FleetError(f"{', '.join(pending)} found no free port: see {layout.hosts_dir}/*/sshd.log")


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now; all held open together so the kernel hands out distinct ones."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def launch_host(layout: Layout, name: str, port: int) -> Host:
    host_dir = layout.host_dir(name)
    (host_dir / "layers").mkdir(parents=True, exist_ok=True)
    (host_dir / "sshd_config").write_text(SSHD_CONFIG.format(port=port))
    argv = [
        str(which("unshare")), "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child",
        "--propagation", "private", "/bin/sh", str(layout.bootstrap),
        name, str(layout.ssh_dir), str(host_dir), str(layout.workdir),
    ]
    with open(host_dir / "sshd.log", "wb") as log:
        launcher = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={"PATH": HOST_PATH}, start_new_session=True,
        )
    init_pid = child_of(launcher)
    if init_pid is None:
        launcher.kill()  # in case it hung rather than exited
        status = launcher.wait()
        output = (host_dir / "sshd.log").read_text(errors="replace").strip()
        raise FleetError(f"{name}: unshare exited with {status}:\n{output}")
    _LAUNCHED[launcher.pid] = launcher
    return Host(name, port, init_pid, launcher.pid, start_time(init_pid), pid_namespace(init_pid))


def child_of(launcher: subprocess.Popen[bytes]) -> int | None:
    """The pid of the host's PID 1, which unshare forks right after creating the namespaces."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and launcher.poll() is None:
        try:
            pids = children.read_text().split()
        except OSError:
            return None  # the launcher is already gone
        if pids:
            return int(pids[0])
        time.sleep(POLL_INTERVAL / 4)
    return None


def start_time(pid: int) -> int:
    """Clock ticks after boot when `pid` started, -1 if it is gone."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else -1


def stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat from the third (state) on, [] if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rpartition(")")[2].split()


def pid_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def wait_until_listening(layout: Layout, hosts: list[Host]) -> list[Host]:
    """Wait for every sshd to listen; return the hosts whose port another program took first."""
    waiting = list(hosts)
    lost_port: list[Host] = []
    deadline = time.monotonic() + START_TIMEOUT
    while waiting:
        for host in list(waiting):
            log = host_log(layout, host)
            # Read from the log rather than probed with a connection, which sshd may count
            # against the source address (PerSourcePenalties in OpenSSH >= 9.8).
            if "Server listening on" in log:
                waiting.remove(host)
            elif _LAUNCHED[host.launcher_pid].poll() is None:
                continue
            elif "Address already in use" in log:
                lost_port.append(host)
                waiting.remove(host)
            else:
                raise FleetError(f"{host.name} did not start sshd on port {host.port}:\n{log}")
        if waiting and time.monotonic() > deadline:
            raise FleetError(f"{waiting[0].name}: sshd not listening after {START_TIMEOUT}s")
        time.sleep(POLL_INTERVAL)
    return lost_port


def host_log(layout: Layout, host: Host) -> str:
    return (layout.host_dir(host.name) / "sshd.log").read_text(errors="replace")


def save_state(layout: Layout, hosts: list[Host]) -> None:
    layout.state.write_text(json.dumps({"hosts": [asdict(host) for host in hosts]}, indent=2))


def load_hosts(layout: Layout) -> list[Host]:
    try:
        state = json.loads(layout.state.read_text())
    except FileNotFoundError:
        return []
    return [Host(**host) for host in state["hosts"]]


def write_inventory(layout: Layout, hosts: list[Host]) -> None:
    lines = [
        "# Written by tests/fleet.py; these hosts vanish with the fleet.",
        "all:",
        "  children:",
        "    fleet:",
        "      vars:",
        "        ansible_host: 127.0.0.1",
        "        ansible_user: root",
        # mitogen's ssh adds its own StrictHostKeyChecking before ssh_common_args: only this turns it off.
        "        ansible_host_key_checking: false",
        f"        ansible_ssh_private_key_file: {json.dumps(str(layout.key))}",
        f"        ansible_python_interpreter: {TARGET_PYTHON}",
        f"        ansible_ssh_common_args: {json.dumps(SSH_OPTIONS)}",
        "      hosts:",
    ]
    for host in hosts:
        lines += [f"        {host.name}:", f"          ansible_port: {host.port}"]
    layout.inventory.write_text("\n".join(lines) + "\n")


def stop_fleet(workdir: Path) -> None:
    """Kill every process of every host started in `workdir` and remove the fleet's files."""
    layout = Layout(workdir.resolve())
    hosts = load_hosts(layout)
    running = [host for host in hosts if is_running(host)]
    for host in running:
        # SIGKILL to a PID namespace's first process makes the kernel kill all the others.
        signal_quietly(host.pid, signal.SIGKILL)
    for host in running:
        wait_until_exited(host)
    for host in hosts:
        reap(host.launcher_pid)
    unmount_under(layout.workdir)
    remove_files(layout)


def is_running(host: Host) -> bool:
    """Whether the host's PID 1 is alive: once it is a zombie, its PID namespace is empty."""
    fields = stat_fields(host.pid)
    return bool(fields) and int(fields[19]) == host.start_time and fields[0] != "Z"


def signal_quietly(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def wait_until_exited(host: Host) -> None:
    # The kernel reaps the rest of the namespace before its PID 1 turns zombie. Watching that pid
    # beats scanning for the namespace, whose inode number the next namespace may get.
    deadline = time.monotonic() + STOP_TIMEOUT
    while is_running(host):
        if time.monotonic() > deadline:
            raise FleetError(f"{host.name}: still running {STOP_TIMEOUT}s after SIGKILL")
        time.sleep(POLL_INTERVAL)


def processes_in_namespace(namespace: str) -> Iterator[int]:
    """Pids of the live processes in a PID namespace named as `readlink /proc/PID/ns/pid` does.

    The name is only unique while the namespace lives: a new one may reuse it."""
    for entry in Path("/proc").iterdir():
        if namespace and entry.name.isdigit() and pid_namespace(int(entry.name)) == namespace:
            yield int(entry.name)


def reap(launcher_pid: int) -> None:
    launcher = _LAUNCHED.pop(launcher_pid, None)
    if launcher is not None:
        launcher.wait(timeout=STOP_TIMEOUT)


def unmount_under(workdir: Path) -> None:
    """Detach any mount left under the workdir; hosts mount only in their own namespaces."""
    for mount_point in sorted(mount_points_under(workdir), reverse=True):
        run(["umount", "-l", mount_point])


def mount_points_under(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    return [point for point in mount_points() if point.startswith(prefix) or point == str(directory)]


def mount_points() -> Iterator[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with blanks and backslashes escaped as octal (\040).
        yield re.sub(r"\\([0-7]{3})", lambda escape: chr(int(escape[1], 8)), line.split()[4])


def remove_files(layout: Layout) -> None:
    for directory in (layout.hosts_dir, layout.ssh_dir):
        shutil.rmtree(directory, ignore_errors=True)
    for path in (layout.bootstrap, layout.inventory, layout.state):
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "up":
            print(start_fleet(args.n, args.dir).inventory_path)
        else:
            stop_fleet(args.dir)
    except FleetError as error:
        print(f"fleet: {error}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleet.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start N hosts (stopping any fleet already in DIR)")
    up.add_argument("n", type=int, metavar="N")
    up.add_argument("--dir", type=Path, required=True)
    down = commands.add_parser("down", help="stop the fleet in DIR and remove its files")
    down.add_argument("--dir", type=Path, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
