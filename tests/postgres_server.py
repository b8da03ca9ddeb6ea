"""A private PostgreSQL server for tests and .ci/run: Debian's server binaries (apt package
`postgresql`), a fresh cluster in a folder, a free port on 127.0.0.1, its socket in that folder, trust
auth for user `dagster`, database `ohlora`. Run as the `postgres` user when we are root (the server
refuses root).

    python tests/postgres_server.py start DIR   # prints the SQLAlchemy URL (psycopg2 driver)
    python tests/postgres_server.py stop DIR

`halt` / `resume` stop the server as a crash would (immediate shutdown) and start it again on the same port and
data, for the database-outage test.
"""

from __future__ import annotations

import getpass
import glob
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    if not found:
        raise SystemExit(f"PostgreSQL's {name} is needed (apt-get install postgresql; .ci/run installs it)")
    return found


def _as_db_user(args: list[str]) -> None:
    if getpass.getuser() == "root":
        args = ["runuser", "-u", "postgres", "--", *args]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def start(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if getpass.getuser() == "root":
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _as_db_user([_bin("initdb"), "-D", str(folder / "db"), "-U", "dagster", "--auth=trust", "-E", "UTF8"])
    (folder / "port").write_text(str(port))
    resume(folder)
    _as_db_user([_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "ohlora"])
    return f"postgresql+psycopg2://dagster@127.0.0.1:{port}/ohlora"  # dagster-postgres ships psycopg2


def resume(folder: Path) -> None:
    """Start the server of `folder` (again), on its port, and wait until it accepts connections."""
    port = (folder / "port").read_text()
    _as_db_user(
        [
            _bin("pg_ctl"),
            "-D",
            str(folder / "db"),
            "-l",
            str(folder / "log"),
            "-w",
            "-o",
            f"-p {port} -k {folder} -h 127.0.0.1",
            "start",
        ]
    )


def halt(folder: Path) -> None:
    """Stop the server at once, as a crash or an outage would (no checkpoint, clients cut off)."""
    if (folder / "db" / "postmaster.pid").exists():
        _as_db_user([_bin("pg_ctl"), "-D", str(folder / "db"), "-m", "immediate", "-w", "stop"])


def stop(folder: Path) -> None:
    halt(folder)
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def private_postgres(folder: Path):
    try:
        yield start(folder)
    finally:
        stop(folder)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "start":
        print(start(Path(sys.argv[2])))
    else:
        stop(Path(sys.argv[2]))
