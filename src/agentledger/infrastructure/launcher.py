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
from collections.abc import Sequence
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


def start_supervisors(specs: Sequence[LaunchSpec], env: dict[str, str], log_dir: Path) -> list[dict[str, Any]]:
    """Start the supervisors of several sessions with one process start; their handshakes, in order.

    One helper imports the supervisor's code once and forks a supervisor per
    spec (``entrypoints/supervise.py --many``), each in a session of its own
    with its own handshake pipe and log: a group of eight pays one
    interpreter's start-up, not eight. Its argv names every session.
    """
    if len(specs) == 1:
        return [start_supervisor(specs[0], env, log_dir / f"{specs[0].session_id}.supervisor.log")]
    pipes = [os.pipe() for _ in specs]
    argv = [sys.executable, "-m", "agentledger.entrypoints.supervise", "--many",
            *[f"{spec.session_id}={write}" for spec, (_, write) in zip(specs, pipes, strict=True)]]
    data = orjson.dumps([asdict(spec) for spec in specs])
    helper = _spawn(argv, env, log_dir / "supervisors.log", data, tuple(write for _, write in pipes))
    patience = HANDSHAKE_TIMEOUT + max((s.on_create_timeout if s.on_create else 0.0) for s in specs)
    try:
        return [_answer(read, log_dir / f"{spec.session_id}.supervisor.log", patience)
                for spec, (read, _) in zip(specs, pipes, strict=True)]
    finally:
        for read, _ in pipes:
            os.close(read)
        try:
            helper.wait(timeout=5.0)  # it exits once it has forked them
        except subprocess.TimeoutExpired:
            pass


def _answer(fd: int, log_path: Path, patience: float) -> dict[str, Any]:
    """One supervisor's handshake; one that never came is an answer too (``no-answer``), so that the others'
    are still read: whether it recorded its launch is unknown, which the caller must not guess."""
    try:
        return _read_handshake(fd, log_path, "supervisor", patience)
    except HelperStartError as error:
        return {"ok": False, "kind": "no-answer", "error": str(error)}


def start_detached(argv: list[str], env: dict[str, str], log_path: Path, *, what: str,
                   stdin_data: bytes | None = None, timeout: float = HANDSHAKE_TIMEOUT) -> dict[str, Any]:
    """Start ``argv`` + [handshake fd] detached, output appended to ``log_path``; return its answer.

    ``stdin_data`` is written to its stdin (then closed); without it, stdin is /dev/null.
    """
    read_fd, write_fd = os.pipe()
    _spawn([*argv, str(write_fd)], env, log_path, stdin_data, (write_fd,))
    try:
        return _read_handshake(read_fd, log_path, what, timeout)
    finally:
        os.close(read_fd)


def _spawn(argv: list[str], env: dict[str, str], log_path: Path, stdin_data: bytes | None,
           handshake_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log_path``, the handshake pipes' write ends
    passed on (and closed here), ``stdin_data`` on its stdin (else /dev/null)."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        helper = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=log_fd,
            stderr=log_fd,
            pass_fds=handshake_fds,
            start_new_session=True,
            env=env,
            cwd="/",
        )
    finally:
        for fd in handshake_fds:
            os.close(fd)
        os.close(log_fd)
    if stdin_data is not None:
        assert helper.stdin is not None
        try:
            helper.stdin.write(stdin_data)
            helper.stdin.close()
        except BrokenPipeError:  # it died at once: its handshake (or its absence) says why
            pass
    return helper


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

    def abandon(self) -> None:
        """Close this process's copy of the pipe without answering (a forked supervisor answers on its own)."""
        if self._fd is not None:
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
