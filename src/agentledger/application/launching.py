"""Launching, as the service layer plans it: the ``LaunchSpec`` a supervisor runs, its rules, and the use case.

``agentledger launch`` and ``resume`` (``entrypoints/launch_commands.py``)
only translate arguments into a call on :class:`Launching`, which plans the
launch from what the user gave, the configuration's defaults
(:class:`LaunchDefaults`) and the agent's adapter (its argv, prompt file and
environment, through the ``Agents`` port), starts the session's supervisor
and makes sure a reconciler runs (the ``LaunchHost`` port). The supervisor
(``runtime/supervisor.py``) then runs the :class:`LaunchSpec` and records
``Launched`` from :meth:`LaunchSpec.launched_fields`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentledger.application.worktrees import WorktreeRequest
from agentledger.domain.durations import format_duration
from agentledger.domain.errors import LedgerError, UsageError
from agentledger.domain.fuse import check_ttl
from agentledger.domain.policy import DEFAULT_TERMINATION_GRACE
from agentledger.domain.vocabulary import SessionStatus

if TYPE_CHECKING:
    from agentledger.adapters.base import Adapter
    from agentledger.application.locking import DirectoryLocks
    from agentledger.application.ports import Agents, LaunchHost
    from agentledger.application.worktrees import Worktrees

#: How long an ``--on-create`` command may run (installing dependencies can take a while).
DEFAULT_ON_CREATE_TIMEOUT = 600.0
#: How much of an agent's prompt the ``Launched`` event keeps (the whole prompt is in the prompt file).
RECORDED_PROMPT_CHARS = 2000

#: A supervisor's heartbeats by default: three per TTL, so that one late or lost beat never lets the fuse lapse.
HEARTBEATS_PER_TTL = 3


def heartbeat_interval(fuse_ttl: float, every: float | None) -> float:
    """Seconds between a supervisor's heartbeats: ``every``, else a third of the TTL.

    More than half the TTL is refused: one late heartbeat would let the fuse lapse.
    """
    if every is not None and every > fuse_ttl / 2:
        raise UsageError(f"--heartbeat-every {format_duration(every)} is more than half the fuse TTL "
                         f"({format_duration(fuse_ttl)}): one late heartbeat would let the fuse lapse")
    return every or fuse_ttl / HEARTBEATS_PER_TTL


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a supervisor needs, passed to it as JSON by ``agentledger launch``."""

    session_id: str
    argv: list[str]
    cwd: str
    fuse_ttl: float
    log_path: str
    launched_by: str
    adapter: str = "command"
    name: str | None = None
    model: str | None = None
    prompt: str | None = None
    group: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_every: float | None = None  # default TTL/3
    timeout: float | None = None  # master timeout, seconds from launch
    termination_grace: float = DEFAULT_TERMINATION_GRACE  # after the timeout's SIGTERM, before SIGKILL
    on_stop: str | None = None  # shell command to run once the stop is recorded
    on_stop_timeout: float | None = None
    stdin_path: str | None = None  # fed to the process's stdin (an agent's prompt file); None: /dev/null
    native_session_id: str | None = None  # the agent's own session id, when the launch chose it (or resumes it)
    resumed_from: str | None = None  # the session (hex id) whose agent conversation this one continues
    #: The process's whole environment (``infrastructure/agent_env.py``: the user's, without agentledger's
    #: secrets); None: the supervisor's own, which holds the store URL it was given.
    env: dict[str, str] | None = None
    #: ``launch --worktree``: the session's own git worktree (``application/worktrees.py``); ``cwd`` is in it.
    workspace: dict[str, Any] | None = None
    on_create: str | None = None  # shell command the supervisor runs in ``cwd`` before the agent; failure refuses
    on_create_timeout: float = DEFAULT_ON_CREATE_TIMEOUT
    check: str | None = None  # shell command run in the worktree after the stop (``application/checks.py``)

    @property
    def heartbeat_interval(self) -> float:
        return heartbeat_interval(self.fuse_ttl, self.heartbeat_every)

    def launched_fields(self, *, host: str, boot_id: str, supervisor_pid: int) -> dict[str, Any]:
        """The ``Launched`` event's fields, on the supervisor's host and boot."""
        return {
            "argv": self.argv,
            "cwd": self.cwd,
            "adapter": self.adapter,
            "name": self.name,
            "model": self.model,
            "prompt": self.prompt,
            "group": self.group,
            "labels": self.labels,
            "host": host,
            "boot_id": boot_id,
            "log_path": self.log_path,
            "launched_by": self.launched_by,
            "supervisor_pid": supervisor_pid,
            "timeout": self.timeout,
            "on_stop": self.on_stop,
            "on_stop_timeout": self.on_stop_timeout,
            "resumed_from": self.resumed_from,
            "workspace": self.workspace,
            "on_create": self.on_create,
            "check": self.check,
        }


@dataclass(frozen=True)
class LaunchDefaults:
    """What the configuration says about a launch the user did not (``infrastructure/settings.py``)."""

    fuse_ttl: float
    on_stop: str | None
    on_stop_timeout: float
    unset_env: Sequence[str] = ()
    auto_lock: bool = True  # a launch takes its directory's lock (application/locking.py)


@dataclass(frozen=True)
class RunOptions:
    """How a supervised session runs and is labelled, as the user gave them (None: the configuration's)."""

    fuse_ttl: float | None = None
    heartbeat_every: float | None = None
    timeout: float | None = None
    on_stop: str | None = None  # None: the configuration's; '' (or blank): none
    on_stop_timeout: float | None = None
    unset_env: Sequence[str] = ()  # added to the configuration's
    name: str | None = None
    group: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    lock: bool | None = None  # take the directory's lock (None: the configuration's auto_lock)
    force: bool = False  # take it even while someone holds it (recorded as forced; the holder is left alone)
    on_create: str | None = None  # run in the session's directory before the agent starts; failure: not started
    on_create_timeout: float | None = None
    check: str | None = None  # run in the session's worktree after it stops (``compare`` shows the outcome)


@dataclass(frozen=True)
class PastSession:
    """The stopped session a ``resume`` continues, as the read models show it."""

    id: str
    status: str  # as the read side derives it now
    adapter: str
    native_session_id: str | None
    cwd: str
    name: str | None
    model: str | None
    group: str | None
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Prepared:
    """A launch ready for its supervisor: its spec, and the directory whose lock it holds (None: none)."""

    spec: LaunchSpec
    directory: str | None


@dataclass(frozen=True)
class Started:
    """A launch the supervisor has recorded: its plan, the process's PID, and a word about the daemon (or None)."""

    spec: LaunchSpec
    pid: int | None
    notice: str | None


class Launching:
    """The launch use case: plan a session, start its supervisor, make sure a reconciler will watch it."""

    def __init__(self, agents: Agents, host: LaunchHost, defaults: LaunchDefaults,
                 worktrees: Worktrees | None = None, locks: DirectoryLocks | None = None) -> None:
        self.agents = agents
        self.host = host
        self.defaults = defaults
        self.worktrees = worktrees  # None: ``launch --worktree`` is refused
        self.locks = locks  # the directory locks a launch takes (None: it takes none)

    def agent(self, name: str, *, prompt: str, files: Sequence[str], cwd: str, run: RunOptions,
              model: str | None = None, worktree: WorktreeRequest | None = None, spec: str | None = None) -> Started:
        """``launch AGENT -p PROMPT``: the adapter's command line, the prompt (after the ``spec`` file, with the
        attached files) on its stdin; with ``worktree``, in a new git worktree of ``cwd``'s repository."""
        return self._start(self._agent_spec(name, prompt=prompt, files=files, cwd=cwd, run=run, model=model,
                                            worktree=worktree, spec=spec), run)

    def prepare_agent(self, name: str, *, prompt: str, files: Sequence[str], cwd: str, run: RunOptions,
                      model: str | None = None, worktree: WorktreeRequest | None = None,
                      spec: str | None = None) -> Prepared:
        """Everything :meth:`agent` does before starting the supervisor (its worktree made, its directory's
        lock taken), for :meth:`start_prepared` to start many at once."""
        return self._prepare(self._agent_spec(name, prompt=prompt, files=files, cwd=cwd, run=run, model=model,
                                              worktree=worktree, spec=spec), run)

    def start_prepared(self, prepared: Sequence[Prepared]) -> list[Started | LedgerError]:
        """Start the supervisors of several prepared launches in one go (one process start, not one each);
        each one's outcome, in order: started, or why not (its lock given back, its worktree taken away)."""
        try:
            answers = self.host.start_supervisors([p.spec for p in prepared])
        except BaseException as error:
            for one in prepared:
                self._unanswered(one, error)
            raise
        results: list[Started | LedgerError] = []
        for one, answer in zip(prepared, answers, strict=True):
            try:
                results.append(self._finish(one, answer))
            except LedgerError as error:
                results.append(error)
        return results

    def _agent_spec(self, name: str, *, prompt: str, files: Sequence[str], cwd: str, run: RunOptions,
                    model: str | None, worktree: WorktreeRequest | None, spec: str | None) -> LaunchSpec:
        fields = self._run_fields(run, worktree)
        session_id = self.host.new_session_id()
        recorded, prompt_path = self._prompt(prompt, files, session_id, what=f"launch {name}", spec=spec)
        cwd, fields["workspace"] = self._directory(cwd, worktree, session_id)
        plan = self.agents.launch_plan(name, session_id=session_id, cwd=cwd, prompt_path=prompt_path, model=model,
                                       name=run.name)
        fields["env"] = {**fields["env"], **plan.env}
        return LaunchSpec(
            session_id=session_id, argv=plan.argv, cwd=cwd, adapter=name, model=model, prompt=recorded,
            stdin_path=plan.stdin_path, native_session_id=plan.native_session_id, **self._labels(run), **fields,
            **self._files(session_id))

    def command(self, argv: Sequence[str], *, cwd: str, run: RunOptions, adapter: str,
                model: str | None = None, prompt: str | None = None,
                worktree: WorktreeRequest | None = None) -> Started:
        """``launch -- ARGV``: any command; ``model`` and ``prompt`` are only recorded, for reference."""
        fields = self._run_fields(run, worktree)
        session_id = self.host.new_session_id()
        cwd, fields["workspace"] = self._directory(cwd, worktree, session_id)
        return self._start(LaunchSpec(
            session_id=session_id, argv=list(argv), cwd=cwd, adapter=adapter, model=model, prompt=prompt,
            **self._labels(run), **fields, **self._files(session_id)), run)

    def resume(self, old: PastSession, *, message: str, files: Sequence[str], run: RunOptions) -> Started:
        """A new session running the agent's own resume command on ``old``'s native session, in its directory."""
        adapter = self.check_resumable(old)
        assert old.native_session_id is not None
        short = old.id[:12]
        fields = self._run_fields(run, None)
        session_id = self.host.new_session_id()
        recorded, prompt_path = self._prompt(message, files, session_id, what=f"resume {short}")
        labels = RunOptions(name=run.name or old.name, group=run.group or old.group,
                            labels={**old.labels, **run.labels})
        return self._start(LaunchSpec(
            session_id=session_id, argv=adapter.resume_argv(old.native_session_id), cwd=old.cwd,
            adapter=adapter.name, model=old.model, prompt=recorded, stdin_path=prompt_path,
            native_session_id=old.native_session_id, resumed_from=old.id, **self._labels(labels), **fields,
            **self._files(session_id)), run)

    def check_resumable(self, old: PastSession) -> Adapter:
        """``old``'s adapter, if its conversation can be continued: it ran an agent, has stopped (two agents
        must not write one conversation), and its agent's session and directory exist; else refused."""
        short = old.id[:12]
        adapter = self.agents.for_session(old.adapter)
        if adapter.binary is None:
            raise UsageError(f"session {short} ran a plain command (adapter {old.adapter}): only an agent's "
                             f"conversation can be resumed (agents: {', '.join(self.agents.agent_names())})")
        if old.status != SessionStatus.STOPPED.value:
            raise LedgerError(f"session {short} is still {old.status}: two agents must not write one conversation; "
                              f"stop it first (agentledger stop {short}) or wait for it to end")
        if not old.native_session_id:
            raise UsageError(f"session {short}: its {adapter.name} adapter never found the agent's own session, "
                             "so there is no conversation to resume")
        if not self.host.is_directory(old.cwd):
            raise UsageError(f"session {short}'s directory {old.cwd} is gone: the agent's session belongs to it")
        return adapter

    def _run_fields(self, run: RunOptions, worktree: WorktreeRequest | None) -> dict[str, Any]:
        """The spec's fields from the run options over the defaults; refused before anything starts."""
        if run.check and worktree is None:
            raise UsageError("--check runs in the session's own worktree after it stops: use it with --worktree "
                             "(or a group launch, which gives each session one)")
        fuse_ttl = check_ttl(self.defaults.fuse_ttl, "fuse_ttl") if run.fuse_ttl is None else check_ttl(run.fuse_ttl)
        heartbeat_interval(fuse_ttl, run.heartbeat_every)  # refuses one that would let the fuse lapse
        on_stop = (self.defaults.on_stop if run.on_stop is None else run.on_stop.strip()) or None
        return {
            "env": self.host.environment([*self.defaults.unset_env, *run.unset_env]),
            "fuse_ttl": fuse_ttl,
            "heartbeat_every": run.heartbeat_every,
            "timeout": run.timeout,
            "on_stop": on_stop,
            "on_stop_timeout": (run.on_stop_timeout or self.defaults.on_stop_timeout) if on_stop else None,
            "on_create": (run.on_create or "").strip() or None,
            "on_create_timeout": run.on_create_timeout or DEFAULT_ON_CREATE_TIMEOUT,
            "check": (run.check or "").strip() or None,
        }

    def _directory(self, cwd: str, worktree: WorktreeRequest | None,
                   session_id: str) -> tuple[str, dict[str, Any] | None]:
        """Where the session runs: ``cwd``, or a new worktree of its repository (and the facts to record)."""
        if worktree is None:
            return cwd, None
        if self.worktrees is None:
            raise UsageError("--worktree is not available here")
        return self.worktrees.create(worktree, cwd=cwd, session_id=session_id)

    @staticmethod
    def _labels(run: RunOptions) -> dict[str, Any]:
        return {"name": run.name, "group": run.group, "labels": dict(run.labels)}

    def _files(self, session_id: str) -> dict[str, Any]:
        return {"log_path": self.host.log_path(session_id), "launched_by": self.host.user()}

    def _prompt(self, text: str, files: Sequence[str], session_id: str, *, what: str,
                spec: str | None = None) -> tuple[str, str]:
        """The prompt (with the spec and attached files) in its 0600 file for the agent's stdin: (text to record,
        its path)."""
        if not text.strip() and not files and spec is None:
            raise UsageError(f"{what}: the {'message' if what.startswith('resume') else 'prompt'} is empty")
        path = self.host.write_prompt(session_id, text, files, spec)
        recorded = text if len(text) <= RECORDED_PROMPT_CHARS else (
            text[:RECORDED_PROMPT_CHARS] + f"… ({len(text.encode())} bytes in all; see {path})")
        return recorded, path

    def _start(self, spec: LaunchSpec, run: RunOptions | None = None) -> Started:
        """Start the supervisor, which records the launch; then make sure a daemon will reconcile the session.

        First the directory's lock is taken for the session (refused while held,
        unless ``--force``); if the supervisor then records nothing, it is given back.
        """
        prepared = self._prepare(spec, run or RunOptions())
        try:
            answer = self.host.start_supervisor(spec)
        except BaseException as error:
            self._unanswered(prepared, error)
            raise
        return self._finish(prepared, answer)

    def _prepare(self, spec: LaunchSpec, run: RunOptions) -> Prepared:
        """Take the directory's lock for the launch (a new worktree is taken away if that is refused)."""
        try:
            return Prepared(spec, self._take_lock(spec, run))
        except BaseException:
            self._discard_worktree(spec)
            raise

    def _unanswered(self, prepared: Prepared, error: BaseException) -> None:
        """A supervisor that never answered may or may not have recorded the launch: the lock is given back
        only if the log has no such session (``locking.py`` looks); the worktree is left (``worktrees clean``)."""
        self._release_lock(prepared.directory, prepared.spec, f"{type(error).__name__}: {error}")

    def _finish(self, prepared: Prepared, answer: dict[str, Any]) -> Started:
        """The supervisor's answer: started, or refused (what it did not record is undone; raised)."""
        spec = prepared.spec
        if not answer["ok"]:
            self._release_lock(prepared.directory, spec, str(answer.get("error") or answer.get("kind") or "refused"))
            if answer.get("kind") not in ("spawn-failed", "setup-failed", "no-answer"):  # recorded, or maybe
                self._discard_worktree(spec)
            if answer.get("kind") == "spawn-failed":
                raise UsageError(f"{answer['error']} (recorded as session {spec.session_id[:12]}, spawn-failed)")
            raise LedgerError(answer["error"])
        return Started(spec, answer["pid"], self.host.ensure_reconciler())

    def _discard_worktree(self, spec: LaunchSpec) -> None:
        """Remove the worktree made for a launch that was never recorded: no session would ever clean it up."""
        if spec.workspace is not None and self.worktrees is not None:
            self.worktrees.discard(spec.workspace)

    def _take_lock(self, spec: LaunchSpec, run: RunOptions) -> str | None:
        """Take the lock on the session's directory (its real path), unless locking is off; the directory."""
        if self.locks is None or not (self.defaults.auto_lock if run.lock is None else run.lock):
            return None
        from agentledger.application.locking import real_directory

        directory = real_directory(spec.cwd)
        self.locks.take_for_launch(directory, session_id=spec.session_id, force=run.force)
        return directory

    def _release_lock(self, directory: str | None, spec: LaunchSpec, error: str) -> None:
        """Give the lock back after a launch its supervisor did not record (a recorded one's stop frees it)."""
        if self.locks is not None and directory is not None:
            try:
                self.locks.release_failed_launch(directory, session_id=spec.session_id, error=error)
            except Exception:  # noqa: BLE001 - the rule frees it anyway once this process, its taker, ends
                pass
