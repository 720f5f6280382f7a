"""Binding the console's address and running it: in the foreground (``agentledger console``) or on a thread
beside the daemon's passes (``console_addr`` in ``config.toml``).

The socket is bound here, before the server starts, so that a port in use is
one line and an exit status, and ``--addr 127.0.0.1:0`` can say which port it got.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentledger.entrypoints.console.guard import Guard, is_loopback, new_token

log = logging.getLogger("agentledger.console")

if TYPE_CHECKING:
    from pathlib import Path

    from agentledger.bootstrap import Location


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def plan_guard(address: Address, *, actions: bool, home: Path) -> tuple[Guard, Path | None, list[str]]:
    """The guard for this run, where its token is kept (None: no token), and the warnings to print."""
    reachable = not is_loopback(address.host)
    warnings = []
    if reachable:
        warnings.append(f"the console listens on {address.host}, reachable from other machines: every page needs "
                        "its token, and it is served over plain HTTP")
    if not (actions or reachable):
        return Guard(token=None, actions=False), None, warnings
    token, path = new_token(home)
    return Guard(token=token, actions=actions, reads_need_token=reachable), path, warnings


def bind(address: Address) -> socket.socket:
    """A listening socket on ``address``; OSError (in use, not an address of this machine) as it comes."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections of a socket that says TCP;
    # without it every small response waits ~40 ms for the browser's delayed acknowledgement
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def server(location: Location, guard: Guard, sock: socket.socket) -> Any:
    """A uvicorn server of the console over the store at ``location``, on ``sock``, not started yet."""
    import uvicorn

    from agentledger.bootstrap import store_opener
    from agentledger.entrypoints.console.app import create_app
    from agentledger.entrypoints.console.state import Console

    app = create_app(Console(store_opener(location), guard))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    return _Server(config, sock)


def start_in_background(location: Location, host: str, port: int) -> Callable[[], None]:
    """The daemon's console (``console_addr``): read-only, on a thread; how to stop it. OSError if it cannot listen.

    Beyond loopback every page needs a token, written to the home's ``console.token`` as the command writes it.
    """
    from agentledger.infrastructure.config import home_dir

    address = Address(host, port)
    guard, _, warnings = plan_guard(address, actions=False, home=home_dir())
    for warning in warnings:
        log.warning("console: %s (the token is in the home's console.token)", warning)
    running = server(location, guard, bind(address))
    running.start_thread()
    return running.stop


class _Server:
    """uvicorn's server on a socket bound beforehand, run in the foreground or on a thread."""

    def __init__(self, config: Any, sock: socket.socket) -> None:
        import uvicorn

        self.server = uvicorn.Server(config)
        self.sock = sock

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="console", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.server.should_exit = True
