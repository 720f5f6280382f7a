"""Issue 7: a 200 MB transcript must not slow a reconcile pass or `status` by more than 10 ms.

Everything runs in a throw-away directory: a scratch ``HOME`` (so Claude Code's
storage is ``$HOME/.claude/projects/<cwd, non-alphanumerics as '-'>/<id>.jsonl``),
one scratch ``AGENTLEDGER_HOME`` and project directory (the session's cwd) per session.

Two phases, one after the other, the same in all but the transcript's size:

- a real supervised session, ``agentledger launch --adapter claude-code
  --fuse-ttl 3s --cwd PROJECT -- python standin.py ...`` (no pinned session id, so
  the adapter finds the newest transcript whose first line is newer than the
  process). The stand-in plays Claude Code: it writes its transcript (a first
  line stamped now, then a pre-generated body: ~100 KB in the baseline,
  ``--size-mb`` in the other phase) under a temporary name, renames it into
  place, then appends a user + assistant line pair every 100 ms until stopped,
  so the supervisor's observer (one poll a second) does real tail reads;
- once the session shows the agent's facts, ``--runs`` whole ``agentledger
  reconcile --json`` and ``agentledger status ID --json`` commands (alternating,
  after one untimed run of each), then ``--runs`` in-process passes
  (``Reconciler.run_pass()``, a new Reconciler each, as the command does);
  meanwhile the supervisor's RSS is sampled every 250 ms and its CPU time and
  bytes read (``/proc/PID/io`` rchar: page-cache reads too) taken over the window.

Then, in this process, the observer's own cost on each phase's transcript:
``Observer.poll()`` on a file it has never seen (finding it and its first read),
``ClaudeCodeAdapter.read_facts`` alone, a poll with nothing new, and a poll after
1 MB was appended; and for scale, the same after a cursor has walked the whole
file (a supervisor that watched it grow), and one naive read of the whole file.

Run: ``cd scripts && /tmp/venv/bin/python bench_transcripts.py [--size-mb 200] [--runs 15]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
import psutil  # noqa: E402
from benchlib import AGENTLEDGER, cli_env, machine  # noqa: E402

BASELINE_BYTES = 100 * 1024
TARGET_MS = 10.0
#: The stand-in appends one user + assistant line pair this often (~14 KB/s).
APPEND_EVERY = 0.1
STEADY_APPEND = 1024 * 1024

STANDIN = r'''
import os, signal, sys, time, uuid
from datetime import datetime, timezone
import orjson

body, directory, ready, every = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)

def stamp():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

sid, cwd = str(uuid.uuid4()), os.getcwd()
os.makedirs(directory, exist_ok=True)
final = os.path.join(directory, sid + ".jsonl")
part = final + ".part"  # not *.jsonl: the adapter never picks it up half-written
with open(part, "wb") as out:
    out.write(orjson.dumps({"type": "user", "sessionId": sid, "cwd": cwd, "timestamp": stamp(), "uuid": str(uuid.uuid4()),
                            "message": {"role": "user", "content": "benchmark: keep working"}}) + b"\n")
    out.flush()
    with open(body, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            offset += os.sendfile(out.fileno(), src.fileno(), offset, size - offset)
os.rename(part, final)
with open(ready + ".tmp", "w") as handle:
    handle.write(final)
os.rename(ready + ".tmp", ready)
n = 0
text = "Working on it. " * 40
with open(final, "ab", buffering=0) as out:
    while not stop:
        n += 1
        now = stamp()
        user = {"type": "user", "sessionId": sid, "cwd": cwd, "timestamp": now, "uuid": str(uuid.uuid4()),
                "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{n}",
                                                          "content": text}]}}
        assistant = {"type": "assistant", "sessionId": sid, "cwd": cwd, "timestamp": now, "uuid": str(uuid.uuid4()),
                     "message": {"id": f"msg_live_{n}", "model": "claude-sonnet-4-5", "role": "assistant",
                                 "content": [{"type": "text", "text": text}],
                                 "usage": {"input_tokens": 3, "cache_creation_input_tokens": 120,
                                           "cache_read_input_tokens": 20000, "output_tokens": 150}}}
        out.write(orjson.dumps(user) + b"\n" + orjson.dumps(assistant) + b"\n")  # one write: whole lines
        time.sleep(every)
'''


# -- transcripts ---------------------------------------------------------------------


def _stamp(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transcript_lines(sid: str, cwd: str, first: int, count: int, tag: str) -> bytes:
    """``count`` Claude Code-like lines: prompts, tool calls, tool results (~4 KB), answers with usage."""
    now = _stamp()
    filler = ("def handler(event, context):\n    return {'statusCode': 200, 'body': event}\n" * 48)[:4000]
    answer = "Here is what I changed and why. " * 30
    out = []
    for i in range(first, first + count):
        base = {"sessionId": sid, "cwd": cwd, "timestamp": now, "uuid": f"{tag}-{i}", "version": "2.0.0",
                "gitBranch": "main", "isSidechain": False, "userType": "external"}
        kind = i % 4
        if kind == 0:
            line = {**base, "type": "user", "message": {"role": "user", "content": f"step {i}: fix the next test"}}
        elif kind == 1:
            line = {**base, "type": "assistant", "message": {
                "id": f"msg_{tag}_{i}", "model": "claude-sonnet-4-5", "role": "assistant", "type": "message",
                "content": [{"type": "tool_use", "id": f"toolu_{tag}_{i}", "name": "Read",
                             "input": {"file_path": f"/src/module_{i}.py"}}],
                "usage": {"input_tokens": 4, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 18000,
                          "output_tokens": 60}}}
        elif kind == 2:
            line = {**base, "type": "user", "message": {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{tag}_{i - 1}", "content": filler}]}}
        else:
            line = {**base, "type": "assistant", "message": {
                "id": f"msg_{tag}_{i}", "model": "claude-sonnet-4-5", "role": "assistant", "type": "message",
                "content": [{"type": "text", "text": answer}],
                "usage": {"input_tokens": 4, "cache_creation_input_tokens": 900, "cache_read_input_tokens": 18300,
                          "output_tokens": 420}}}
        out.append(orjson.dumps(line))
    return b"\n".join(out) + b"\n"


def write_body(path: Path, size: int, cwd: str) -> int:
    """A transcript body of at least ``size`` bytes (ending with a summary line); its line count."""
    lines, step = 0, 400 if size > 4 * 2**20 else 4
    with open(path, "wb") as out:
        while out.tell() < size:
            out.write(transcript_lines("body-session", cwd, lines, step, "body"))
            lines += step
        out.write(orjson.dumps({"type": "summary", "summary": "Benchmark transcript", "leafUuid": "body-end"}) + b"\n")
    return lines + 1


# -- the CLI, timed ------------------------------------------------------------------


def al(args: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*AGENTLEDGER, *args], env=env, capture_output=True, text=True, check=check)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([*AGENTLEDGER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - started, done.stdout.decode()


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


class Sampler(threading.Thread):
    """The supervisor's RSS every 250 ms."""

    def __init__(self, process: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.process, self.rss, self.done = process, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.rss.append(self.process.memory_info().rss)
            except psutil.Error:
                return
            self.done.wait(0.25)


# -- sessions and phases ------------------------------------------------------------


def start_session(name: str, root: Path, body: Path, launched: list) -> dict[str, Any]:
    """Launch a supervised stand-in in its own project directory and AGENTLEDGER_HOME; return once the
    supervisor has recorded the agent's facts from the transcript."""
    from agentledger.adapters.claude_code import config_dir, project_dir_name

    home = root / f"agentledger-home-{name}"
    project = root / f"project-{name}"  # its own cwd: the adapter never mistakes another session's transcript
    project.mkdir()
    env = cli_env(AGENTLEDGER_HOME=str(home))
    env.pop("AGENTLEDGER_DB", None)
    ready = root / f"ready-{name}"
    directory = config_dir() / "projects" / project_dir_name(str(project))
    t_launch = time.monotonic()
    out = al(["launch", "--adapter", "claude-code", "--fuse-ttl", "3s", "--cwd", str(project), "--name",
              f"bench-{name}", "--json", "--", sys.executable, str(root / "standin.py"), str(body), str(directory),
              str(ready), str(APPEND_EVERY)], env)
    launch = json.loads(out.stdout)
    sid = launch["id"]
    entry = {"name": name, "sid": sid, "env": env, "home": home, "cwd": str(project), "agent_pid": launch["pid"],
             "supervisor_pid": None}
    launched.append(entry)
    try:
        entry["agent_create"] = psutil.Process(launch["pid"]).create_time()
    except psutil.Error:
        pass
    deadline = time.monotonic() + 120
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = json.loads(al(["status", sid, "--json"], env).stdout)
        if status.get("supervisor_pid"):
            entry["supervisor_pid"] = status["supervisor_pid"]
        agent = status.get("agent") or {}
        if ready.exists() and agent.get("native_session_id") and agent.get("tokens_in"):
            break
        if status.get("status") == "stopped":
            raise RuntimeError(f"{name}: the session stopped early: {status}")
        time.sleep(0.3)
    else:
        raise RuntimeError(f"{name}: no agent facts recorded within 120 s: {status}")
    entry["transcript"] = Path(ready.read_text())
    entry["found_after"] = time.monotonic() - t_launch
    entry["supervisor"] = psutil.Process(entry["supervisor_pid"])
    return entry


def begin_window(entry: dict[str, Any]) -> None:
    supervisor = entry["supervisor"]
    entry["rss_start"] = supervisor.memory_info().rss
    entry["sampler"] = Sampler(supervisor)
    entry["sampler"].start()
    entry["size"] = entry["transcript"].stat().st_size
    entry["cpu0"], entry["io0"], entry["t0"] = supervisor.cpu_times(), supervisor.io_counters(), time.monotonic()
    entry.update(reconcile_wall=[], reconcile_pass=[], status_wall=[], in_process=[])


def end_window(entry: dict[str, Any], launched: list) -> dict[str, Any]:
    """Close the supervisor's window, stop the session, and return the phase's figures."""
    supervisor = entry["supervisor"]
    cpu1, io1, t1 = supervisor.cpu_times(), supervisor.io_counters(), time.monotonic()
    entry["sampler"].done.set()
    entry["sampler"].join()
    cpu0, io0 = entry["cpu0"], entry["io0"]
    rss = entry["sampler"].rss or [entry["rss_start"]]
    final = json.loads(al(["status", entry["sid"], "--json"], entry["env"]).stdout)
    al(["stop", entry["sid"]], entry["env"])
    wait_gone(entry)
    launched.remove(entry)
    entry.update(
        window=t1 - entry["t0"], cpu=(cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        rchar=io1.read_chars - io0.read_chars, growth=entry["transcript"].stat().st_size - entry["size"],
        rss_max=max(rss), cpu_total=cpu1.user + cpu1.system, rchar_total=io1.read_chars,
        heartbeats=final.get("heartbeat_count"), agent=final.get("agent"),
    )
    return entry


def time_commands(entries: list[dict[str, Any]], runs: int) -> None:
    """``runs`` whole reconcile and status commands against each session's home, the sessions taking
    turns run by run (and which goes first alternating), after one untimed run of each."""
    for entry in entries:
        timed(["reconcile", "--json"], entry["env"]), timed(["status", entry["sid"], "--json"], entry["env"])
    for i in range(runs):
        turn = entries if i % 2 == 0 else entries[::-1]
        for entry in turn:
            took, text = timed(["reconcile", "--json"], entry["env"])
            entry["reconcile_wall"].append(took)
            report = json.loads(text)
            assert report["sessions"] == 1 and report["counts"] == {"kept": 1}, report["counts"]
            entry["reconcile_pass"].append((datetime.fromisoformat(report["finished_at"])
                                            - datetime.fromisoformat(report["started_at"])).total_seconds())
        for entry in turn:
            took, text = timed(["status", entry["sid"], "--json"], entry["env"])
            entry["status_wall"].append(took)
            assert json.loads(text)["status"] == "running"


def in_process_passes(entry: dict[str, Any], runs: int) -> None:
    """``Reconciler.run_pass()`` in this (warm) process, a new Reconciler each time, as the command does."""
    from agentledger.application.reconciling import Reconciler
    from agentledger.bootstrap import this_machine
    from agentledger.infrastructure.config import home_dir
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.spool import Spool
    from agentledger.infrastructure.store import open_store

    os.environ["AGENTLEDGER_HOME"] = str(entry["home"])
    os.environ.pop("AGENTLEDGER_DB", None)
    store = open_store(store_location())
    try:
        for _ in range(runs):
            reconciler = Reconciler(store, machine=this_machine(), spool=Spool(home_dir()))
            started = time.perf_counter()
            report = reconciler.run_pass()
            entry["in_process"].append(time.perf_counter() - started)
            reconciler.close()
            assert report.counts == {"kept": 1}, report.counts
    finally:
        store.close()


def run_phase(name: str, root: Path, body: Path, runs: int, watch: float, launched: list) -> dict[str, Any]:
    """One session alone: the commands, the in-process passes, then ``watch`` seconds of the supervisor alone."""
    entry = start_session(name, root, body, launched)
    begin_window(entry)
    time_commands([entry], runs)
    in_process_passes(entry, runs)
    time.sleep(watch)
    return end_window(entry, launched)


def run_paired(root: Path, small: Path, large: Path, runs: int, launched: list) -> tuple[dict, dict]:
    """Both sessions at once, each in its own home; the commands alternate between the two homes."""
    base = start_session("paired-baseline", root, small, launched)
    big = start_session("paired-large", root, large, launched)
    for entry in (base, big):
        begin_window(entry)
    time_commands([base, big], runs)
    for entry in (base, big):
        in_process_passes(entry, runs)
    return end_window(base, launched), end_window(big, launched)


def wait_gone(entry: dict[str, Any], patience: float = 15.0) -> None:
    """Wait for the session's agent and supervisor to exit; kill (by PID, same process only) any left."""
    deadline = time.monotonic() + patience
    for key in ("agent_pid", "supervisor_pid"):
        pid = entry.get(key)
        if not pid:
            continue
        try:
            process = psutil.Process(pid)
            if key == "agent_pid" and entry.get("agent_create") and process.create_time() != entry["agent_create"]:
                continue  # the PID was reused: not ours
            process.wait(max(0.1, deadline - time.monotonic()))
        except psutil.NoSuchProcess:
            continue
        except psutil.TimeoutExpired:
            try:
                process.kill()
            except psutil.Error:
                pass


# -- the observer in this process ----------------------------------------------------


def append_bytes(path: Path, size: int, cwd: str, tag: str) -> int:
    written = 0
    first = 0
    with open(path, "ab") as out:
        while written < size:
            chunk = transcript_lines("appended", cwd, first, 40, tag)
            out.write(chunk)
            written += len(chunk)
            first += 40
    return written


def observer_costs(transcript: Path, cwd: str, reps: int, walk: bool) -> dict[str, Any]:
    from agentledger.adapters.base import NativeRef, first_line, iso_epoch
    from agentledger.adapters.claude_code import ClaudeCodeAdapter
    from agentledger.adapters.observer import Observer
    from agentledger.adapters.tail import read_new_lines

    adapter = ClaudeCodeAdapter()
    head = first_line(transcript)
    started_at = iso_epoch(head["timestamp"]) - 1.0
    size = transcript.stat().st_size
    result: dict[str, Any] = {"size": size}

    Observer(adapter, cwd=cwd, started_at=started_at, pid=None).poll()  # untimed: first-call costs (imports, caches)
    first, observer = [], None
    for _ in range(reps):
        observer = Observer(adapter, cwd=cwd, started_at=started_at, pid=None)
        t = time.perf_counter()
        observation = observer.poll()
        first.append(time.perf_counter() - t)
        assert observer.ref is not None and observer.ref.path == str(transcript), observer.ref
        assert observation.facts.get("tokens_in"), observation.facts
    result["first_poll"] = first
    ref = NativeRef(head["sessionId"], str(transcript))
    direct = []
    for _ in range(reps):
        t = time.perf_counter()
        adapter.read_facts(ref, {})
        direct.append(time.perf_counter() - t)
    result["first_read_facts"] = direct

    def steady(obs: Observer, tag: str) -> tuple[list[float], list[float], int]:
        idle, grown, read = [], [], 0
        for i in range(reps):
            t = time.perf_counter()
            obs.poll()
            idle.append(time.perf_counter() - t)
            append_bytes(transcript, STEADY_APPEND, cwd, f"{tag}{i}")
            before = obs.cursor["tail"]["offset"]
            t = time.perf_counter()
            observation = obs.poll()
            grown.append(time.perf_counter() - t)
            read = obs.cursor["tail"]["offset"] - before
            assert read >= STEADY_APPEND and observation.fresh_activity, "the appended lines were not read"
        return idle, grown, read

    assert observer is not None
    result["idle_poll"], result["mb_poll"], result["mb_read"] = steady(observer, "s")
    result["cursor_bytes"] = len(orjson.dumps(observer.cursor))

    if walk:  # a supervisor that watched the file grow from its first line: its cursor knows every message id
        watcher = Observer(adapter, cwd=cwd, started_at=started_at, pid=None)
        watcher.ref = ref
        stat = transcript.stat()
        watcher.cursor = {"tail": {"offset": 0, "dev": stat.st_dev, "ino": stat.st_ino}}
        t = time.perf_counter()
        reads = 0
        while watcher.cursor["tail"]["offset"] < transcript.stat().st_size:
            watcher.poll()
            reads += 1
        result["walk"] = (time.perf_counter() - t, reads)
        usage = watcher.cursor.get("usage", {})
        result["walk_ids"] = len(usage)
        result["walk_usage_bytes"] = sys.getsizeof(usage) + sum(
            sys.getsizeof(k) + sys.getsizeof(v) + sum(sys.getsizeof(n) for n in v) for k, v in usage.items())
        result["walk_idle"], result["walk_mb"], _ = steady(watcher, "w")
        result["walk_cursor_bytes"] = len(orjson.dumps(watcher.cursor))

        size = transcript.stat().st_size
        t = time.perf_counter()
        whole = read_new_lines(str(transcript), None, first_read_limit=size + 1, read_limit=size + 1)
        result["naive"] = (time.perf_counter() - t, len(whole.records))
        del whole
    return result


# -- main ----------------------------------------------------------------------------


def print_phase(phase: dict[str, Any]) -> None:
    agent = phase["agent"] or {}
    print(f"[{phase['name']}] transcript {phase['size'] / 2**20:.1f} MB when measuring began (agent facts recorded "
          f"{phase['found_after']:.1f}s after launch: tokens {agent.get('tokens_in')}/{agent.get('tokens_out')}, "
          f"title {agent.get('title')!r}); it grew {phase['growth'] / 1024:.0f} KB over the {phase['window']:.1f}s "
          f"window; {phase['heartbeats']} beats in all")
    print(f"  reconcile --json (whole command) {ms(phase['reconcile_wall']):6.1f} ms (min "
          f"{min(phase['reconcile_wall']) * 1000:.1f}); pass as it reports it {ms(phase['reconcile_pass']):.1f} ms; "
          f"in-process pass (warm process) {ms(phase['in_process']):.2f} ms")
    print(f"  status ID --json (whole command) {ms(phase['status_wall']):6.1f} ms (min "
          f"{min(phase['status_wall']) * 1000:.1f})")
    print(f"  supervisor over the window: CPU {phase['cpu'] * 1000:.0f} ms ({100 * phase['cpu'] / phase['window']:.2f}% "
          f"of a core), read {phase['rchar'] / 1024:.0f} KB (rchar); RSS {phase['rss_start'] / 2**20:.1f} MB at "
          f"start, max {phase['rss_max'] / 2**20:.1f} MB; since it started: CPU {phase['cpu_total'] * 1000:.0f} ms, "
          f"read {phase['rchar_total'] / 2**20:.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=200.0, help="the large transcript's size (default 200)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command per phase (default 15)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of both phases, the order flipped each round (baseline, large, large, "
                             "baseline, ...) so a drift of the machine cancels (default 2)")
    parser.add_argument("--watch", type=float, default=20.0,
                        help="seconds the supervisor is left alone after the timed runs, inside its CPU window "
                             "(default 20)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each in-process observer read (default 7)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (for debugging)")
    options = parser.parse_args()

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="agentledger-transcripts-"))
    launched: list[dict[str, Any]] = []
    try:
        os.environ["HOME"] = str(root / "user-home")
        os.environ.pop("CLAUDE_CONFIG_DIR", None)
        (root / "user-home").mkdir()
        project = root / "project"  # only for the generated bodies' cwd fields
        (root / "standin.py").write_text(STANDIN)
        print(f"machine: {machine()}; {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
              f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; scratch {root}")
        small, large = root / "body-small.jsonl", root / f"body-{options.size_mb:g}mb.jsonl"
        write_body(small, BASELINE_BYTES, str(project))
        t = time.perf_counter()
        lines = write_body(large, int(options.size_mb * 2**20), str(project))
        print(f"transcript bodies: {small.stat().st_size / 1024:.0f} KB and {large.stat().st_size / 2**20:.0f} MB "
              f"({lines:,} lines, written in {time.perf_counter() - t:.1f}s); the stand-in appends 2 lines "
              f"(~2 KB) every {APPEND_EVERY * 1000:.0f} ms; the supervisor polls its observer every 1 s (fuse 3s)")
        phases: dict[str, list[dict[str, Any]]] = {"baseline": [], "large": []}
        for round_ in range(options.rounds):
            order = ("baseline", "large") if round_ % 2 == 0 else ("large", "baseline")
            for kind in order:
                phase = run_phase(f"{kind}-{round_ + 1}", root, small if kind == "baseline" else large,
                                  options.runs, options.watch, launched)
                phases[kind].append(phase)
                print_phase(phase)
                if phase is not phases[kind][0]:
                    phase["transcript"].unlink()  # only the first round's transcripts are read again below
        paired = run_paired(root, small, large, options.runs, launched)
        for phase in paired:
            print_phase(phase)
            phase["transcript"].unlink()

        print("observer in this process, on the first round's transcripts (their page cache warm):")
        from agentledger.adapters.claude_code import config_dir, project_dir_name

        warm_cwd = root / "warm-up"  # an untimed round on a copy first, so neither kind pays first-call costs
        warm_dir = config_dir() / "projects" / project_dir_name(str(warm_cwd))
        warm_dir.mkdir(parents=True)
        first_base = phases["baseline"][0]
        (warm_dir / first_base["transcript"].name).write_bytes(
            first_base["transcript"].read_bytes().replace(f'"cwd":"{first_base["cwd"]}"'.encode(),
                                                          f'"cwd":"{warm_cwd}"'.encode()))
        observer_costs(warm_dir / phases["baseline"][0]["transcript"].name, str(warm_cwd), 2, walk=False)
        costs = {}
        for kind in ("baseline", "large"):
            costs[kind] = c = observer_costs(phases[kind][0]["transcript"], phases[kind][0]["cwd"], options.reps,
                                             walk=kind == "large")
            print(f"  [{kind}] {c['size'] / 2**20:.1f} MB: first poll (find + first read) "
                  f"{ms(c['first_poll']):.2f} ms; read_facts from no cursor {ms(c['first_read_facts']):.2f} ms; "
                  f"poll, nothing new {ms(c['idle_poll']):.3f} ms; poll after 1 MB appended {ms(c['mb_poll']):.1f} ms "
                  f"({c['mb_read'] / 2**20:.2f} MB read); cursor {c['cursor_bytes']:,} bytes")
            if "walk" in c:
                print(f"  [{kind}] a cursor walked from byte 0 ({c['walk'][1]} reads of <= 8 MB, "
                      f"{c['walk'][0]:.1f}s), as a supervisor that watched the file grow would hold: "
                      f"{c['walk_ids']:,} message ids ({c['walk_cursor_bytes'] / 2**20:.1f} MB as JSON, "
                      f"~{c['walk_usage_bytes'] / 2**20:.1f} MB of Python objects); then "
                      f"poll, nothing new {ms(c['walk_idle']):.2f} ms; after 1 MB appended {ms(c['walk_mb']):.1f} ms")
                print(f"  [{kind}] for scale, one naive read + parse of the whole file: "
                      f"{c['naive'][0]:.2f}s ({c['naive'][1]:,} records)")

        def pooled(kind: str, key: str) -> list[float]:
            return [v for phase in phases[kind] for v in phase[key]]

        base_kb = phases["baseline"][0]["size"] / 1024
        print(f"summary: {options.size_mb:g} MB transcript against {base_kb:.0f} KB, same run; medians of "
              f"{options.runs * options.rounds} runs ({options.rounds} rounds of {options.runs}); per round in brackets")
        print(f"  {'':42} {'baseline':>10} {'large':>10} {'difference':>11}")
        for label, key, target in (("reconcile --json, whole command", "reconcile_wall", True),
                                   ("status ID --json, whole command", "status_wall", True),
                                   ("reconcile pass, as the command reports it", "reconcile_pass", False),
                                   ("reconcile pass, in-process (warm)", "in_process", False)):
            a, b = ms(pooled("baseline", key)), ms(pooled("large", key))
            rounds = " / ".join(f"{ms(pl[key]) - ms(pb[key]):+.1f}" for pb, pl in zip(phases["baseline"],
                                                                                         phases["large"]))
            verdict = f" target <= +{TARGET_MS:g} ms: {'met' if b - a <= TARGET_MS else 'MISSED'}" if target else ""
            print(f"  {label:42} {a:7.1f} ms {b:7.1f} ms {b - a:+8.1f} ms ({rounds}){verdict}")
        print(f"  both sessions at once, each in its own home, commands alternating between them ({options.runs} "
              f"pairs; difference of medians, and median of the paired differences):")
        for label, key, target in (("reconcile --json, whole command", "reconcile_wall", True),
                                   ("status ID --json, whole command", "status_wall", True),
                                   ("reconcile pass, as the command reports it", "reconcile_pass", False),
                                   ("reconcile pass, in-process (warm)", "in_process", False)):
            pb, pl = paired
            a, b = ms(pb[key]), ms(pl[key])
            pairs = ms([y - x for x, y in zip(pb[key], pl[key])])
            verdict = f" target <= +{TARGET_MS:g} ms: {'met' if b - a <= TARGET_MS else 'MISSED'}" if target else ""
            print(f"  {label:42} {a:7.1f} ms {b:7.1f} ms {b - a:+8.1f} ms (pairs {pairs:+.1f}){verdict}")
        for label, key in (("observer first poll (find + first read)", "first_poll"),
                           ("observer poll after 1 MB appended", "mb_poll")):
            a, b = ms(costs["baseline"][key]), ms(costs["large"][key])
            print(f"  {label:42} {a:7.2f} ms {b:7.2f} ms {b - a:+8.2f} ms")

        def each(kind: str, fmt) -> str:
            return " / ".join(fmt(p) for p in phases[kind])

        for label, fmt in (
            ("supervisor CPU over the window, % of a core", lambda p: f"{100 * p['cpu'] / p['window']:.2f}"),
            ("supervisor bytes read over the window, KB", lambda p: f"{p['rchar'] / 1024:.0f}"),
            ("transcript growth over the window, KB", lambda p: f"{p['growth'] / 1024:.0f}"),
            ("supervisor CPU since its start, ms", lambda p: f"{p['cpu_total'] * 1000:.0f}"),
            ("supervisor bytes read since its start, MB", lambda p: f"{p['rchar_total'] / 2**20:.1f}"),
            ("supervisor RSS max, MB", lambda p: f"{p['rss_max'] / 2**20:.1f}"),
        ):
            print(f"  {label:46} baseline {each('baseline', fmt):>15}   large {each('large', fmt):>15}"
                  f"   paired {fmt(paired[0])} / {fmt(paired[1])}")
        return 0
    finally:
        for entry in list(launched):
            try:
                al(["stop", entry["sid"], "--force"], entry["env"], check=False)
            except Exception as error:  # keep cleaning up
                print(f"stop {entry['sid'][:12]} failed: {error}", file=sys.stderr)
            wait_gone(entry)
        if options.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        print(f"sessions stopped ({len(launched)} by the clean-up), scratch directory "
              f"{'kept' if options.keep else 'removed'}; whole run {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
