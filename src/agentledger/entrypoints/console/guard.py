"""Who may act through the console: a per-run token, and a CSRF check on every action.

Reading is open on loopback (the same user could run ``agentledger list``);
acting (stop, fuse, webhook retry) is off unless the console was started with
``--actions``. Then every action needs the token the command printed, sent
once as ``/login?token=...`` (kept in an HttpOnly, SameSite=Strict cookie) or
as ``Authorization: Bearer ...``, and a form's CSRF field, derived from the
token, that only a page the console served can know. A console bound to an
address other than loopback needs the token for reading too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

COOKIE = "agentledger_console"
TOKEN_FILE = "console.token"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0 included) is reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token(home: Path) -> tuple[str, Path]:
    """A fresh token for this run, written to ``home/console.token`` readable by this user only."""
    token = secrets.token_urlsafe(24)
    home.mkdir(parents=True, exist_ok=True)
    path = home / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token, path


@dataclass(frozen=True)
class Guard:
    """The token (None: no token this run), whether actions are on, whether reading needs the token too."""

    token: str | None
    actions: bool
    reads_need_token: bool = False

    def holds_token(self, cookie: str | None, authorization: str | None) -> bool:
        if self.token is None:
            return False
        offered = cookie or (authorization or "").removeprefix("Bearer ").strip()
        return bool(offered) and hmac.compare_digest(offered, self.token)

    def may_read(self, cookie: str | None, authorization: str | None) -> bool:
        return not self.reads_need_token or self.holds_token(cookie, authorization)

    def csrf(self) -> str:
        """The CSRF field of this run's forms: derived from the token, so it cannot be guessed without it."""
        if self.token is None:
            return ""
        return hmac.new(self.token.encode(), b"agentledger console csrf", hashlib.sha256).hexdigest()

    def refusal(self, cookie: str | None, authorization: str | None, csrf: str | None) -> str | None:
        """Why an action is refused, or None if it may go ahead."""
        if not self.actions:
            return "actions are off: start the console with --actions to stop sessions or set fuses from here"
        if not self.holds_token(cookie, authorization):
            return "this action needs the console's token: open the address 'agentledger console' printed"
        if authorization is None and not (csrf and hmac.compare_digest(csrf, self.csrf())):
            return "the form's CSRF token is missing or wrong: reload the page and try again"
        return None
