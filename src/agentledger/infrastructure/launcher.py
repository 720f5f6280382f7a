"""Starting a supervisor from the CLI and waiting for its one-line answer.

The supervisor is a detached child (its own session, no terminal, stdin from
/dev/null) that outlives the CLI. It answers on an inherited pipe once the
launch is recorded, so ``launch`` returns at once yet never prints an id the
log does not hold, and can report a missing binary as a usage error.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from agentledger.infrastructure.supervisor import LaunchSpec

#: A supervisor that has not answered by then is reported as failed to start.
HANDSHAKE_TIMEOUT = 60.0


class SupervisorStartError(Exception):
    pass


def start_supervisor(spec: LaunchSpec, env: dict[str, str], supervisor_log: Path) -> dict[str, Any]:
    """Start the supervisor for ``spec`` and return its handshake message."""
    read_fd, write_fd = os.pipe()
    log_fd = os.open(supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "agentledger.entrypoints.supervise",
             orjson.dumps(asdict(spec)).decode(), str(write_fd)],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            pass_fds=(write_fd,),
            start_new_session=True,
            env=env,
            cwd="/",
        )
    finally:
        os.close(write_fd)
        os.close(log_fd)
    try:
        return _read_handshake(read_fd, supervisor_log)
    finally:
        os.close(read_fd)


def _read_handshake(fd: int, supervisor_log: Path) -> dict[str, Any]:
    buffer = b""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SupervisorStartError(f"the supervisor did not answer within {HANDSHAKE_TIMEOUT:.0f}s; see {supervisor_log}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise SupervisorStartError(f"the supervisor exited before answering; see {supervisor_log}")
        buffer += chunk
    return orjson.loads(buffer.split(b"\n", 1)[0])
