"""The prompt file: the user's prompt and the attached files, written where only the user can read it.

Prompts never go into argv: a long one would hit ARG_MAX (``E2BIG`` at exec),
one starting with ``-`` would be taken for a flag, and argv is visible to every
user in ``ps``. Instead the prompt (and each ``--file``, inlined below it) is
written to ``$AGENTLEDGER_HOME/prompts/<session>.txt`` (0600) and given to the
agent on its stdin, which every supported agent reads in non-interactive mode.
"""

from __future__ import annotations

import os
from pathlib import Path

#: One attached file may add at most this many bytes.
FILE_LIMIT = 128 * 1024
#: All attached files together may add at most this many bytes.
ATTACH_LIMIT = 256 * 1024
#: The prompt itself: large prompts are what the file is for, but not without bound.
PROMPT_LIMIT = 16 * 1024 * 1024


class PromptTooLarge(ValueError):
    """An attachment, or the prompt as a whole, is past its cap (a usage error)."""


def compose_prompt(prompt: str, files: list[str], *, spec: str | None = None, file_limit: int = FILE_LIMIT,
                   attach_limit: int = ATTACH_LIMIT, prompt_limit: int = PROMPT_LIMIT) -> bytes:
    """The spec file (``--spec``), then the prompt, then each file, delimited and named; refuses anything past the caps.

    A file past its cap is an error rather than silently cut: an agent
    working from half a file gives a confident, wrong answer. The spec is
    capped like one attached file.
    """
    text = prompt.encode()
    if len(text) > prompt_limit:
        raise PromptTooLarge(f"the prompt is {len(text)} bytes, more than the {prompt_limit}-byte limit")
    head = b""
    if spec is not None:
        content = _read_capped(spec, "--spec", file_limit)
        head = (b"--- spec: " + str(Path(spec)).encode() + b" ---\n" + content
                + (b"" if content.endswith(b"\n") else b"\n") + b"--- end of spec ---\n\n")
    parts = []
    for name in files:
        path = Path(name)
        content = _read_capped(name, "--file", file_limit)
        parts.append(b"\n\n--- file: " + str(path).encode() + b" ---\n" + content
                     + (b"" if content.endswith(b"\n") else b"\n") + b"--- end of file: " + str(path).encode() + b" ---\n")
    attached = b"".join(parts)
    if len(attached) > attach_limit:
        raise PromptTooLarge(f"the attached files come to {len(attached)} bytes, more than the "
                             f"{attach_limit}-byte limit for all of them")
    return head + text + attached


def _read_capped(name: str, option: str, limit: int) -> bytes:
    """The file's bytes, refused (not cut) past ``limit``."""
    path = Path(name)
    try:
        size = path.stat().st_size
        if size > limit:
            raise PromptTooLarge(f"{option} {name}: {size} bytes is more than the {limit}-byte limit per file")
        return path.read_bytes()
    except OSError as error:
        raise PromptTooLarge(f"{option} {name}: {error.strerror or error}") from None


def write_prompt_file(directory: Path, session_id: str, data: bytes) -> Path:
    """``directory/<session>.txt``, created 0600 in a 0700 directory, never following a planted link."""
    from agentledger.infrastructure.config import private_directory

    private_directory(directory)
    path = directory / f"{session_id}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path
