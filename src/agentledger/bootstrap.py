"""The composition root: the one place where the entry points get an open store, or a way to open one.

The CLI (``entrypoints/cli.py``'s ``Context``), the daemon and the supervisor
open their store here; what runs on threads of its own (the log follower,
the metrics collector, the webhook workers) is handed an *opener* from here,
so that it opens connections of its own without knowing the backend or the
configuration. Which backend a location means is decided once, by
``infrastructure/store.py``'s ``open_store``; where the store is, once, by
``infrastructure/settings.py``'s ``store_location`` (the environment, else
``config.toml``, else the home's ``ledger.db``). ``lint-imports`` keeps every
other module above the infrastructure from importing the store's modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentledger.application.ports import Agents, HookRunner, Machine, Store
    from agentledger.infrastructure.config import PostgresLocation, StoreLocation

    Location = StoreLocation | PostgresLocation


def configured_location() -> Location:
    """Where the configured store is (``AGENTLEDGER_DB``, else ``db`` in ``config.toml``, else the home's file)."""
    from agentledger.infrastructure.settings import store_location

    return store_location()


def open_store(location: Location | None = None, *, check_identity: bool = True) -> Store:
    """Open the store at ``location`` (the configured one by default), creating or upgrading it if it must.

    From then on this process judges time by the store's clock. ``check_identity``
    off (``db init --force``) accepts a store that is not the one this home used there.
    """
    from agentledger.infrastructure.store import open_store as open_backend

    return open_backend(location or configured_location(), check_identity=check_identity)


def store_opener(location: Location) -> Callable[[], Store]:
    """Opens ``location`` again each time it is called: for a thread that needs connections of its own."""
    return lambda: open_store(location)


def this_machine() -> Machine:
    """This host: its name and boot, who acts here, its processes (for the reconciler, ``why``, ``stop``)."""
    from agentledger.infrastructure.machine import LocalMachine

    return LocalMachine()


def agents() -> Agents:
    """The agents agentledger knows (``adapters/registry.py``), for discovering, adopting and watching them."""
    from agentledger.adapters.agents import KnownAgents

    return KnownAgents()


def hook_runner() -> HookRunner:
    """Runs on-stop commands as this process's children (for the daemon's pending hooks)."""
    from agentledger.infrastructure.hook_runner import ProcessHookRunner

    return ProcessHookRunner()


def upgrade_store(location: Location) -> str | None:
    """Create or migrate the store's schema to this code's; the revision it had before (None: none)."""
    from agentledger.infrastructure.store import initialise_store, store_schema_revision

    before = store_schema_revision(location)
    initialise_store(location)
    return before


def schema_revision(location: Location) -> str | None:
    """The store's read-model schema revision (None if it has none yet)."""
    from agentledger.infrastructure.store import store_schema_revision

    return store_schema_revision(location)
