"""``agentledger completion SHELL``: print the script that makes TAB complete agentledger in that shell.

The script is argcomplete's own (``entrypoints/completion.py``): on TAB the
shell runs ``agentledger`` in completion mode, which answers from the parser
and the read models, so the script never goes stale as commands are added.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentledger.entrypoints.cli import Context

#: The shells argcomplete writes a script for that this project tries (tests/test_completion.py).
SHELLS = ("bash", "zsh", "fish")

INSTALL = """\
to have it in every new shell:
  bash   in ~/.bashrc:                 eval "$(agentledger completion bash)"
  zsh    in ~/.zshrc, after compinit:  eval "$(agentledger completion zsh)"
  fish   once:                         agentledger completion fish > ~/.config/fish/completions/agentledger.fish

TAB then completes commands, options, session names and id prefixes, group
names (--group) and adapters (--adapter)."""


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("completion", "print the shell code that makes TAB complete agentledger's commands, options and "
                              "sessions")
    p.epilog = INSTALL
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help=f"the shell to complete in: {', '.join(SHELLS)}")
    p.set_defaults(handler=cmd_completion)


def cmd_completion(context: Context, args: argparse.Namespace) -> int:
    from agentledger.entrypoints.completion import script

    print(script(args.shell), end="")
    return 0
