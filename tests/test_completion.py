"""Shell completion, driven as the shells drive it: argcomplete's protocol, and the real bash, zsh and fish.

The protocol: the shell runs ``agentledger`` with ``_ARGCOMPLETE=1``, the line
so far in ``COMP_LINE`` and the cursor in ``COMP_POINT``; the answer, separated
by ``_ARGCOMPLETE_IFS``, goes to fd 8, or to ``_ARGCOMPLETE_STDOUT_FILENAME``
(what argcomplete's own script does under ``ARGCOMPLETE_USE_TEMPFILES``). The
bash test goes through fd 8 by calling the sourced script's function itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI

BIN = Path(sys.executable).parent  # where this venv installed the `agentledger` script the shells run


def complete(line: str, tmp_path: Path, *, shell: str = "bash", **env: str) -> tuple[list[str], str]:
    """What the shell would be offered for ``line`` (the cursor at its end), and what went to stderr."""
    answer = tmp_path / "completions"
    protocol = {"_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": shell, "_ARGCOMPLETE_IFS": "\n",
                "_ARGCOMPLETE_SUPPRESS_SPACE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                "COMP_TYPE": "9", "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    result = subprocess.run([sys.executable, "-m", "agentledger"], env={**os.environ, **protocol, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = answer.read_text()
    return (text.split("\n") if text else []), result.stderr


def shell_env(tmp_path: Path) -> dict[str, str]:
    """The test's environment with the venv's ``agentledger`` first on PATH, and a scratch HOME for the shells'
    own files (zsh's .zcompdump, fish's history), never the user's."""
    if not (BIN / "agentledger").exists():
        pytest.skip(f"SKIPPED: no 'agentledger' script beside {sys.executable} (not installed in this venv)")
    scratch = tmp_path / "shell-home"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(scratch),
            "XDG_CONFIG_HOME": str(scratch / ".config"), "XDG_DATA_HOME": str(scratch / ".local/share"),
            "ZDOTDIR": str(scratch)}


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None and os.environ.get("AGENTLEDGER_REQUIRE_SHELLS") == "1":  # set by .ci/run
        pytest.fail(f"{shell} is not installed, and AGENTLEDGER_REQUIRE_SHELLS=1 requires it")
    if path is None:
        pytest.skip(f"SKIPPED: {shell} is not installed here (apt-get install {shell}), so its script is not tried")
    return path


# -- commands, options, values that need no store -------------------------------------


def test_a_command_completes_from_its_first_letters_and_a_tab_creates_no_store(tmp_path, home) -> None:
    words, stderr = complete("agentledger sta", tmp_path)
    assert "status" in words and all(w.startswith("sta") for w in words) and stderr == ""
    assert complete("agentledger status ", tmp_path) == ([], "")  # no store: no session, and no traceback
    assert not home.exists()  # completing looked for the store and made none


def test_options_after_a_dash_and_adapters_after_adapter(tmp_path) -> None:
    assert complete("agentledger list --ad", tmp_path)[0] == ["--adapter"]
    assert {"command", "codex", "claude-code", "opencode"} <= set(complete("agentledger list --adapter ", tmp_path)[0])
    assert "completion" in complete("agentledger comp", tmp_path)[0]
    assert complete("agentledger completion ", tmp_path)[0] == ["bash", "zsh", "fish"]


# -- sessions and groups from the read models ------------------------------------------


def test_a_launched_session_completes_by_name_and_id_prefix(cli, tmp_path) -> None:
    sid = cli.launch("sleep", "60", options=("--name", "tabby", "--group", "cats"))
    try:
        words, stderr = complete("agentledger status ", tmp_path)  # at once: the completer catches the read models up
        assert {"tabby", sid[:12]} <= set(words) and sid not in words and stderr == ""
        assert complete("agentledger logs tab", tmp_path)[0] == ["tabby"]
        assert complete(f"agentledger history {sid[:4]}", tmp_path)[0] == [sid[:12]]
        assert complete(f"agentledger why {sid[:14]}", tmp_path)[0] == [sid]  # more typed than 12: the whole id
        assert "tabby" in complete("agentledger wait nosuch ", tmp_path)[0]  # every ID of wait
        assert "tabby" in complete("agentledger events --session ", tmp_path)[0]  # an option's ID too
        assert complete("agentledger stop --group c", tmp_path)[0] == ["cats"]
        assert complete("agentledger compare ", tmp_path)[0] == ["cats"]
        assert "tabby" not in complete("agentledger webhooks retry ", tmp_path)[0]  # delivery ids, not sessions
        described = complete("agentledger status tab", tmp_path, shell="fish", _ARGCOMPLETE_DFS="\t")[0]
        assert described == [f"tabby\trunning command session {sid[:12]}"]  # what fish and zsh show beside it
    finally:
        cli("stop", sid)
    assert complete("agentledger status tab", tmp_path, shell="fish", _ARGCOMPLETE_DFS="\t")[0] == [
        f"tabby\tstopped command session {sid[:12]}"]


def test_a_name_shared_by_sessions_is_offered_once(cli, tmp_path) -> None:
    first = cli.launch("true", options=("--name", "twice"))
    second = cli.launch("true", options=("--name", "twice"))
    cli("list")  # the read models caught up: this is about the words, not the TAB's 1.5 s for a catch-up
    words = complete("agentledger status ", tmp_path)[0]
    assert words.count("twice") == 1 and {first[:12], second[:12]} <= set(words)


# -- a store that is not there or does not answer: nothing, at once --------------------


def timed_completion(line: str, tmp_path: Path, **env: str) -> tuple[list[str], str, float]:
    started = time.monotonic()
    words, stderr = complete(line, tmp_path, **env)
    return words, stderr, time.monotonic() - started


def test_an_unreachable_or_unanswering_store_completes_to_nothing_without_holding_the_tab(tmp_path) -> None:
    from agentledger.entrypoints.completion import DEADLINE_SECONDS
    from agentledger.infrastructure.postgres_store import CONNECT_TIMEOUT

    refused = timed_completion("agentledger status ", tmp_path, AGENTLEDGER_DB="postgresql://nobody@127.0.0.1:1/none")
    assert refused[:2] == ([], "")
    with socket.create_server(("127.0.0.1", 0)) as server:  # listens, so connecting succeeds; never says a word
        silent = timed_completion("agentledger status ", tmp_path,
                                  AGENTLEDGER_DB=f"postgresql://nobody@127.0.0.1:{server.getsockname()[1]}/none")
    assert silent[:2] == ([], "")
    # given up at the deadline, not after psycopg's own timeout (the refused one times how long the rest takes)
    assert DEADLINE_SECONDS < silent[2] < refused[2] + (DEADLINE_SECONDS + CONNECT_TIMEOUT) / 2


# -- the scripts, in the real shells ----------------------------------------------------


def test_bash_registers_the_script_and_completes_through_it(tmp_path) -> None:
    bash = need("bash")
    script = """
        eval "$(agentledger completion bash)"
        complete -p agentledger
        COMP_LINE="agentledger sta"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
        COMP_WORDS=(agentledger sta); COMP_CWORD=1
        _python_argcomplete agentledger sta agentledger
        printf 'offered:%s\\n' "${COMPREPLY[@]}"
    """
    result = subprocess.run([bash, "-c", script], env=shell_env(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "-F _python_argcomplete agentledger" in result.stdout
    assert "offered:status " in result.stdout.splitlines()  # the one match, with the space that moves past it


def test_zsh_registers_the_script(tmp_path) -> None:
    zsh = need("zsh")
    script = 'autoload -U compinit && compinit -u -D; eval "$(agentledger completion zsh)"; print -r -- $_comps[agentledger]'
    result = subprocess.run([zsh, "-f", "-c", script], env=shell_env(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "_python_argcomplete"), result.stderr


def test_fish_completes_through_the_script(tmp_path) -> None:
    fish = need("fish")
    script = 'agentledger completion fish | source; complete --do-complete "agentledger sta"'
    result = subprocess.run([fish, "--no-config", "-c", script], env=shell_env(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [offered] = result.stdout.splitlines()
    assert offered.startswith("status\tshow one session")  # the word, and beside it the command's help


# -- the command --------------------------------------------------------------------------


def test_an_unknown_shell_is_a_usage_error_of_one_line() -> None:
    result = CLI()("completion", "nosuchshell", check=False)  # CLI(), not the cli fixture: no store, one backend
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert "'nosuchshell'" in result.stderr and "bash" in result.stderr


def test_the_help_says_how_to_install_it() -> None:
    shown = CLI()("completion", "--help").stdout
    assert 'eval "$(agentledger completion bash)"' in shown
    assert "agentledger completion fish > ~/.config/fish/completions/agentledger.fish" in shown
