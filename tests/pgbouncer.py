"""A real PgBouncer in transaction mode in front of a PostgreSQL server, for ``tests/test_pooler.py`` and
``scripts/bench_pooler.py``: Debian's ``pgbouncer``, a config of our own, a free port, every database name
passed through to the server's database of that name, trust auth for user ``postgres``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PoolerMissing(Exception):
    """No ``pgbouncer`` binary on this machine."""


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


@contextmanager
def running_pgbouncer(pool_size: int, *, server_host: str = "127.0.0.1", server_port: int = 5432,
                      max_clients: int = 1000, start_timeout: float = 30.0) -> Iterator[int]:
    """A PgBouncer (``pool_mode = transaction``, ``default_pool_size = pool_size``) on the port it yields,
    stopped afterwards. :class:`PoolerMissing` without the binary; ``RuntimeError`` (with its log) if it
    exits or does not listen within ``start_timeout``."""
    binary = pgbouncer_binary()
    if binary is None:
        raise PoolerMissing("pgbouncer is not installed (Debian package pgbouncer)")
    directory = Path(tempfile.mkdtemp(prefix="agentledger-pgbouncer-"))  # not under a 0700 tree: see below
    port = free_port()
    (directory / "users.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={server_host} port={server_port}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory}/users.txt\npool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = {max_clients}\n")
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: it runs as postgres, which must read its files
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, "postgres")
        command[1:1] = ["-u", "postgres"]
    log = directory / "pgbouncer.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + start_timeout
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start (exit {process.poll()}): {log.read_text()[-500:]}")
            time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
