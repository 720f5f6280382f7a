"""``--help`` says what every command, option and positional is for (issue 18).

Walks the whole parser tree ``build_parser()`` makes, every sub-command at
every depth, so that a new option without help fails here, by name.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from agentledger.domain.durations import format_duration
from agentledger.domain.fuse import MIN_TTL
from agentledger.domain.vocabulary import SessionStatus
from agentledger.entrypoints import args as types
from agentledger.entrypoints.cli import build_parser

pytestmark = pytest.mark.unit


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(the words after ``agentledger``, the parser) for the program and each sub-command, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _arguments(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The options and positionals a user can give (not -h/--help, --version, sub-commands or hidden ones)."""
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:  # hidden on purpose (e.g. daemon run --handshake-fd)
            continue
        yield action


def _where(path: tuple[str, ...], action: argparse.Action | None = None) -> str:
    name = "" if action is None else " " + ("/".join(action.option_strings) or action.metavar or action.dest)
    return " ".join(("agentledger", *path)) + str(name)


PARSERS = list(_parsers(build_parser()))


def test_the_walk_reaches_nested_sub_commands() -> None:
    paths = {path for path, _ in PARSERS}
    assert {("list",), ("fuse", "set"), ("fuse", "cancel"), ("db", "init"), ("daemon", "install"),
            ("webhooks", "verify")} <= paths


def test_every_option_and_positional_has_help() -> None:
    missing = [_where(path, action) for path, parser in PARSERS for action in _arguments(parser)
               if not (action.help or "").strip()]
    assert not missing, "no help text: " + ", ".join(missing)


def test_every_sub_command_has_a_description_and_a_line_in_its_parents_list() -> None:
    missing = [_where(path) for path, parser in PARSERS if not (parser.description or "").strip()]
    for path, parser in PARSERS:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{_where((*path, choice.dest))} (in the list)" for choice in action._choices_actions
                            if not (choice.help or "").strip()]
    assert not missing, "no description: " + ", ".join(missing)


def test_an_option_with_a_default_says_what_it_is() -> None:
    silent = [_where(path, action) for path, parser in PARSERS for action in _arguments(parser)
              if action.option_strings and action.nargs != 0 and action.default not in (None, [], "")
              and "default" not in (action.help or "")]
    assert not silent, "a default the help does not mention: " + ", ".join(silent)


def test_a_command_taking_a_duration_explains_how_to_write_one() -> None:
    unexplained = [_where(path) for path, parser in PARSERS
                   if any(action.type is types.duration for action in _arguments(parser))
                   and not all(form in parser.format_help() for form in ("500ms", "1h30m", "bare number"))]
    assert not unexplained, "DURATION not explained: " + ", ".join(unexplained)


@pytest.mark.parametrize("path", [path for path, _ in PARSERS], ids=lambda path: " ".join(path) or "agentledger")
def test_help_renders(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([*path, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('agentledger', *path))}")
    assert "%(" not in out  # a help string whose %-placeholder argparse did not fill


def _help(*path: str) -> str:
    return dict(PARSERS)[path].format_help()


def test_list_help_names_every_status() -> None:
    text = " ".join(_help("list").split())  # as one line: argparse wraps at the terminal's width
    assert all(status.value in text for status in SessionStatus), text


def test_list_format_help_names_every_field() -> None:
    from agentledger.projections.listing import FIELDS

    text = " ".join(_help("list").split())
    assert all(f" {name}," in text or f" {name})" in text for name in FIELDS), text


def test_launch_help_names_every_agent() -> None:
    from agentledger.adapters.registry import agent_names

    description = dict(PARSERS)[("launch",)].description or ""
    assert all(name in description for name in agent_names()), description


def test_fuse_ttl_help_names_the_floor() -> None:
    floor = format_duration(MIN_TTL)
    assert floor == "250ms"
    for path in (("fuse", "set"), ("launch",), ("resume",)):
        assert f"at least {floor}" in " ".join(_help(*path).split()), path


# -- one command's parser ------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_the_table_of_command_modules_is_the_parsers() -> None:
    from agentledger.entrypoints.cli import COMMAND_MODULES, OWN_COMMANDS

    by_module: dict[str, list[str]] = {}
    for name, sub in _commands(build_parser()).items():
        by_module.setdefault(sub.get_default("handler").__module__.rsplit(".", 1)[1], []).append(name)
    assert by_module.pop("cli") == list(OWN_COMMANDS)
    assert {module: tuple(names) for module, names in by_module.items()} == COMMAND_MODULES


def test_a_command_builds_only_its_own_parser_and_parses_as_the_whole_one_does() -> None:
    from agentledger.entrypoints.cli import command_to_build

    whole = build_parser()
    for name in _commands(whole):
        own = build_parser(name)
        assert list(_commands(own)) == [name]
        assert own.format_usage() != "" and _commands(own)[name].format_help() == _commands(whole)[name].format_help()
    argv = ["list", "--all", "-n", "3"]
    assert vars(build_parser(command_to_build(argv)).parse_args(argv)) == vars(whole.parse_args(argv))
    assert command_to_build(["lsit"]) is None and command_to_build(["--help"]) is None  # all: argparse says why
    assert command_to_build(["--version"]) == "" and _commands(build_parser("")) == {}
