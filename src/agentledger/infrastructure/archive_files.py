"""Archive files on disk (``application/ports.py: ArchiveFiles``): gzip'd NDJSON, private, written whole or not at all.

A new archive is written to ``FILE.part`` beside its final name (mode 0600,
created exclusively), compressed with gzip (level 6: most of level 9's ratio
at a third of its time), flushed and ``fsync``'d, renamed to ``FILE`` and the
directory ``fsync``'d: after :meth:`ArchiveFileSystem.create` returns, the
file is on disk under its name, complete; if anything fails first, the part
file is removed and ``FILE`` never appears. A location that refuses the file
(read-only, full, no permission) is one line (:class:`ArchiveWriteError`).

Compressing is most of writing (gzip over ~20x the file's size of text), so
it runs in a thread of its own (:class:`_CompressingWriter`), beside the
reading and formatting of the next sessions: ``zlib``, ``hashlib`` and the
file's writes release the GIL, so on a machine with a second core the
compression costs the archive next to nothing of its time (``db archive`` of
900,000 events, ``docs/BENCHMARKS.md``). The order of the bytes is kept, and
an error in the thread (a full disk) is raised in the writer's.

The compressed bytes are hashed on their way to the file
(:class:`ArchiveOutput`'s ``sha256``), and :meth:`ArchiveFileSystem.sha256`
hashes the file as read back from disk: the archive is removed from the
store only if the two agree, byte for byte. Comparing the compressed bytes
says as much as decompressing them again and hashing the 20 times larger
text, at a twentieth of the cost.

Reading for ``verify`` and ``import`` decompresses in large blocks and
splits lines (``lines``); a file that is not gzip, fails its CRC or is cut
short is ``ArchiveDamaged``, one line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from agentledger.application.archive_format import ArchiveDamaged
from agentledger.application.errors import LedgerError

#: gzip's level: 6 (zlib's default) rather than gzip.open's 9, which is ~3x slower for a few % smaller files.
COMPRESS_LEVEL = 6
_BLOCK = 1 << 20
#: Blocks of text waiting for the compressing thread, at most: the memory a slow disk can hold up.
_QUEUED_BLOCKS = 4


class ArchiveWriteError(LedgerError):
    """The archive file cannot be written where asked (exit status 1): nothing was removed from the store."""


class ArchiveOutput:
    """What :meth:`ArchiveFileSystem.create` hands out: ``write`` the archive's text; once the file is written,
    ``sha256`` is the hex digest of its bytes (the compressed ones, as they went to the file)."""

    def __init__(self, compressing: _CompressingWriter, hashed: _Hashed) -> None:
        self.write = compressing.write
        self._hashed = hashed

    @property
    def sha256(self) -> str:
        return self._hashed.hash.hexdigest()


class _CompressingWriter:
    """Hands the text, a block (:data:`_BLOCK`) at a time, to a thread that writes it to ``compressed`` in order.

    The thread's first error is kept and raised by the next :meth:`write` or by :meth:`close`; after it the
    thread still takes (and drops) what it is handed, so the writer never waits on a full queue.
    """

    def __init__(self, compressed: gzip.GzipFile) -> None:
        self._compressed = compressed
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_BLOCKS)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._compress, name="archive-gzip", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _BLOCK:
            self._hand_over()
        return len(data)

    def close(self) -> None:
        """Compress what is left and wait for the thread; its error, if it had one (the thread is stopped
        either way)."""
        try:
            self._hand_over()
        finally:
            self._stop()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop the thread without raising (the archive failed in the writer: its own error is the one to tell)."""
        self._pending.clear()
        self._stop()

    def _hand_over(self) -> None:
        if self._error is not None:
            raise self._error
        if self._pending:
            self._blocks.put(b"".join(self._pending))
            self._pending.clear()
            self._pending_size = 0

    def _stop(self) -> None:
        self._blocks.put(None)
        self._thread.join()

    def _compress(self) -> None:
        while (block := self._blocks.get()) is not None:
            if self._error is None:
                try:
                    self._compressed.write(block)
                except BaseException as error:  # noqa: BLE001 - raised in the writer's thread
                    self._error = error


class _Hashed:
    """The file, as ``GzipFile`` writes to it: every byte is hashed on its way."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class ArchiveFileSystem:
    def __init__(self, home: Path) -> None:
        self.home = home

    def default_path(self) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return str(self.home / "archive" / f"sessions-{stamp}.ndjson.gz")

    @contextmanager
    def create(self, path: str) -> Iterator[ArchiveOutput]:
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
                hashed = _Hashed(raw)
                with gzip.GzipFile(filename=final.name, mode="wb", compresslevel=COMPRESS_LEVEL,
                                   fileobj=hashed) as compressed:
                    compressing = _CompressingWriter(compressed)
                    try:
                        yield ArchiveOutput(compressing, hashed)
                    except BaseException:
                        compressing.abandon()
                        raise
                    compressing.close()
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

    def sha256(self, path: str) -> str:
        """The hex digest of the file's bytes as read back from disk."""
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as raw:
                while block := raw.read(_BLOCK):
                    digest.update(block)
        except OSError as error:
            raise ArchiveDamaged(f"cannot read {path}: {error.strerror}") from None
        return digest.hexdigest()

    @contextmanager
    def lines(self, path: str) -> Iterator[Iterator[bytes]]:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise ArchiveDamaged(f"cannot read {path}: {error.strerror}") from None
        try:
            yield _lines(_blocks(gzip.GzipFile(fileobj=raw, mode="rb")))
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
