"""A private PostgreSQL server for the tests and for trying the team store by hand: initdb and pg_ctl in a
folder of its own, on a free loopback port, as an unprivileged user (postgres when run as root).

    python tests/pg.py up --dir .pg      # prints the RUNBOOK_DATABASE_URL to use
    python tests/pg.py down --dir .pg
"""
from __future__ import annotations

import argparse
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER = "runbook"


def bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def unavailable_reason() -> str | None:
    if bin_dir() is None:
        return "PostgreSQL is not installed (initdb not found): run tests/install-test-deps.sh as root"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    folder: Path
    port: int
    password: str

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def new_role(self, name: str, database: str) -> str:
        """A login role that is not a superuser and owns nothing (the role runbook runs as in the README's
        layout); its URL for `database`. Grants come from `runbook db upgrade --grant NAME`."""
        password = secrets.token_hex(12)
        self.psql(f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'")
        self.psql(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT CONNECT ON DATABASE "{database}" TO {name}',
                  database)
        return f"postgresql://{name}:{password}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres", url: str | None = None) -> str:
        done = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, url or self.url(database)],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.strip()}")
        return done.stdout

    def dump(self, database: str) -> str:
        done = subprocess.run(["pg_dump", "--no-owner", self.url(database)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"pg_dump: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        _as_owner([str(_bin("pg_ctl")), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def start(self) -> None:
        _as_owner([str(_bin("pg_ctl")), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
                   "-t", "60", "start"])

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _bin(name: str) -> Path:
    folder = bin_dir()
    if folder is None:
        raise RuntimeError("PostgreSQL is not installed")
    return folder / name


def _as_owner(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stdout}{done.stderr}")
    return done


def start_server(folder: Path | None = None) -> Server:
    """initdb + pg_ctl start in `folder` (a new temp folder by default), listening on loopback only."""
    folder = Path(folder or tempfile.mkdtemp(prefix="runbook-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    (folder / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (folder, folder / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    folder.chmod(0o700)
    server = Server(folder, free_port(), password)
    _as_owner([str(_bin("initdb")), "-D", str(server.data), "-U", USER, f"--pwfile={folder / 'pwfile'}",
               "--auth=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"])
    (folder / "pwfile").unlink()
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
                   f"unix_socket_directories = '{folder}'\nfsync = off\nmax_connections = 200\n")
    server.start()
    (folder / "url").write_text(server.url() + "\n")
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", default=".pg")
    args = parser.parse_args()
    folder = Path(args.dir).resolve()
    if args.action == "up":
        problem = unavailable_reason()
        if problem:
            print(problem, file=sys.stderr)
            return 1
        if (folder / "url").exists():
            print(f"already running: export RUNBOOK_DATABASE_URL={(folder / 'url').read_text().strip()}")
            return 0
        server = start_server(folder)
        print(f"export RUNBOOK_DATABASE_URL={server.url()}")
        return 0
    if (folder / "data").exists():
        _as_owner([str(_bin("pg_ctl")), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"], check=False)
    shutil.rmtree(folder, ignore_errors=True)
    time.sleep(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
