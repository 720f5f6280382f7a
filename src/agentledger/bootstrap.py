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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from agentledger.application.launching import Launching
    from agentledger.application.locking import DirectoryLocks
    from agentledger.application.ports import Agents, ArchiveFiles, HookRunner, Machine, Repositories, Store
    from agentledger.application.worktrees import Worktrees
    from agentledger.infrastructure.config import PostgresLocation, StoreLocation
    from agentledger.infrastructure.daemon_control import DaemonControl
    from agentledger.infrastructure.settings import Settings
    from agentledger.infrastructure.store import ReadModelPeek

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


def peek_read_models() -> AbstractContextManager[ReadModelPeek]:
    """The configured store's read models to read as they stand, creating nothing (shell completion's TAB).

    Not :func:`open_store`: that makes a missing store, migrates an old one and
    checks its identity, none of which a keystroke should do to a store that
    may not be there.
    """
    from agentledger.infrastructure.store import peek_read_models as peek

    return peek(configured_location())


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


def daemon_control() -> DaemonControl:
    """This host's daemon for the configured store, as this home finds it (``daemon`` commands, ``launch``)."""
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.daemon_control import DaemonControl

    return DaemonControl(configured_location(), home_dir())


def launching(store: Callable[[], Store]) -> Launching:
    """The launch use case over this host, the configuration's defaults and ``store()`` (opened when it starts one).

    A bad configuration is refused here, before anything is created or started.
    """
    from agentledger.application.launching import LaunchDefaults, Launching
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.launch_host import LocalLaunchHost
    from agentledger.infrastructure.settings import load_settings

    settings = load_settings()
    host = LocalLaunchHost(home_dir(), store, daemon_control, autostart_daemon=settings.autostart_daemon,
                           reconcile_interval=settings.reconcile_interval)
    defaults = LaunchDefaults(fuse_ttl=settings.fuse_ttl, on_stop=settings.on_stop,
                              on_stop_timeout=settings.on_stop_timeout, unset_env=tuple(settings.unset_env),
                              auto_lock=settings.auto_lock)
    return Launching(agents(), host, defaults, worktrees(settings), locks=directory_locks(store))


def repositories() -> Repositories:
    """Git repositories on this machine, through the ``git`` binary (worktrees, diffs, merges)."""
    from agentledger.infrastructure.git import LocalGit

    return LocalGit()


def worktrees(settings: Settings | None = None) -> Worktrees:
    """Creates launches' worktrees as the configuration says (``worktree_dir``, ``worktree_copy``, ...)."""
    from agentledger.application.worktrees import Worktrees
    from agentledger.infrastructure.settings import load_settings, worktree_settings

    return Worktrees(repositories(), worktree_settings(settings or load_settings()))


def directory_locks(store: Callable[[], Store]) -> DirectoryLocks:
    """The directory locks over ``store()`` and this machine (launch takes them; ``lock``, ``unlock``, ``locks``)."""
    from agentledger.application.locking import DirectoryLocks

    return DirectoryLocks(store, this_machine())


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


def foreign_tables(location: Location) -> list[str]:
    """The tables of an SQLite file that is another database's, not a ledger's (``db copy`` refuses it)."""
    from agentledger.infrastructure.store import foreign_tables as tables_of

    return tables_of(location)


def archive_files() -> ArchiveFiles:
    """Archive files on disk, new ones under the home's ``archive/`` by default (``db archive``, ``db import``)."""
    from agentledger.infrastructure.archive_files import ArchiveFileSystem
    from agentledger.infrastructure.config import home_dir

    return ArchiveFileSystem(home_dir())


def event_decoder() -> Callable[[Any], Any]:
    """Decodes one stored event (topic, state) as the live log's readers do: for ``db archive verify``."""
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent

    from agentledger.infrastructure.store import CheckedMapper
    from agentledger.infrastructure.transcoder import OrjsonTranscoder

    mapper = CheckedMapper(transcoder=OrjsonTranscoder())

    def decode(record: Any) -> Any:
        return mapper.to_domain_event(StoredEvent(originator_id=UUID(record.stream), originator_version=record.version,
                                                  topic=record.topic, state=record.state))

    return decode
