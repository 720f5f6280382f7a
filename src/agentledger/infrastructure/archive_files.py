"""Archive files on disk (``application/ports.py: ArchiveFiles``): gzip'd NDJSON, private, written whole or not at all.

A new archive is written to ``FILE.part`` beside its final name (mode 0600,
created exclusively), compressed with gzip (level 6: most of level 9's ratio
at a third of its time), flushed and ``fsync``'d, renamed to ``FILE`` and the
directory ``fsync``'d: after :meth:`ArchiveFileSystem.create` returns, the
file is on disk under its name, complete; if anything fails first, the part
file is removed and ``FILE`` never appears. A location that refuses the file
(read-only, full, no permission) is one line (:class:`ArchiveWriteError`).

Reading decompresses in large blocks (``blocks``: the read-back check hashes
them as they come) and splits lines (``lines``); a file that is not
gzip, fails its CRC or is cut short is ``ArchiveDamaged``, one line.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from agentledger.application.archive_format import ArchiveDamaged
from agentledger.application.errors import LedgerError

#: gzip's level: 6 (zlib's default) rather than gzip.open's 9, which is ~3x slower for a few % smaller files.
COMPRESS_LEVEL = 6
_BLOCK = 1 << 20


class ArchiveWriteError(LedgerError):
    """The archive file cannot be written where asked (exit status 1): nothing was removed from the store."""


class ArchiveFileSystem:
    def __init__(self, home: Path) -> None:
        self.home = home

    def default_path(self) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return str(self.home / "archive" / f"sessions-{stamp}.ndjson.gz")

    @contextmanager
    def create(self, path: str) -> Iterator[BinaryIO]:
        final = Path(path).absolute()
        part = final.with_name(final.name + ".part")
        if final.exists():
            raise ArchiveWriteError(f"the archive {final} exists already: choose another --out")
        if final.parent == self.home / "archive":
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise ArchiveWriteError(f"cannot write the archive {final}: {error.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(filename=final.name, mode="wb", compresslevel=COMPRESS_LEVEL, fileobj=raw) as out:
                    yield out  # type: ignore[misc]
                raw.flush()
                os.fsync(raw.fileno())
            os.rename(part, final)
            _sync_directory(final.parent)
        except OSError as error:
            part.unlink(missing_ok=True)
            raise ArchiveWriteError(f"cannot write the archive {final}: {error.strerror or error}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    @contextmanager
    def lines(self, path: str) -> Iterator[Iterator[bytes]]:
        with self.blocks(path) as blocks:
            yield _lines(blocks)

    @contextmanager
    def blocks(self, path: str) -> Iterator[Iterator[bytes]]:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise ArchiveDamaged(f"cannot read {path}: {error.strerror}") from None
        try:
            yield _blocks(gzip.GzipFile(fileobj=raw, mode="rb"))
        finally:
            raw.close()


def _blocks(stream: gzip.GzipFile) -> Iterator[bytes]:
    """The decompressed bytes, a megabyte at a time."""
    while True:
        try:
            block = stream.read(_BLOCK)
        except (OSError, EOFError, zlib.error) as error:
            raise ArchiveDamaged(f"the compressed data is damaged ({_reason(error)})") from None
        if not block:
            return
        yield block


def _lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The decompressed lines (each with its ``\\n``; a last one without is yielded as it is)."""
    rest = b""
    for block in blocks:
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def _reason(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "it was cut short"
    return str(error) or type(error).__name__


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
