"""``python -m agentledger.entrypoints.supervise SESSION_ID HANDSHAKE_FD``: run one supervisor;
``… --many SESSION_ID=FD …``: fork one supervisor per session (a group launch).

Started by ``agentledger launch``, detached in its own session, with its
``LaunchSpec`` as JSON on stdin (kept out of argv, which every user can read;
with ``--many``, a JSON list in the order of the arguments). Its own
diagnostics go to stderr, which the launcher points at
``$AGENTLEDGER_HOME/logs/<id>.supervisor.log``; a forked supervisor points
its own there. Forking from one helper that has imported the supervisor's
code once is what makes a group of eight start in the time of about one:
each child is a supervisor like any other (its own session and process
group, its own store connection, its own handshake), and the helper exits.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from agentledger.application.launching import LaunchSpec
    from agentledger.infrastructure.launcher import Handshake


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s"
    )
    if argv[:1] == ["--many"]:
        return _many(argv[1:])
    from agentledger.infrastructure.launcher import Handshake

    session_id, handshake = argv[0], Handshake(int(argv[1]))
    try:
        [spec] = _specs([session_id])
    except Exception as error:
        return _failed([handshake], error)
    return _supervise(spec, handshake)


def _many(pairs: list[str]) -> int:
    """Fork a supervisor for each ``SESSION_ID=FD``; return once all are forked (they live on alone)."""
    from agentledger.infrastructure.launcher import Handshake

    ids = [pair.split("=", 1)[0] for pair in pairs]
    handshakes = [Handshake(int(pair.split("=", 1)[1])) for pair in pairs]
    try:
        specs = _specs(ids)
    except Exception as error:
        return _failed(handshakes, error)
    for spec, handshake in zip(specs, handshakes, strict=True):
        if os.fork() == 0:  # the child: no thread runs in this process, so forking is safe
            os.setsid()
            for other in handshakes:
                if other is not handshake:
                    other.abandon()
            _log_to(spec.log_path.removesuffix(".log") + ".supervisor.log")
            os._exit(_supervise(spec, handshake))
        handshake.abandon()  # the child has its own copy of the pipe
    return 0


def _specs(session_ids: list[str]) -> list[LaunchSpec]:
    """The specs on stdin (one object, or a list with ``--many``), checked against the sessions in argv."""
    from agentledger.application.launching import LaunchSpec
    from agentledger.infrastructure.settings import load_settings

    load_settings()  # the configuration's clock_skew_bound (the CLI already refused a bad one)
    data = orjson.loads(sys.stdin.buffer.read())
    specs = [LaunchSpec(**item) for item in (data if isinstance(data, list) else [data])]
    if [spec.session_id for spec in specs] != session_ids:
        raise ValueError(f"the specs on stdin are for sessions {[s.session_id for s in specs]}, not {session_ids}")
    import agentledger.runtime.supervisor  # noqa: F401 - imported once, before any fork

    return specs


def _supervise(spec: LaunchSpec, handshake: Handshake) -> int:
    try:
        from agentledger.bootstrap import open_store
        from agentledger.runtime.supervisor import Supervisor

        store = open_store()
        ledger = store.ledger
        # A supervisor appends and loads through the ledger alone. Its read-model connection, idle for the
        # session's whole life, would be one more server connection per session, and connections are what
        # a PostgreSQL server runs out of first (docs/scaling.md).
        store.db.close()
        return Supervisor(ledger, spec, handshake.send).run()
    except Exception as error:
        return _failed([handshake], error)


def _failed(handshakes: list[Handshake], error: Exception) -> int:
    logging.exception("supervisor failed")
    for handshake in handshakes:
        handshake.send({"ok": False, "kind": "supervisor", "error": f"supervisor failed: {error}"})
    return 1


def _log_to(path: str) -> None:
    """Point this process's stdout and stderr at ``path`` (appended, 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
