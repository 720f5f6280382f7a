"""Hostile input (issue 8): every parser on arbitrary text, the CLI's argument space, a corrupted
store, a full disk, and terminal escapes in text from the log.

The rule: bad input is one clear line on stderr and a non-zero exit (2 for usage errors), never a
traceback, never lost data, never a write that makes things worse.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import io
import os
import sqlite3
import string
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID, uuid4

import orjson
import pytest
from conftest import wait_for
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from agentledger.application.errors import AmbiguousSessionId, SessionNotFound, UsageError
from agentledger.domain.durations import MAX_SECONDS, InvalidDuration, format_duration, parse_duration
from agentledger.domain.webhooks import InvalidSignature, attempt_body, sign, verify
from agentledger.entrypoints.cli import build_parser, main
from agentledger.entrypoints.render import escape, key_values, shorten, table
from agentledger.infrastructure.config import ConfigError
from agentledger.infrastructure.settings import KEYS, WEBHOOK_KEYS, load_settings
from agentledger.projections.as_of import Moment, parse_moment
from agentledger.projections.queries import resolve_session_id

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FIELDS = dict(argv=["true"], cwd="/", adapter="command", name=None, model=None, prompt=None, group=None,
              labels={}, host="h", boot_id="b", pid=1, pid_start_time=1.0, boot_time=0.0,
              supervisor_pid=None, log_path=None, launched_by="t")
#: What a terminal would obey: colours, clear screen, a title change with BEL, cursor up, CR, bidi override.
EVIL = "evil\x1b[31m\x1b[2J\x1b]0;pwned\x07\x1b[1A\rover\u202eright\x9b\x00"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``agentledger ARGV`` in this process: exit status, stdout, stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse: --help, --version, usage errors
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, *, expected_code: int | None = None) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    if expected_code is not None:
        assert code == expected_code, (code, err)
    assert code != 0 and err.count("\n") == 1 and err.endswith("\n"), (code, err)


# -- durations ------------------------------------------------------------------------------------------

units = st.sampled_from(["ms", "s", "m", "h", "d", "MS", "S", "M", "H", "D"])
numbers = st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,3})?\Z")


@QUICK
@given(st.one_of(st.text(max_size=30), st.text(alphabet="0123456789.msdh -+eE_", max_size=20),
                 st.text(alphabet=string.digits, min_size=300, max_size=400)))
@example("9" * 400)  # inf as a float
@example("٣s")  # a digit, but not one people type
@example("1" * 30 + "d")  # more than any date can hold
def test_a_duration_is_a_positive_finite_number_of_seconds_or_InvalidDuration(text):
    try:
        seconds = parse_duration(text)
    except InvalidDuration as error:
        assert "\n" not in str(error)
        return
    assert 0 < seconds <= MAX_SECONDS
    assert text.strip().isascii()
    datetime.now(timezone.utc) + timedelta(seconds=seconds)  # any accepted duration can be added to now


@QUICK
@given(st.lists(st.tuples(numbers, units), min_size=1, max_size=4))
def test_written_durations_parse_to_the_sum_of_their_parts(parts):
    text = "".join(n + u for n, u in parts)
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = sum(float(n) * scale[u.lower()] for n, u in parts)
    assume(0 < total <= MAX_SECONDS)
    assert parse_duration(text) == pytest.approx(total)


@QUICK
@given(st.floats(min_value=0.001, max_value=MAX_SECONDS))
def test_formatted_durations_parse_back_to_about_the_same(seconds):
    text = format_duration(seconds)
    assert text.isascii() and text.isalnum() or "." in text
    back = parse_duration(text)
    # format_duration keeps ms under 1s, tenths under 1m, seconds under 1h, then minutes
    tolerance = 0.0005 if seconds < 1 else 0.05 if seconds < 60 else 0.5 if seconds < 3600 else 60
    assert abs(back - seconds) <= tolerance + 1e-9 * seconds


@given(st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=100, deadline=None)
def test_format_duration_never_raises(seconds):
    assert isinstance(format_duration(seconds), str)


# -- session ids and prefixes -----------------------------------------------------------------------------


def _sessions_db(ids: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT, status TEXT, started_at REAL)")
    db.execute("CREATE TABLE archived_sessions (session_id TEXT PRIMARY KEY, name TEXT, archive_path TEXT,"
               " archived_at REAL, stopped_at REAL, events INTEGER, checksum TEXT)")  # none: never "archived"
    db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                   [(i, f"n{n}\x1b[2J", "running", float(n)) for n, i in enumerate(ids)])
    return db


hex_ids = st.lists(st.uuids().map(lambda u: u.hex), min_size=1, max_size=12, unique=True)


@QUICK
@given(hex_ids, st.data())
def test_a_prefix_resolves_to_the_one_id_it_starts_or_is_a_usage_error(ids, data):
    # ids that share prefixes, so that ambiguity is common
    ids = sorted({("abc" + i[3:]) if n % 2 else i for n, i in enumerate(ids)})
    db = _sessions_db(ids)
    target = data.draw(st.sampled_from(ids))
    cut = data.draw(st.integers(min_value=0, max_value=32))
    text = data.draw(st.one_of(
        st.just(target[:cut]),
        st.just(str(UUID(target))[:cut + cut // 8]).map(str.upper),  # with the UUID dashes, upper case
        st.just(f"  {target[:cut]} "),
        st.text(max_size=40),
        st.text(alphabet=string.hexdigits + "-", max_size=40),
    ))
    normalised = text.strip().lower().replace("-", "")
    matching = [i for i in ids if normalised and i.startswith(normalised)]
    try:
        found = resolve_session_id(db, text)
    except AmbiguousSessionId as error:
        assert len(matching) > 1 and "\n" not in str(error)
        return
    except SessionNotFound as error:
        assert not matching or not set(normalised) <= set(string.hexdigits) or len(normalised) > 32
        assert "\n" not in str(error) and isinstance(error, UsageError)
        return
    assert matching == [found]


def test_an_ambiguous_prefix_quotes_the_names_as_stored_and_the_cli_escapes_them():
    db = _sessions_db(["abc" + "0" * 29, "abc" + "1" * 29])
    with pytest.raises(AmbiguousSessionId) as raised:
        resolve_session_id(db, "abc")
    assert "\x1b" in str(raised.value)  # main() writes it through escape(): see the test of names below


# -- config files -------------------------------------------------------------------------------------------

toml_scalars = st.one_of(
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"5s"', '"-5s"', '"0"', '"1e400"', '"9999999999d"', '"off"', '"127.0.0.1:9200"', '"h:99999"',
                     '"http://127.0.0.1:1/x"', '"http://[::1"', '"ftp://x"', '"sqlite:///x.db"', '"mysql://x"',
                     '"postgresql://u:pw@h/db"', '"now"', '"beginning"', '"session.started"', '["session.stopped"]',
                     '["x"]', "[1, 2]", "[]", "{}", "{a = 1}", "inf", "-inf", "nan", "1e400", "true", "0", "-1",
                     "99999999999999999999", "1979-05-27T07:32:00Z", "'literal'", '"""multi\nline"""']),
    st.integers().map(str),
    st.floats(allow_nan=False).map(repr).filter(lambda r: r not in ("inf", "-inf")),
)
toml_keys = st.sampled_from([*KEYS, *WEBHOOK_KEYS, "colour", "webhooks", '"quoted key"', "a.b"])
toml_lines = st.one_of(
    st.tuples(toml_keys, toml_scalars).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(alphabet=string.ascii_letters + "_-.", min_size=1, max_size=12).map(lambda n: f"[webhooks.{n}]"),
    st.sampled_from(["[webhooks]", "[webhooks.a.b]", "[[webhooks]]", "[other]", "# comment", "", "= 1", "[",
                     "webhooks = 3", 'url = "http://127.0.0.1:9/h"']),
    st.text(max_size=30),
)


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    path = tmp_path / "cfg"
    path.mkdir(mode=0o700)
    return path


@FEW
@given(lines=st.lists(toml_lines, max_size=8), raw=st.binary(max_size=40), use_raw=st.booleans())
def test_any_config_file_loads_or_is_one_ConfigError(config_home, lines, raw, use_raw):
    path = config_home / "config.toml"
    path.write_bytes(raw if use_raw else "\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        loaded = load_settings({"AGENTLEDGER_HOME": str(config_home)})
    except ConfigError as error:
        assert "\n" not in str(error).rstrip("\n") or "not valid TOML" in str(error), str(error)
        return
    for value in (loaded.reconcile_interval, loaded.fuse_ttl, loaded.host_heartbeat, loaded.on_stop_timeout,
                  *(getattr(w, k) for w in loaded.webhooks for k in ("timeout", "give_up_after", "retry_initial",
                                                                       "retry_max"))):
        assert 0 < value <= MAX_SECONDS  # never nan, inf, or more than a date can hold


@FEW
@given(st.dictionaries(st.sampled_from([k.env for k in (*KEYS.values(), *WEBHOOK_KEYS.values()) if k.env]),
                       st.one_of(st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"),
                                         max_size=30),
                                 st.sampled_from(["inf", "nan", "1e400", "-1s", "0", "http://[::1", "h:1"])),
                       max_size=4),
       st.sampled_from(["", 'db = "http://[x"\n', 'fuse_ttl = nan\n', '[webhooks.a]\nurl = "http://h/"\n']))
def test_any_environment_loads_or_is_one_ConfigError(config_home, env, text):
    (config_home / "config.toml").write_text(text)
    try:
        load_settings({"AGENTLEDGER_HOME": str(config_home), **env})
    except ConfigError as error:
        assert "\n" not in str(error)


@pytest.mark.parametrize(("text", "words"), [
    ("fuse_ttl = nan\n", "line 1: fuse_ttl: nan: must be a number of seconds"),
    ("fuse_ttl = inf\n", "line 1: fuse_ttl: inf: must be a number of seconds"),
    ("reconcile_interval = 1e300\n", "line 1: reconcile_interval: 1e+300: must be a number of seconds"),
    ('fuse_ttl = "99999999999999999999d"\n', "must be at most 36500d"),
    ('metrics_addr = "h:²"\n', "expected HOST:PORT"),
    ('[webhooks.a]\nurl = "http://h/"\nretry_max = nan\n', "webhooks.a.retry_max: nan"),
])
def test_values_no_clock_can_use_are_refused(config_home, text, words):
    (config_home / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings({"AGENTLEDGER_HOME": str(config_home)})
    assert words in str(refused.value)


def test_a_file_db_url_urlsplit_refuses_is_no_crash_when_the_environment_wins(config_home):
    (config_home / "config.toml").write_text('db = "http://[x"\n')
    (config_home / "config.toml").chmod(0o644)
    loaded = load_settings({"AGENTLEDGER_HOME": str(config_home), "AGENTLEDGER_DB": "sqlite:////tmp/x.db"})
    assert loaded.db == "sqlite:////tmp/x.db"


# -- --as-of moments ----------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@QUICK
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\A[@+-]?[0-9]{1,40}[a-z]{0,2}\Z"),
                 st.text(alphabet="0123456789-:TZz.+ @", max_size=32)))
@example("-999999999999d")
@example("0001-01-01T00:00:00+01:00")
@example("9999-12-31T23:59:59-01:00")
@example("@" + "9" * 30)
def test_a_moment_parses_or_is_a_usage_error(text):
    try:
        moment = parse_moment(text, NOW)
    except UsageError as error:
        assert "\n" not in str(error) and error.exit_code == 2
        return
    assert isinstance(moment, Moment)
    if moment.position is not None:
        assert 0 <= moment.position < 2**63
    else:
        assert moment.at.tzinfo is not None and moment.at.utcoffset() == timedelta(0)


@QUICK
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.timezones()))
def test_an_iso_time_is_that_moment_in_utc(at):
    assume(at.utcoffset() is not None)
    assert parse_moment(at.isoformat(), NOW).at == at.astimezone(timezone.utc)


@QUICK
@given(st.floats(min_value=0.001, max_value=86400 * 3650))
def test_a_relative_moment_is_that_long_before_now(seconds):
    text = "-" + format_duration(seconds)
    assert parse_moment(text, NOW).at == NOW - timedelta(seconds=parse_duration(text[1:]))


# -- webhook signatures ---------------------------------------------------------------------------------------

secrets = st.one_of(st.text(max_size=30), st.text(alphabet=st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
                                                  min_size=1, max_size=4))


@QUICK
@given(secret=secrets, body=st.binary(max_size=200), signature=st.one_of(
    st.text(max_size=80), st.text(max_size=70).map(lambda t: "sha256=" + t),
    st.from_regex(r"\Asha256=[0-9a-f]{64}\Z")), timestamp=st.one_of(st.none(), st.integers()))
@example(secret="s", body=b"{}", signature="sha256=é", timestamp=None)
@example(secret="s\udcff", body=b"{}", signature="sha256=00", timestamp=None)
def test_verify_accepts_or_raises_InvalidSignature_only(secret, body, signature, timestamp):
    try:
        verify(secret, body, signature, timestamp=timestamp, now=1.8e9, tolerance=300)
    except InvalidSignature as error:
        assert "\n" not in str(error)
    else:
        assert signature.strip() == sign(secret, body)


@QUICK
@given(secret=secrets, body=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=199))
def test_a_signed_body_verifies_and_any_changed_byte_does_not(secret, body, flip):
    signature = sign(secret, body)
    verify(secret, body, signature)
    if body:
        changed = bytearray(body)
        changed[flip % len(body)] ^= 0x01
        with pytest.raises(InvalidSignature):
            verify(secret, bytes(changed), signature)


@QUICK
@given(sent_at=st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**310)),
       nested=st.integers(min_value=0, max_value=3))
def test_signed_bodies_with_any_timestamp_or_nesting_verify_or_are_refused(sent_at, nested):
    body = ("[" * nested * 50000).encode() if nested == 3 else attempt_body('{"a": 1}', sent_at)
    try:
        verify("k", body, sign("k", body), timestamp=sent_at, now=1.8e9, tolerance=300)
    except InvalidSignature as error:
        assert "\n" not in str(error)
    else:
        assert abs(sent_at - 1.8e9) <= 300


@FEW
@given(body=st.binary(max_size=100), argv=st.lists(st.sampled_from(
    ["--secret", "--signature", "--timestamp", "--tolerance", "s", "sha256=00", "sha256=é", "-5s", "1e400",
     "99999999999999999999999", "5m", "", "--json", "\x1b[2J"]), max_size=8))
def test_webhooks_verify_on_any_stdin_and_arguments_is_valid_or_one_line(capsys, monkeypatch, home, body, argv):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body)))
    code, out, err = run(capsys, "webhooks", "verify", *argv)
    if code == 0:
        assert out == "valid\n" and err == ""
    else:
        assert_one_clear_line(code, err)
        assert code in (1, 2) and "\x1b" not in err


# -- the CLI's argument space ---------------------------------------------------------------------------------

#: Commands that would start processes or block (launch, resume, adopt, daemon run/start, events/logs
#: --follow, discover's process scan) get only their parse-error paths; db copy could reach a server.
#: Commands that start processes, or serve until interrupted (``console``: its bad input is test_console.py's).
_UNSAFE_COMMANDS = {"launch", "resume", "adopt", "daemon", "discover", "console"}
_UNSAFE_ACTIONS = {("db", "copy")}
_UNSAFE_OPTIONS = {"-f", "--follow", "--handshake-fd"}


def _commands() -> dict[tuple[str, ...], list[str]]:
    """Every (sub-)command path the parser knows, with its option strings."""
    found: dict[tuple[str, ...], list[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[(*path, name)] = sorted({o for a in sub._actions for o in a.option_strings} - _UNSAFE_OPTIONS)
                    walk(sub, (*path, name))

    walk(build_parser(), ())
    return found


COMMANDS = _commands()
SAFE = sorted(p for p in COMMANDS if p[0] not in _UNSAFE_COMMANDS and p not in _UNSAFE_ACTIONS)
ALL_OPTIONS = sorted({o for options in COMMANDS.values() for o in options})
random_tokens = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["-15m", "@3", "@-1", "1s", "0", "-1", "abc", "ffff", "--", "-", "=", "--as-of=", "--json",
                     "running", "stopped", "\x1b[2J", "x=y", "1e400", "9" * 30, "50%", "2.5", "3", "1h30m",
                     "2026-11-25T21:30:00Z", "9999-12-31T23:59:59-01:00", "sha256=00", "sha256=é", "h", "out.html",
                     "-999999999999d", "@" + "9" * 30, "sqlite:///x.db", "0" * 32, "0" * 33]),
    st.text(alphabet=st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), min_size=1, max_size=2),
)


def _safe(argv: list[str]) -> bool:
    """No token argparse could read as --follow or --handshake-fd (or an abbreviation of them), and no
    command that starts processes, unless only its --help is asked for."""
    if any(t in _UNSAFE_COMMANDS for t in argv) and not ({"-h", "--help"} & set(argv)):
        return False
    return not any(t in _UNSAFE_OPTIONS or any(t.startswith(o[:4]) and o.startswith(t.split("=")[0])
                                               for o in ("--follow", "--handshake-fd")) for t in argv)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_argv_exits_0_1_or_2_with_at_most_one_line_and_never_a_traceback(capsys, monkeypatch, home,
                                                                                tmp_path, data):
    monkeypatch.chdir(tmp_path)  # timeline --out, whatever the path
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    path = data.draw(st.sampled_from(SAFE))
    option = st.sampled_from(COMMANDS[path] or ["--json"])
    tokens = st.one_of(option.map(lambda o: [o]), st.tuples(option, random_tokens).map(list),
                       st.tuples(option, random_tokens).map(lambda ov: [f"{ov[0]}={ov[1]}"]),
                       st.sampled_from(ALL_OPTIONS).map(lambda o: [o]), random_tokens.map(lambda t: [t]))
    argv = [*path, *(t for group in data.draw(st.lists(tokens, max_size=5)) for t in group)]
    if data.draw(st.booleans()):
        argv = data.draw(st.permutations(argv))
    assume(_safe(argv))
    code, out, err = run(capsys, *argv)
    event(f"exit {code}")
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code != 0:
        assert err.count("\n") == 1, (argv, err)
    assert "\x1b" not in err, (argv, err)


@FEW
@given(command=st.sampled_from([["launch", "--fuse-ttl"], ["launch", "--timeout"], ["resume", "x", "--fuse-ttl"],
                                ["adopt", "1", "--fuse-ttl"], ["daemon", "run", "--interval"],
                                ["daemon", "start", "--mass-stop-share"], ["launch", "--heartbeat-every"]]),
       bad=st.sampled_from(["", "0", "-5s", "soon", "1e400", "9" * 400, "\x1b[2J", "1h 30m", "nan", "200%"]))
def test_commands_that_start_processes_refuse_bad_values_before_they_start_anything(capsys, home, command, bad):
    argv = [*command[:-1], f"{command[-1]}={bad}", "--", "sh", "-c", "exit 99"]  # "=": a value may start with "-"
    code, out, err = run(capsys, *argv)
    assert_one_clear_line(code, err, expected_code=2)
    assert "\x1b" not in err and out == "", argv


@pytest.mark.parametrize(("argv", "words"), [
    (["-V"], "agentledger: error: unrecognized arguments: -V"),  # not "COMMAND is required"
    (["db", "archive", "verify", "a", "b"],
     "agentledger db archive verify: error: unrecognized arguments: b (see 'agentledger db archive verify --help')"),
    (["adopt", "99999999999"], "invalid PID '99999999999' (a whole number from 1 to 4194304)"),
    (["timeline", "x", "--out", ""], "argument -o/--out: a file name is needed"),
    (["launch", "--wait-timeout", "1s", "--", "true"], "--wait-timeout is for --wait"),
])
def test_an_argument_no_parser_takes_is_refused_by_its_command(capsys, home, argv, words):
    code, out, err = run(capsys, *argv)
    assert_one_clear_line(code, err, expected_code=2)
    assert words in err, err


def test_events_takes_json_as_every_query_does(capsys, home):
    _ledger_with_sessions(1)
    code, out, err = run(capsys, "events", "--json")
    assert code == 0 and [orjson.loads(line)["type"] for line in out.splitlines()] == ["Launched", "FuseSet"]


@pytest.mark.sqlite_only
def test_a_store_that_is_a_directory_is_named_as_one(cli, home):
    (home / "ledger.db").mkdir(parents=True)
    for command in (("list",), ("launch", "--", "true")):
        result = cli(*command, check=False)
        assert_one_clear_line(result.returncode, result.stderr, expected_code=1)
        assert f"the store {home / 'ledger.db'} is a directory" in result.stderr, command


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_name_no_command_could_use_is_refused(capsys, home, name):
    for command in (["launch", "--name", name, "--", "true"], ["launch", "--group", name, "--", "true"]):
        code, out, err = run(capsys, *command)
        assert_one_clear_line(code, err, expected_code=2)
        assert "--name" in err or "--group" in err


def test_argv_that_is_not_utf8_is_a_usage_error_not_an_unstorable_event(capsys, home):
    code, out, err = run(capsys, "list", "--group", "b\udcff")
    assert_one_clear_line(code, err, expected_code=2)
    assert "not valid UTF-8" in err and "\\udcff" in err


# -- a corrupted store -------------------------------------------------------------------------------------


def _fingerprint(home: Path) -> dict[str, str]:
    """Every file of the store, by content: a refused write must leave them all as they were."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(home.glob("ledger.db*"))
            if p.suffix not in (".lock", ".db-shm") and p.stat().st_size}  # an empty WAL holds nothing


def _ledger_with_sessions(count: int = 3, **fields) -> list[str]:
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    store = open_store(store_location())
    ids = []
    for _ in range(count):
        sid = uuid4()
        store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t", **{**FIELDS, **fields})
        ids.append(sid.hex)
    store.close()
    return ids


def _read_and_write_commands(sid: str) -> list[tuple[str, ...]]:
    return [("list", "--all"), ("status", sid), ("history", sid), ("why", sid), ("events",), ("verify",),
            ("heartbeat", sid), ("fuse", "cancel", sid), ("stop", sid, "--reason", "x")]


@pytest.mark.sqlite_only
def test_a_truncated_store_is_one_line_for_every_command_and_is_left_as_found(cli, home):
    sid = _ledger_with_sessions()[0]
    db = home / "ledger.db"
    assert not (home / "ledger.db-wal").exists()  # all in the main file
    with open(db, "r+b") as handle:
        handle.truncate(db.stat().st_size // 2)
    before = _fingerprint(home)
    for command in [*_read_and_write_commands(sid), ("db", "upgrade"), ("db", "rebuild"), ("replay",)]:
        result = cli(*command, check=False)
        assert_one_clear_line(result.returncode, result.stderr, expected_code=1)
        assert "not a readable SQLite database" in result.stderr and str(db) in result.stderr, command
        assert _fingerprint(home) == before, command


def _corrupt_event(home: Path, sid: str, *, topic: str | None = None, state: bytes | None = None) -> None:
    db = sqlite3.connect(home / "ledger.db")
    if topic is not None:  # a new event of a type this version does not know
        db.execute("INSERT INTO stored_events (originator_id, originator_version, topic, state) VALUES (?, 3, ?, ?)",
                   (sid, topic, b'{"timestamp": {"_type_": "datetime_iso", "_data_": "2026-11-26T00:00:00+00:00"}}'))
    else:
        db.execute("UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = 2", (state, sid))
    db.commit()
    db.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("damage", [
    dict(state=b"\xff\xfe\x00\x1b[2Jgarbage\n\x00"),  # bytes that are not JSON, with a terminal escape
    dict(state=b'{"ttl": "thirty", "expires_at": 7}'),  # JSON, but not a FuseSet
    dict(topic="agentledger.domain.session:Session.FromTheFuture"),  # a newer version's event type
    dict(topic="agentledger.plugins.\x1b[2Jnot_installed:Gone"),  # a module that does not import
])
def test_an_unreadable_event_is_reported_and_a_write_to_its_session_is_refused_and_writes_nothing(cli, home, damage):
    bad, good, _ = _ledger_with_sessions()
    _corrupt_event(home, bad, **damage)

    listed = cli("list", "--all")  # catch-up skips it, with a warning
    assert "warning: skipped unreadable event" in listed.stderr and bad[:12] in listed.stdout
    assert listed.stderr.count("\n") == 1 and "\x1b" not in listed.stderr
    for command in (("status", bad), ("history", bad), ("events",), ("status", good)):
        result = cli(*command)
        assert "Traceback" not in result.stderr and "\x1b" not in result.stdout + result.stderr, command
    verified = cli("verify", check=False)
    assert verified.returncode == 1 and "unreadable-event" in verified.stdout and "\x1b" not in verified.stdout

    before = _fingerprint(home)
    for command in (("why", bad), ("heartbeat", bad), ("fuse", "cancel", bad), ("fuse", "set", bad, "--ttl", "1m")):
        result = cli(*command, check=False)
        assert_one_clear_line(result.returncode, result.stderr, expected_code=1)
        assert "\x1b" not in result.stderr and "store error" in result.stderr, (command, result.stderr)
        assert _fingerprint(home) == before, command
    assert "heartbeat recorded" in cli("heartbeat", good).stdout  # the rest of the ledger goes on


@pytest.mark.sqlite_only
def test_history_shows_an_unreadable_event_in_the_middle_and_the_events_after_it(cli, home):
    from agentledger.application.clock import utc_now
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    bad = _ledger_with_sessions(1)[0]
    store = open_store(store_location())
    for _ in range(2):
        store.ledger.change(UUID(bad), lambda s: s.heartbeat(source="test", now=utc_now()))
    store.close()
    _corrupt_event(home, bad, state=b"\xff not JSON")  # version 2 of 4
    rows = cli.json_lines("history", bad)
    assert [(r["version"], r["type"]) for r in rows if r["version"]] == [
        (1, "Launched"), (2, "FuseSet"), (3, "Heartbeat"), (4, "Heartbeat")]
    assert rows[1]["summary"].startswith("UNREADABLE")
    assert "UNREADABLE" in cli("history", bad, "--tail", "3").stdout


@pytest.mark.sqlite_only
def test_a_read_model_schema_newer_than_the_code_is_refused_and_left_alone(cli, home):
    sid = _ledger_with_sessions()[0]
    db = sqlite3.connect(home / "ledger.db")
    db.execute("UPDATE alembic_version SET version_num = '0099'")
    db.commit()
    db.close()
    before = _fingerprint(home)
    for command in [*_read_and_write_commands(sid), ("db", "upgrade"), ("db", "info")]:
        result = cli(*command, check=False)
        assert_one_clear_line(result.returncode, result.stderr, expected_code=1)
        assert "schema revision '0099'" in result.stderr and "newer agentledger" in result.stderr, command
        assert _fingerprint(home) == before, command


def test_a_newer_schema_is_refused_on_either_backend(store, cli):
    from agentledger.application.errors import StoreError
    from agentledger.infrastructure.store import open_store

    store.db.execute("UPDATE alembic_version SET version_num = '0099'")
    if hasattr(store.db, "commit"):
        store.db.commit()
    with pytest.raises(StoreError, match="schema revision '0099'"):
        open_store(store.location)
    result = cli("list", check=False)
    assert_one_clear_line(result.returncode, result.stderr, expected_code=1)


# -- a full disk ----------------------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_full_disk_while_appending_is_one_line_and_the_log_stays_whole(capsys, home, monkeypatch):
    """SQLite's own SQLITE_FULL: the store may not grow by a page (max_page_count), as on a full disk."""
    from agentledger.infrastructure import sqlite_recorder
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    _ledger_with_sessions(1)
    store = open_store(store_location())
    inserts = []
    row = sqlite_recorder._row

    def failing(event):  # each event's row, made just before its INSERT, inside the save's transaction
        inserts.append(event)
        if len(inserts) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return row(event)

    monkeypatch.setattr(sqlite_recorder, "_row", failing)
    with pytest.raises(OSError) as raised:
        store.ledger.launch(session_id=uuid4(), fuse_ttl=30, fuse_set_by="t", **FIELDS)
    assert raised.value.errno == errno.ENOSPC and len(inserts) == 2
    monkeypatch.setattr(sqlite_recorder, "_row", row)
    store.close()
    code, out, err = run(capsys, "verify")
    assert code == 0 and "ok: every check passed" in out and out.startswith("2 events, 1 session"), out + err

    from agentledger.entrypoints.cli import _describe_error

    message, status = _describe_error(OSError(errno.ENOSPC, "No space left on device"))
    assert status == 1 and "No space left on device" in message and "\n" not in message


# -- terminal escapes in text from the log -------------------------------------------------------------------


@QUICK
@given(st.text(max_size=60))
def test_escape_leaves_no_control_character_and_changes_nothing_else(text):
    shown = escape(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
                   or c in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069" for c in shown)
    assert escape(shown) == shown  # once is enough: nothing is escaped twice
    if text.isprintable() and "\\" not in text:
        assert shown == text
    shown.encode("utf-8")  # a terminal can be sent it


def test_tables_key_values_and_shorten_escape_every_cell():
    out = io.StringIO()
    table(["NAME", "NOTE"], [(EVIL, "a\nb"), ("ok", None)], out=out)
    key_values([("Name", EVIL), ("Exit", 3)], out=out)
    text = out.getvalue() + shorten(EVIL * 3, 20)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[31m" in text and "a\\nb" in text and "\\u202e" in text and "\\x9b" in text
    assert len(text.splitlines()) == 3 + 2 + 1  # no cell broke its line


def _escape_free(text: str) -> bool:
    return not any(c in text for c in ("\x1b", "\r", "\x07", "\x00", "\u202e", "\x9b"))


@pytest.mark.sqlite_only
def test_names_prompts_notes_and_argv_are_shown_escaped_by_list_status_why_and_history(cli, home):
    from agentledger.application.clock import utc_now
    from agentledger.infrastructure.settings import store_location
    from agentledger.infrastructure.store import open_store

    store = open_store(store_location())
    sid = uuid4()
    store.ledger.launch(session_id=sid, fuse_ttl=30, fuse_set_by="t",
                        **{**FIELDS, "name": EVIL, "prompt": EVIL, "argv": ["sh", "-c", f"echo {EVIL}"],
                           "group": EVIL, "labels": {"k": EVIL}, "cwd": f"/tmp/{EVIL}"})
    store.ledger.change(sid, lambda s: s.heartbeat(source=EVIL, now=utc_now()))
    store.ledger.change(sid, lambda s: s.request_stop(requested_by="me", signal="SIGTERM", grace=1.0, note=EVIL))
    store.ledger.change(sid, lambda s: s.record_stop(
        reason="user", exit_code=None, signal="SIGTERM", note=EVIL, evidence={"observed": EVIL},
        decided_by={"component": "cli", "host": "h", "pid": 1, "user": "me"}))
    store.close()

    for command in (("list", "--all"), ("list", "--all", "--format", "{name} {command}"), ("status", sid.hex),
                    ("why", sid.hex), ("history", sid.hex)):
        result = cli(*command)
        assert _escape_free(result.stdout + result.stderr), (command, result.stdout)
        assert "evil\\x1b[31m" in result.stdout, (command, result.stdout)
    assert len(cli("list", "--all", "--format", "{name}").stdout.splitlines()) == 1  # one line per session
    assert "\\u202eright" in cli("status", sid.hex).stdout
    as_json = cli.json("status", sid.hex)  # JSON escapes them itself, and keeps the text as recorded
    assert as_json["name"] == EVIL and as_json["stop_note"] == EVIL


@pytest.mark.sqlite_only
def test_captured_output_is_shown_escaped_by_logs_unless_raw_is_asked_for(cli):
    """An agent's output with colour codes, a cursor move and a carriage return: `logs` keeps the lines
    and tabs but shows the rest escaped, in one read and when followed; `--raw` gives the bytes."""
    script = r"printf 'plain\tcol\n\033[31mred\033[0m\n\033[2J\033]0;title\007over\rwrite\n\342\200\256rtl\n'"
    sid = cli.launch("sh", "-c", script)
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=30)
    expected = ["plain\tcol", "\\x1b[31mred\\x1b[0m", "\\x1b[2J\\x1b]0;title\\x07over\\rwrite", "\\u202ertl"]
    for options in ((), ("-n", "4"), ("--follow",), ("--output",)):
        shown = cli("logs", sid, *options).stdout
        assert _escape_free(shown) and shown.splitlines() == expected, (options, shown)
    raw = subprocess.run([sys.executable, "-m", "agentledger", "logs", sid, "--raw"], capture_output=True,
                         check=True).stdout
    assert b"\x1b[31mred" in raw and b"over\rwrite" in raw


def test_the_output_escaper_decodes_a_character_split_between_two_chunks():
    from agentledger.entrypoints.render import OutputEscaper

    data = "é\u202e\x1b[1m\n".encode()
    escaper = OutputEscaper()
    shown = b"".join(escaper.feed(data[i:i + 1]) for i in range(len(data))) + escaper.feed(b"", final=True)
    assert shown.decode() == "é\\u202e\\x1b[1m\n"


# -- what other users of the host can see -------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_the_supervisors_command_line_names_the_session_but_not_its_prompt_or_hook(cli):
    """Every user can read a process's argv (`ps`): the supervisor gets its spec on stdin instead."""
    import psutil

    sid = cli.launch("sleep", "30", options=("--prompt", "the secret plan", "--on-stop", "echo hush-hush"))
    status = cli.json("status", sid)
    assert status["prompt"] == "the secret plan"
    visible = " ".join(psutil.Process(status["supervisor_pid"]).cmdline())
    assert sid in visible and "secret plan" not in visible and "hush-hush" not in visible
    cli("stop", sid, "--force")


@pytest.mark.sqlite_only
def test_a_home_or_store_others_can_read_is_warned_about_at_the_start_of_every_command(cli, home):
    cli("list")  # creates them, private
    assert (home.stat().st_mode & 0o777, (home / "ledger.db").stat().st_mode & 0o777) == (0o700, 0o600)
    assert "warning" not in cli("list").stderr
    home.chmod(0o755)
    (home / "ledger.db").chmod(0o644)
    result = cli("list")
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"agentledger: warning: {home} is open to other users (mode 755, should be 700); run: chmod 700 {home}",
        f"agentledger: warning: {home / 'ledger.db'} is open to other users (mode 644, should be 600); "
        f"run: chmod 600 {home / 'ledger.db'}"]
    home.chmod(0o700)
    (home / "ledger.db").chmod(0o600)
    assert cli("list").stderr == ""


def test_secrets_are_never_in_output_events_or_logs(cli, home, backend, monkeypatch):
    """A database password and a webhook secret, used by launch, the daemon and every reading command:
    neither appears in any output, any stored event, or any file agentledger writes."""
    if backend != "postgres":
        pytest.skip("the database password is a PostgreSQL matter")
    password, secret = "pw-Zq81x", "whsec-Vb77k"
    monkeypatch.setenv("AGENTLEDGER_DB", os.environ["AGENTLEDGER_DB"].replace(
        "postgresql://postgres@", f"postgresql://postgres:{password}@"))  # trust auth: any password works
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_SECRET", secret)
    sid = cli.launch("sh", "-c", "exit 3", options=("--name", "s"))
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=30)
    cli("reconcile")
    outputs = [cli(*command, check=False) for command in (
        ("list", "--all"), ("list", "--all", "--json"), ("status", sid), ("status", sid, "--json"), ("why", sid),
        ("why", sid, "--json"), ("history", sid, "--json"), ("events",), ("config", "show"),
        ("config", "show", "--json"), ("db", "info"), ("db", "info", "--json"), ("webhooks", "--json"),
        ("verify",), ("logs", sid, "--output"))]
    seen = "".join(result.stdout + result.stderr for result in outputs)
    files = "".join(path.read_text(errors="replace") for path in home.rglob("*") if path.is_file())
    for text in (seen, files):
        assert password not in text and secret not in text
    assert "***" in cli("db", "info").stdout  # shown, masked


@pytest.mark.sqlite_only
@pytest.mark.parametrize("first", [("launch", "--", "true"), ("launch", "claude-code", "-p", "hi")])
def test_a_launch_as_the_first_command_makes_a_private_home(cli, home, first):
    """The first command may make a folder in the home (logs, prompts) before the store: the home is 0700 still."""
    result = cli(*first, check=False)  # claude-code may not be installed: a spawn failure, recorded
    assert "warning" not in result.stderr
    modes = {path.name: path.stat().st_mode & 0o777 for path in (home, *home.iterdir()) if path.is_dir()}
    assert modes and set(modes.values()) == {0o700}, modes
