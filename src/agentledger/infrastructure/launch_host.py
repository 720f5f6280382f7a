"""The ``LaunchHost`` port on this machine: the home's files, the user's environment, the helper processes.

A launch writes the prompt to a 0600 file under the home (``prompts/``),
names the session's output log (``logs/``), hands the agent the user's
environment less agentledger's secrets (``agent_env.py``), starts the
supervisor detached (``launcher.py``) with the store's URL, and then asks
``daemon_control.py`` for a daemon, so that a session whose supervisor dies
is still stopped when its process ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from agentledger.adapters.prompts import PromptTooLarge, compose_prompt, write_prompt_file
from agentledger.application.errors import UsageError
from agentledger.infrastructure.agent_env import agent_environment
from agentledger.infrastructure.config import private_directory
from agentledger.infrastructure.host import os_user
from agentledger.infrastructure.launcher import start_supervisor, start_supervisors

if TYPE_CHECKING:
    from agentledger.application.launching import LaunchSpec
    from agentledger.application.ports import Store
    from agentledger.infrastructure.daemon_control import DaemonControl


class LocalLaunchHost:
    """Launches from the home ``home`` into the store ``store()`` opens, for the daemon ``daemon()`` finds.

    Both are called only once a supervisor is to start: a refused launch creates nothing.
    """

    def __init__(self, home: Path, store: Callable[[], Store], daemon: Callable[[], DaemonControl], *, autostart_daemon: bool,
                 reconcile_interval: float) -> None:
        self.home = home
        self.store = store
        self.daemon = daemon
        self.autostart_daemon = autostart_daemon
        self.reconcile_interval = reconcile_interval
        self._reconciler_checked = threading.Lock()  # a group launch asks once per session: one answer is enough
        self._reconciler_known = False

    def new_session_id(self) -> str:
        return uuid4().hex

    def is_directory(self, path: str) -> bool:
        return os.path.isdir(path)

    def log_path(self, session_id: str) -> str:
        logs = self.home / "logs"
        private_directory(logs)
        return str(logs / f"{session_id}.log")

    def write_prompt(self, session_id: str, text: str, files: Sequence[str], spec: str | None = None) -> str:
        try:
            data = compose_prompt(text, list(files), spec=spec)
        except PromptTooLarge as error:
            raise UsageError(str(error)) from None
        return str(write_prompt_file(self.home / "prompts", session_id, data))

    def environment(self, unset: Sequence[str]) -> dict[str, str]:
        return agent_environment(os.environ, unset)

    def user(self) -> str:
        return os_user()

    def start_supervisor(self, spec: LaunchSpec) -> dict[str, Any]:
        env = dict(os.environ, AGENTLEDGER_HOME=str(self.home), AGENTLEDGER_DB=self._writable_store_url())
        return start_supervisor(spec, env, self.home / "logs" / f"{spec.session_id}.supervisor.log")

    def start_supervisors(self, specs: Sequence[LaunchSpec]) -> list[dict[str, Any]]:
        env = dict(os.environ, AGENTLEDGER_HOME=str(self.home), AGENTLEDGER_DB=self._writable_store_url())
        return start_supervisors(specs, env, self.home / "logs")

    def _writable_store_url(self) -> str:
        """The store's URL for the supervisors, once it is seen to take writes: created here, not in a supervisor,
        and a read-only one refused before anything starts (a supervisor starts the command, then records it:
        on a store that refuses the record, the command would have run for nothing)."""
        store = self.store()
        store.retention.check_writable()
        return store.location.connect_url

    def ensure_reconciler(self) -> str | None:
        """The first call looks (and starts a daemon if need be); later ones, from the same launch, say nothing."""
        with self._reconciler_checked:
            if self._reconciler_known:
                return None
            self._reconciler_known = True
            return self.daemon().ensure_running(autostart=self.autostart_daemon, interval=self.reconcile_interval)
