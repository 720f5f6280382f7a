"""The ports: what the service layer needs from a store, as ``Protocol``s the backends implement.

``infrastructure/store.py`` (SQLite) and ``infrastructure/postgres_store.py``
(PostgreSQL) each implement :class:`Store`; ``tests/test_store.py`` runs one
set of tests against both. Application code is written against these types
only, so a new backend is a new class with these methods (and a case in
``open_store``), nothing else.

Read-model SQL is written once, in SQLite's ``?`` / ``:name`` placeholder
style; a backend that needs another style rewrites it (the PostgreSQL one
does). Rows index by position and by column name, like ``sqlite3.Row``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from uuid import UUID

    from eventsourcing.persistence import Notification, StoredEvent

    from agentledger.adapters.base import Adapter, LaunchPlan
    from agentledger.adapters.observer import Observer
    from agentledger.application.launching import LaunchSpec
    from agentledger.application.ledger import Ledger
    from agentledger.application.log import Applied
    from agentledger.application.stop_hooks import HookRun
    from agentledger.domain.liveness import PidProbe, ProcessIdentity
    from agentledger.domain.reconciliation import SessionFacts
    from agentledger.domain.webhooks import HttpOutcome
    from agentledger.domain.workspace import DiffStats, WorktreeInfo, WorktreeState
    from agentledger.infrastructure.process_table import ProcessInfo

#: Parameters of one statement: positional (``?``) or named (``:name``).
Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the read models use."""

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Any], /) -> Cursor: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def rowcount(self) -> int: ...


class Row(Protocol):
    """A result row: ``row[0]`` or ``row["column"]``, like ``sqlite3.Row``."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...


class Queryable(Protocol):
    """Anything that runs a statement: the read-model connection, or a cursor in a transaction."""

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Any], /) -> Cursor: ...


class ReadModelDb(Protocol):
    """The read-model connection: statements outside a transaction commit on their own."""

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Any], /) -> Cursor: ...

    def cursor(self) -> Cursor: ...

    def rollback(self) -> None: ...  # end a transaction a failed statement left open

    def close(self) -> None: ...  # a process that reads no read model lets its connection go (a supervisor)


class Location(Protocol):
    """Where a store is: safe to print (``url``), to hand to a child process (``connect_url``), to compare."""

    @property
    def kind(self) -> str: ...  # "sqlite" or "postgresql"

    @property
    def url(self) -> str: ...

    @property
    def connect_url(self) -> str: ...

    @property
    def address(self) -> tuple[str, ...]: ...  # equal for two spellings of one store


class TableMismatch(NamedTuple):
    """A read-model table that differs from a rebuild of the log up to the same position."""

    table: str
    live_rows: int
    rebuilt_rows: int
    differing: list[str]  # the first column (the id) of every row in one but not the other, sorted


class ReadModels(Protocol):
    """The read models the service layer asks, kept level with the log (``projections/read_models.py``)."""

    def catch_up(self) -> Applied: ...  # apply every event not yet projected

    def position(self) -> int: ...  # the log position they reflect

    def session(self, session_id: str) -> Row: ...  # SessionNotFound if none

    def facts_on_host(self, host: str) -> list[SessionFacts]: ...  # what the rule needs, of host's live sessions

    def tracked_processes(self, host: str) -> list[Row]: ...  # id, pid, pid_start_time, supervisor_pid

    def agent_sessions_on_host(self, host: str) -> list[Row]: ...  # live agent sessions, with their PIDs

    def resumed_by(self, session_id: str) -> list[str]: ...  # sessions that continue its conversation

    def open_on_host(self, host: str) -> list[str]: ...  # ids of host's sessions not stopped, oldest first

    def stopped_since(self, host: str, position: int) -> list[Row]: ...  # id, position: host's stops after it

    def compare_with_rebuild(self) -> tuple[int, list[TableMismatch]]: ...  # their position; the tables that differ

    def current_locks(self, now: float) -> list[dict[str, Any]]: ...  # each directory's last claim, holder's status

    def lock_claims_of(self, session_id: str, now: float) -> list[dict[str, Any]]: ...  # claims it made or lost

    def is_archived(self, session_id: str) -> bool: ...  # its events were moved into an archive (db archive)


class Store(Protocol):
    """An open store: the session log (``ledger``) and the read models beside it (``db``, ``read_models``)."""

    @property
    def location(self) -> Location: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def db(self) -> ReadModelDb: ...

    @property
    def read_models(self) -> ReadModels: ...

    @property
    def webhook_outbox(self) -> WebhookOutbox: ...

    @property
    def raw_log(self) -> RawLog: ...

    @property
    def retention(self) -> Retention: ...

    @property
    def events_table(self) -> str: ...  # the library's table of stored events (the raw log, metrics, tests)

    @property
    def position_column(self) -> str: ...  # that table's log position column

    def log_head(self) -> int: ...

    def clock(self) -> float: ...  # the store's clock, epoch seconds (application/clock.py)

    def event_positions(self, session_id_hex: str, after_version: int = 0) -> dict[int, int]: ...

    def event_position(self, session_id_hex: str, version: int) -> int | None: ...

    def read_transaction(self) -> AbstractContextManager[Cursor]: ...

    def write_transaction(self) -> AbstractContextManager[Cursor]: ...

    def hold_lock(self, name: str) -> bool: ...  # a named lock for this connection's life (one deliverer)

    def close(self) -> None: ...


class NewDelivery(NamedTuple):
    """A delivery for the outbox: one hook of one event, to one endpoint, due as soon as it is written."""

    endpoint: str
    event_id: str
    hook_type: str
    position: int
    session_id: str
    payload: str  # the JSON body, without sent_at (each attempt adds its own)
    created_at: float


class Attempt(NamedTuple):
    """One POST of a delivery: when it started and ended, and what came back."""

    delivery_id: int
    started: float
    ended: float
    outcome: HttpOutcome


class WebhookOutbox(Protocol):
    """The webhook outbox's rows: deliveries and each endpoint's log position (``infrastructure/webhook_outbox.py``).

    Not a read model (a rebuild leaves it alone); what goes in, and when, is ``application/webhooks.py``'s to say.
    """

    def positions(self, endpoints: Sequence[str]) -> dict[str, int]: ...  # of those that have one

    def add_positions(self, starts: Mapping[str, int]) -> None: ...  # to endpoints without one; others keep theirs

    def add_deliveries(self, deliveries: Sequence[NewDelivery], *, read_at: Mapping[str, int],
                       upto: int) -> bool: ...  # and positions to upto; False, nothing written, if not still read_at

    def pending(self, endpoint: str, limit: int,  # its oldest pending deliveries, with bodies; with due_at,
                due_at: float | None = None) -> list[Row]: ...  # only those due then, no session's behind one not due

    def mark_delivered(self, attempts: Sequence[Attempt]) -> None: ...  # in one transaction

    def mark_failed(self, attempt: Attempt, *, state: str, retry_at: float | None,
                    error: str) -> None: ...  # pending again at retry_at, or dead

    def deliveries(self, *, dead_only: bool, endpoint: str | None, limit: int) -> list[Row]: ...  # newest first

    def requeue(self, ids: Sequence[int] | None, *, now: float,
                check: Callable[[list[Row]], None]) -> list[Row]: ...  # ids (None: all dead) as new; check may refuse


class RawLog(Protocol):
    """A store's events and snapshots as stored, never decoded: for ``db copy`` (``infrastructure/raw_log.py``)."""

    def head(self) -> int: ...  # the last event's position (0: none)

    def count_upto(self, position: int) -> int: ...  # events at or before it (positions need not be dense)

    def event_at(self, position: int) -> Notification: ...  # the first at or after it

    def first_event(self) -> Notification: ...  # the log's first (it holds one)

    def page(self, *, after: int, upto: int, limit: int) -> list[Notification]: ...  # in log order

    def append(self, events: Sequence[StoredEvent]) -> None: ...  # all or none: AlreadyStored if one is there

    def originator_ids(self) -> list[UUID]: ...  # every aggregate's in the log

    @property
    def keeps_snapshots(self) -> bool: ...  # else the two methods below are not to be called

    def snapshots(self, originator_id: UUID) -> list[StoredEvent]: ...  # one aggregate's, oldest first

    def add_snapshots(self, snapshots: Sequence[StoredEvent]) -> None: ...  # verbatim

    def streams(self, ids: Sequence[str]) -> dict[str, list[Row]]: ...  # whole streams by hex id: rows of
    # originator_version, topic, state, in version order (absent ones left out)


class ArchivedRecord(NamedTuple):
    """A session moved into an archive: the row ``archived_sessions`` keeps of it."""

    session_id: str
    name: str | None
    archive_path: str
    archived_at: float
    stopped_at: float | None
    events: int
    checksum: str


class Retention(Protocol):
    """Removing archived sessions from the live store and putting them back (``infrastructure/retention.py``)."""

    def stopped_before(self, cutoff: float) -> list[Row]: ...  # id, name, stopped_at; oldest stop first

    def last_event_owner(self) -> str | None: ...  # the aggregate (hex) of the log's last event: never removed

    def stream_lengths(self, ids: Sequence[str]) -> dict[str, int]: ...  # each present stream's last version

    def check_writable(self) -> None: ...  # the store's own error if it refuses writes (read-only); writes nothing

    def remove(self, records: Sequence[ArchivedRecord],  # one transaction: events, snapshots, read-model rows,
               lengths: Mapping[str, int]) -> None: ...  # + archived rows; StreamsChanged (nothing done) if not these

    def forget(self, session_ids: Sequence[str]) -> None: ...  # their archived rows (imported back)

    def archived(self) -> list[Row]: ...  # every archived row, newest archive first


class ArchiveOutput(Protocol):
    """An archive being written: its text goes in through ``write``; once written, ``sha256`` is the digest of
    the file's bytes as they went to disk."""

    def write(self, data: bytes) -> int: ...

    @property
    def sha256(self) -> str: ...


class ArchiveFiles(Protocol):
    """Archive files on disk (``infrastructure/archive_files.py``): written whole and synced, or not at all."""

    def default_path(self) -> str: ...  # a new file under the home's archive directory

    def create(self, path: str) -> AbstractContextManager[ArchiveOutput]: ...  # 0600, synced, in place on a clean exit

    def sha256(self, path: str) -> str: ...  # of the file's bytes as read back from disk; ArchiveDamaged

    def lines(self, path: str) -> AbstractContextManager[Iterator[bytes]]: ...  # decompressed; ArchiveDamaged

    def remove(self, path: str) -> None: ...  # a new archive the store did not take after all; LedgerError


class WebhookPoster(Protocol):
    """Sends one signed delivery to one endpoint (``infrastructure/webhook_sender.py``), and says what came back."""

    def post(self, body: bytes, *, delivery_id: int, event_id: str, hook_type: str, sent_at: int,
             attempt: int) -> HttpOutcome: ...

    def close(self) -> None: ...


class ProcessWatch(Protocol):
    """Probes for pass after pass, keeping live processes watched between them (``processes.ProcessWatch``)."""

    def start_pass(self) -> None: ...

    def probe(self, identity: ProcessIdentity) -> PidProbe: ...

    def finish_pass(self) -> None: ...

    def close(self) -> None: ...


class Machine(Protocol):
    """This host as the service layer needs it: its name and boot, who acts here, and its processes.

    Implemented by ``infrastructure/machine.py`` (psutil, pidfds, signals); the
    composition root hands it to the reconciler, ``why``, ``stop`` and the agents' watch.
    """

    @property
    def host(self) -> str: ...

    @property
    def boot_id(self) -> str: ...

    def user(self) -> str: ...

    def actor(self, component: str) -> dict[str, object]: ...  # the decided_by / by record

    def identity_of(self, pid: int) -> ProcessIdentity: ...

    def probe(self, identity: ProcessIdentity) -> PidProbe: ...  # looks only on its own host and boot

    def watch(self) -> ProcessWatch: ...

    def supervisor_alive(self, pid: int | None, session_id_hex: str) -> bool: ...

    def signal_group(self, pgid: int, signum: int) -> bool: ...

    def signal_session_group(self, identity: ProcessIdentity, signum: int) -> bool: ...

    def session_group_exists(self, identity: ProcessIdentity) -> bool: ...

    # the process table, for discovering and adopting agents started elsewhere

    def process_table(self) -> dict[int, ProcessInfo]: ...

    def with_cwd(self, process: ProcessInfo) -> ProcessInfo: ...  # its working directory, read now

    def owned_by_me(self, process: ProcessInfo) -> bool: ...

    def session_variable(self, pid: int) -> str | None: ...  # AGENTLEDGER_SESSION_ID in its environment


class HookRunner(Protocol):
    """Runs an on-stop command for at most ``timeout`` seconds and says how it ended (``infrastructure/hook_runner.py``)."""

    def run(self, command: str, *, cwd: str, env: dict[str, str], timeout: float) -> HookRun: ...

    def inherited_environment(self) -> dict[str, str]: ...  # what a hook inherits, without agentledger's secrets


class LaunchHost(Protocol):
    """Where a launch happens: the home's files, the user's environment, the supervisor and daemon processes.

    Implemented by ``infrastructure/launch_host.py``; ``application/launching.py`` plans against it.
    """

    def new_session_id(self) -> str: ...  # 32 hex digits, never used before

    def is_directory(self, path: str) -> bool: ...

    def log_path(self, session_id: str) -> str: ...  # where the session's output goes (its directory made)

    def write_prompt(self, session_id: str, text: str, files: Sequence[str],
                     spec: str | None = None) -> str: ...  # spec, text, files in a 0600 file; UsageError

    def environment(self, unset: Sequence[str]) -> dict[str, str]: ...  # the agent's: the user's, less secrets

    def user(self) -> str: ...  # who launches

    def start_supervisor(self, spec: LaunchSpec) -> dict[str, Any]: ...  # its handshake: ok, pid | error, kind

    def start_supervisors(self, specs: Sequence[LaunchSpec]) -> list[dict[str, Any]]: ...  # many, one start

    def ensure_reconciler(self) -> str | None: ...  # a daemon for the store runs (started if need be); a notice


class Agents(Protocol):
    """The agents agentledger knows (``adapters/``): which one a command line runs, each by name, their storage.

    Implemented by ``adapters/agents.py`` over the registry; where a new agent plugs in is ``adapters/registry.py``.
    """

    def for_command(self, cmdline: Sequence[str]) -> Adapter | None: ...

    def named(self, name: str | None) -> Adapter: ...  # UnknownAdapter for a name it does not know

    def for_session(self, name: str | None) -> Adapter: ...  # a session's, falling back to the plain command's

    def program_name(self, cmdline: Sequence[str]) -> str | None: ...

    def agent_names(self) -> list[str]: ...  # the adapters that launch an agent from a prompt

    def launch_plan(self, agent: str, *, session_id: str, cwd: str, prompt_path: str, model: str | None,
                    name: str | None) -> LaunchPlan: ...  # the agent's argv, environment, stdin

    def native_facts(self, adapter: Adapter, native_session_id: str, path: str, run_since: float) -> dict[str, Any]: ...

    def observer(self, adapter: Adapter, *, cwd: str, started_at: float, pid: int | None, hint: str | None,
                 hint_source: str, output_path: str | None, argv: Sequence[str],
                 run_started_at: float | None) -> Observer: ...


class Repositories(Protocol):
    """Git repositories on this machine and their worktrees (``infrastructure/git.py``, the real ``git``).

    Used by ``application/worktrees.py`` (a launch's worktree) and ``application/workspaces.py`` (diff, merge,
    removal after the stop). Failures are ``GitError``; a merge or removal that would lose or half-apply work
    is ``WorkRefused``, with nothing changed (``domain/workspace.py``).
    """

    def root(self, directory: str) -> str | None: ...  # the top of its checkout; None outside a repository

    def commit_of(self, directory: str, ref: str) -> str | None: ...  # the commit a ref names, or None

    def current_branch(self, directory: str) -> str | None: ...  # None: a detached HEAD

    def branch_exists(self, directory: str, branch: str) -> bool: ...

    def valid_branch_name(self, directory: str, name: str) -> bool: ...

    def worktrees(self, repository: str) -> list[WorktreeInfo]: ...  # the main checkout first

    def add_worktree(self, repository: str, path: str, *, branch: str, ref: str) -> None: ...  # a new branch

    def copy_untracked(self, source: str, target: str, patterns: Sequence[str], *, link: bool) -> list[str]: ...

    def state(self, repository: str, worktree: str, *, branch: str, base: str,
              ignore: Sequence[str] = ...) -> WorktreeState: ...  # dirty, ahead/behind, unpushed

    def diff(self, repository: str, worktree: str | None, *, base: str, branch: str | None,
             landed: tuple[str, str] | None = ..., stat: bool = ...,
             ignore: Sequence[str] = ...) -> str: ...  # uncommitted changes included

    def diff_stats(self, repository: str, worktree: str | None, *, base: str, branch: str | None,
                   landed: tuple[str, str] | None = ..., ignore: Sequence[str] = ...) -> DiffStats: ...

    def merge(self, repository: str, branch: str, *, into: str, squash: bool, message: str) -> str: ...  # commit

    def remove_worktree(self, repository: str, worktree: str) -> None: ...

    def delete_branch(self, repository: str, branch: str) -> bool: ...  # False: it was not there
