"""``python -m agentledger.entrypoints.supervise SESSION_ID HANDSHAKE_FD``: run one supervisor.

Started by ``agentledger launch``, detached in its own session, with its
``LaunchSpec`` as JSON on stdin (kept out of argv, which every user can read).
Its own diagnostics go to stderr, which the launcher points at
``$AGENTLEDGER_HOME/logs/<id>.supervisor.log``.
"""

from __future__ import annotations

import logging
import sys

import orjson


def main(argv: list[str]) -> int:
    from agentledger.infrastructure.launcher import Handshake

    session_id, handshake = argv[0], Handshake(int(argv[1]))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s"
    )
    try:
        from agentledger.application.launching import LaunchSpec
        from agentledger.bootstrap import open_store
        from agentledger.infrastructure.settings import load_settings
        from agentledger.runtime.supervisor import Supervisor

        load_settings()  # the configuration's clock_skew_bound (the CLI already refused a bad one)
        spec = LaunchSpec(**orjson.loads(sys.stdin.buffer.read()))
        if spec.session_id != session_id:
            raise ValueError(f"the spec on stdin is for session {spec.session_id}, not {session_id}")
        store = open_store()
        return Supervisor(store.ledger, spec, handshake.send).run()
    except Exception as error:
        logging.exception("supervisor failed")
        handshake.send({"ok": False, "kind": "supervisor", "error": f"supervisor failed: {error}"})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
