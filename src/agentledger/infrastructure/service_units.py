"""``daemon install`` / ``uninstall``: the daemon as a user service (systemd on Linux, launchd on macOS).

For users who prefer the init system to keep the daemon running (across
logouts, crashes and reboots) over ``launch`` starting it on demand. The unit
runs ``agentledger daemon run`` (foreground, logging to the journal) with this
home; the store URL goes into an environment file beside the home's other
files (0600), never into the unit, which others may read.

- systemd: ``$XDG_CONFIG_HOME/systemd/user/<name>.service``, then
  ``systemctl --user daemon-reload`` and ``enable --now``;
- launchd: ``~/Library/LaunchAgents/<label>.plist``, then ``launchctl load -w``.

The name is ``agentledger-daemon`` for the default home, with a short hash of
the home otherwise, so several homes can each have one.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Unit:
    kind: str  # "systemd" or "launchd"
    name: str
    path: Path
    text: str
    env_file: Path
    env_text: str
    enable: list[list[str]]
    disable: list[list[str]]


def unit_for(home: Path, store_url: str, interval: float | None, *, platform: str | None = None) -> Unit:
    """The unit that runs this home's daemon for ``store_url`` (with its password: kept in the 0600 env file)."""
    platform = platform or sys.platform
    default = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "agentledger"
    suffix = "" if home == default else "-" + hashlib.sha256(str(home).encode()).hexdigest()[:8]
    argv = [sys.executable, "-m", "agentledger", "daemon", "run"]
    if interval is not None:
        argv += ["--interval", repr(interval)]
    env_file = home / "daemon.env"
    env_text = f"AGENTLEDGER_HOME={home}\nAGENTLEDGER_DB={store_url}\n"
    if platform == "darwin":
        label = f"dev.agentledger.daemon{suffix}"
        path = Path.home() / "Library" / "LaunchAgents" / f"{label}.plist"
        text = plistlib.dumps({
            "Label": label,
            "ProgramArguments": ["/bin/sh", "-c", f"set -a; . {shlex.quote(str(env_file))}; exec "
                                 + " ".join(shlex.quote(a) for a in argv)],
            "RunAtLoad": True, "KeepAlive": {"SuccessfulExit": False},
            "StandardErrorPath": str(home / "daemon.log"),
        }).decode()
        return Unit("launchd", label, path, text, env_file, env_text,
                    enable=[["launchctl", "load", "-w", str(path)]],
                    disable=[["launchctl", "unload", "-w", str(path)]])
    name = f"agentledger-daemon{suffix}"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    path = config / "systemd" / "user" / f"{name}.service"
    text = "\n".join([
        "[Unit]",
        f"Description=agentledger reconciler daemon ({home})",
        "",
        "[Service]",
        "Type=simple",
        f"EnvironmentFile={env_file}",
        f"ExecStart={' '.join(shlex.quote(a) for a in argv)}",
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])
    return Unit("systemd", name, path, text, env_file, env_text,
                enable=[["systemctl", "--user", "daemon-reload"],
                        ["systemctl", "--user", "enable", "--now", f"{name}.service"]],
                disable=[["systemctl", "--user", "disable", "--now", f"{name}.service"]])


def write(unit: Unit) -> None:
    unit.path.parent.mkdir(parents=True, exist_ok=True)
    unit.path.write_text(unit.text)
    fd = os.open(unit.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, unit.env_text.encode())
    finally:
        os.close(fd)


def run(commands: list[list[str]]) -> str | None:
    """Run the init system's commands; None if all succeeded, else why not (one line)."""
    for command in commands:
        if shutil.which(command[0]) is None:
            return f"{command[0]} is not installed here"
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{' '.join(command)}: {error}"
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            return f"{' '.join(command)} failed: {detail[0] if detail else f'exit {done.returncode}'}"
    return None


def remove(unit: Unit) -> bool:
    """Remove the unit and its environment file; whether there was a unit."""
    existed = unit.path.exists()
    unit.path.unlink(missing_ok=True)
    unit.env_file.unlink(missing_ok=True)
    return existed
