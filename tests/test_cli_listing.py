"""``list``'s controls for people and scripts: ``-q``, ``--filter``, ``--last``, ``--format``, ``--count``.

Real sessions on the real store; the filters are all-must-hold, newest first;
a filter or field this version does not know is one line and exit 2.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import wait_for


@pytest.fixture
def three(cli) -> Iterator[list[str]]:
    """Three sessions, oldest first: a (team=a, running), b (team=b, running), c (team=a, exited 4)."""
    ids = [cli.launch("sleep", "60", options=("--name", "a", "--label", "team=a")),
           cli.launch("sleep", "60", options=("--name", "b", "--label", "team=b", "--group", "g"))]
    ids.append(cli.launch("sh", "-c", "exit 4", options=("--name", "c", "--label", "team=a")))
    wait_for(lambda: cli.json("status", ids[2])["status"] == "stopped")
    yield ids
    for sid in ids[:2]:
        cli("stop", sid)


def test_quiet_lists_ids_newest_first(cli, three: list[str]) -> None:
    assert cli("list", "-q").stdout.split() == [three[1], three[0]]
    assert cli("list", "-q", "--all").stdout.split() == three[::-1]


def test_filters_must_all_hold(cli, three: list[str]) -> None:
    assert cli("list", "-q", "--all", "--filter", "label=team=a").stdout.split() == [three[2], three[0]]
    assert cli("list", "-q", "--all", "--filter", "label=team", "--filter", "group=g").stdout.split() == [three[1]]
    assert cli("list", "-q", "--all", "--filter", "status=stopped").stdout.split() == [three[2]]
    assert cli("list", "-q", "--all", "--filter", "name=nobody").stdout == ""


def test_a_status_filter_is_the_status_option(cli, three: list[str]) -> None:
    """``--filter status=S`` lists what ``--status S`` lists, stopped sessions too, without ``--all``."""
    for status in ("stopped", "running"):
        assert cli("list", "-q", "--filter", f"status={status}").stdout == cli("list", "-q", "--status",
                                                                                 status).stdout != ""
    assert cli("list", "-q", "--filter", "status=stopped", "--filter", "label=team=a").stdout.split() == [three[2]]
    assert cli("list", "-q", "--status", "running", "--filter", "status=stopped").stdout == ""  # both must hold


def test_column_filters_are_asked_of_the_query_and_still_all_hold(cli, three: list[str]) -> None:
    """host, group and adapter filters given once become the query's conditions (``listing.lifted``); given twice
    or beside ``--group``, both must hold as before."""
    from agentledger.projections.listing import lifted

    host = cli.json("status", three[0])["host"]
    assert cli("list", "-q", "--all", "--filter", f"host={host}").stdout.split() == three[::-1]
    assert cli("list", "-q", "--all", "--filter", "host=elsewhere").stdout == ""
    assert cli("list", "-q", "--filter", "group=g", "--filter", "adapter=command").stdout.split() == [three[1]]
    assert cli("list", "-q", "--all", "--group", "g", "--filter", "group=h").stdout == ""
    assert cli("list", "-q", "--all", "--filter", "group=g", "--filter", "group=h").stdout == ""
    assert cli("list", "--count", "--all", "--filter", f"host={host}").stdout.strip() == "3"
    assert [s["id"] for s in cli.json_lines("list", "--all", "--json", "--filter", "group=g")] == [three[1]]
    left, where = lifted([("host", "a"), ("group", "g"), ("group", "h"), ("label", "x")], {"adapter": None})
    assert left == [("group", "g"), ("group", "h"), ("label", "x")] and where == {"adapter": None, "host": "a"}


def test_last_format_and_count(cli, three: list[str]) -> None:
    assert cli("list", "--all", "--last", "2", "--format", "{name}:{status}:{exit_code}").stdout.splitlines() == [
        "c:stopped:4", "b:running:"]
    assert cli("list", "--all", "--count").stdout.strip() == "3"
    assert cli("list", "--count", "--filter", "label=team=a").stdout.strip() == "1"


def test_list_all_says_when_each_stopped_and_how_long_it_ran(cli, three: list[str]) -> None:
    import re

    header, *rows = cli("list", "--all").stdout.splitlines()
    assert header.split()[:8] == ["ID", "NAME", "ADAPTER", "STATUS", "PID", "STARTED", "STOPPED", "RAN"]
    [stopped] = [row for row in rows if row.startswith(three[2][:12])]
    assert re.search(r"\bstopped +\d+ +\S+ ago +\S+ ago +\d[\dsmhd.]*(ms|s|m|h|d)\b", stopped), stopped
    [running] = [row for row in rows if row.startswith(three[0][:12])]
    assert re.search(r"\brunning +\d+ +\S+ ago +- +\d", running), running  # not stopped: ran so far
    assert "STOPPED" not in cli("list").stdout.splitlines()[0]  # without --all nothing has stopped
    ran = cli("list", "--all", "--format", "{name} {ran_for}").stdout.splitlines()
    assert [line.split()[0] for line in ran] == ["c", "b", "a"] and all(len(line.split()) == 2 for line in ran)


def test_the_table_shows_the_newest_hundred_and_counts_the_rest(cli, store) -> None:
    """A fleet's table is its newest ``TABLE_ROWS`` rows, the rest counted in one line on stderr; ``-n N`` and
    ``-n all`` choose, and the forms for scripts are never cut."""
    from uuid import uuid4

    from agentledger.domain.session import Session
    from agentledger.entrypoints.cli import TABLE_ROWS
    from agentledger.projections.catchup import catch_up

    count = TABLE_ROWS + 5
    store.ledger.save(*(Session.launch(
        session_id=uuid4(), argv=["true"], cwd="/", adapter="command", name=f"s{i}", model=None, prompt=None,
        group=None, labels={"odd": str(i % 2)}, host="h", boot_id="b", pid=1, pid_start_time=1.0, boot_time=0.0,
        supervisor_pid=None, log_path=None, launched_by="t") for i in range(count)))
    catch_up(store)
    shown = cli("list")
    header, *rows = shown.stdout.splitlines()
    assert len(rows) == TABLE_ROWS and rows[0].split()[1] == f"s{count - 1}" and rows[-1].split()[1] == "s5"
    assert shown.stderr == (f"agentledger: showing the newest {TABLE_ROWS} of {count} sessions ('-n N' shows N, "
                            "'-n all' every one)\n")
    every = cli("list", "-n", "all")
    assert len(every.stdout.splitlines()) == count + 1 and every.stderr == ""
    three = cli("list", "--limit", "3")
    assert [row.split()[1] for row in three.stdout.splitlines()[1:]] == [f"s{count - 1}", f"s{count - 2}",
                                                                        f"s{count - 3}"] and three.stderr == ""
    assert len(cli("list", "-q").stdout.split()) == count
    assert len(cli.json_lines("list", "--json")) == count and cli("list", "--count").stdout.strip() == str(count)
    odd = cli("list", "--filter", "label=odd=1")  # filtered in Python: more match, not counted
    assert len(odd.stdout.splitlines()) == count // 2 + 1 and odd.stderr == ""
    everything = cli("list", "--filter", "label=odd", "--all")
    assert len(everything.stdout.splitlines()) == TABLE_ROWS + 1
    assert everything.stderr.startswith(f"agentledger: showing the newest {TABLE_ROWS} sessions; more match")


@pytest.mark.parametrize(("option", "words"), [
    (("--filter", "colour=red"), "expected KEY=VALUE with KEY one of"),
    (("--format", "{nope}"), "unknown field 'nope'"),
    (("--format", "{id"), "--format '{id'"),
    (("--last", "x"), "invalid count 'x' (a whole number >= 0, or 'all')"),
    (("--last", "1_0"), "invalid count '1_0'"),  # int() would take these: a count is ASCII digits
    (("--last", "+2"), "invalid count '+2'"),
    (("--last", "\u0662"), "invalid count"),
    (("--filter", "status=asleep"), "unknown status (one of: running, unwatched, stopping, stopped, host-silent)"),
    (("--bogus",), "agentledger list: error: unrecognized arguments: --bogus (see 'agentledger list --help')"),
])
def test_a_bad_control_is_one_line_and_exit_2(cli, option: tuple[str, ...], words: str) -> None:
    result = cli("list", *option, check=False)
    assert result.returncode == 2 and words in result.stderr and result.stderr.count("\n") == 1


def test_a_count_past_any_store_means_every_row(cli, three: list[str]) -> None:
    assert cli("list", "-q", "--all", "-n", "9" * 30).stdout.split() == three[::-1]
    assert cli("events", "--since", "9" * 30).stdout == ""


def test_list_fits_the_terminal_width_cutting_names_and_commands_never_ids(cli, monkeypatch) -> None:
    long_argv = ["sh", "-c", "sleep 60; " + "echo " + "x" * 120]
    sid = cli.launch(*long_argv, options=("--name", "a-rather-long-session-name-for-this-test"))
    piped = cli("list").stdout.splitlines()  # no COLUMNS, not a terminal: everything, for scripts
    assert any("a-rather-long-session-name-for-this-test" in line for line in piped)
    monkeypatch.setenv("COLUMNS", "100")
    fitted = cli("list").stdout.splitlines()
    assert all(len(line) <= 100 for line in fitted) and any("…" in line for line in fitted)
    assert any(line.startswith(sid[:12]) for line in fitted)
    cli("stop", sid)


def test_list_streams_every_row_in_chunks_newest_first(store) -> None:
    """``--json`` writes each chunk of rows as it reads it: every session once, newest first, across chunks."""
    import contextlib
    import io
    from uuid import uuid4

    import orjson

    from agentledger.application.clock import utc_now
    from agentledger.domain.session import Session
    from agentledger.entrypoints import render
    from agentledger.projections.catchup import catch_up
    from agentledger.projections.queries import iter_sessions, session_json

    sessions = [Session.launch(session_id=uuid4(), argv=["true"], cwd="/", adapter="command", name=None, model=None,
                               prompt=None, group=None, labels={}, host="h", boot_id="b", pid=1, pid_start_time=1.0,
                               boot_time=0.0, supervisor_pid=None, log_path=None, launched_by="t")
                for _ in range(render.CHUNK_LINES + 7)]
    store.ledger.save(*sessions)
    catch_up(store)
    now = utc_now().timestamp()
    buffer = io.BytesIO()
    with contextlib.redirect_stdout(io.TextIOWrapper(buffer)) as out:
        render.write_json_lines(session_json(r, now) for r in iter_sessions(
            store.db, include_stopped=True, status=None, now=now))
        out.flush()
    rows = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(s.id.hex for s in sessions)
    assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)
