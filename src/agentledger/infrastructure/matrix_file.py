"""Reading a matrix file (``launch --matrix FILE``): YAML (PyYAML, safe loader) or TOML (``tomllib``), by extension.

What the contents mean is the service layer's (``application/group_launching.py:
matrix_plan``); here only the syntax: a file that cannot be read or parsed,
or whose top level is not a table, is one usage error naming the file and,
where the parser says it, the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentledger.application.errors import UsageError

YAML_SUFFIXES = (".yaml", ".yml")
TOML_SUFFIXES = (".toml",)


def load_matrix(path: str) -> dict[str, Any]:
    """The matrix in ``path`` as a dict; YAML for .yaml/.yml, TOML for .toml."""
    suffix = Path(path).suffix.lower()
    if suffix not in YAML_SUFFIXES + TOML_SUFFIXES:
        raise UsageError(f"--matrix {path}: a matrix is a .yaml, .yml or .toml file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--matrix {path}: {getattr(error, 'strerror', None) or error}") from None
    data = _yaml(text, path) if suffix in YAML_SUFFIXES else _toml(text, path)
    if not isinstance(data, dict):
        raise UsageError(f"--matrix {path}: the top level must be a table of agents, models and prompts")
    return data


def _yaml(text: str, path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"--matrix {path}: not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None


def _toml(text: str, path: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"--matrix {path}: not valid TOML: {error}") from None
