"""Starting a detached helper process (a supervisor, the daemon) and waiting for its one-line answer.

The helper runs in its own session, with no terminal and stdin from
/dev/null, and outlives the command that started it. It answers on an
inherited pipe, whose descriptor is its last argument, once it is ready (a
supervisor: the launch is recorded; the daemon: it holds its lock). So the
starting command returns at once yet never reports something that did not
happen, and can turn the helper's refusal into a clear error.
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

from agentledger.application.errors import LedgerError
from agentledger.application.launching import LaunchSpec

#: A helper that has not answered by then is reported as failed to start.
HANDSHAKE_TIMEOUT = 60.0


class HelperStartError(LedgerError):
    """The helper did not come up; the message names its log."""


def start_supervisor(spec: LaunchSpec, env: dict[str, str], supervisor_log: Path) -> dict[str, Any]:
    """Start the supervisor for ``spec`` and return its handshake message.

    The spec goes on the supervisor's stdin, not in its argv: a command line is
    readable by every user of the host (``ps``), and the spec holds the prompt.
    The argv names the session, so that a supervisor can be recognised by it.
    """
    argv = [sys.executable, "-m", "agentledger.entrypoints.supervise", spec.session_id]
    patience = HANDSHAKE_TIMEOUT + (spec.on_create_timeout if spec.on_create else 0.0)  # it answers after on-create
    return start_detached(argv, env, supervisor_log, what="supervisor", stdin_data=orjson.dumps(asdict(spec)),
                          timeout=patience)


def start_detached(argv: list[str], env: dict[str, str], log_path: Path, *, what: str,
                   stdin_data: bytes | None = None, timeout: float = HANDSHAKE_TIMEOUT) -> dict[str, Any]:
    """Start ``argv`` + [handshake fd] detached, output appended to ``log_path``; return its answer.

    ``stdin_data`` is written to its stdin (then closed); without it, stdin is /dev/null.
    """
    read_fd, write_fd = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        helper = subprocess.Popen(
            [*argv, str(write_fd)],
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
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
    if stdin_data is not None:
        assert helper.stdin is not None
        try:
            helper.stdin.write(stdin_data)
            helper.stdin.close()
        except BrokenPipeError:  # it died at once: its handshake (or its absence) says why
            pass
    try:
        return _read_handshake(read_fd, log_path, what, timeout)
    finally:
        os.close(read_fd)


class Handshake:
    """The helper's side: send one JSON line to whoever started it, once."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def send(self, message: dict[str, Any]) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, orjson.dumps(message) + b"\n")
        except OSError:  # the starting command is gone; nothing waits for the answer
            pass
        os.close(self._fd)
        self._fd = None


def _read_handshake(fd: int, log_path: Path, what: str, timeout: float) -> dict[str, Any]:
    buffer = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HelperStartError(f"the {what} did not answer within {timeout:.0f}s; see {log_path}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise HelperStartError(f"the {what} exited before answering; see {log_path}")
        buffer += chunk
    return orjson.loads(buffer.split(b"\n", 1)[0])
