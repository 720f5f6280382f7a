"""Archive files on disk (``application/ports.py: ArchiveFiles``): gzip'd NDJSON, private, written whole or not at all.

A new archive is written to ``FILE.part`` beside its final name (mode 0600,
created exclusively, under an exclusive ``flock`` held until it is in place),
compressed with gzip (level 6: most of level 9's ratio at a third of its
time), flushed and ``fsync``'d, hard-linked to ``FILE`` (which refuses a name
taken meanwhile; ``rename`` where links are not supported), the part's name
removed and the directory ``fsync``'d: after :meth:`ArchiveFileSystem.create`
returns, the file is on disk under its name, complete; if anything fails
first, the part file is removed and ``FILE`` never appears. Nothing already
at ``FILE`` (a file, a directory, a symbolic link, even a dangling one) is
ever replaced. A part file whose lock is free was left by an archive that
died: it is replaced; one whose lock is held is another archive's, at work:
refused. A location that refuses the file (read-only, full, no permission,
a name too long, ``archive`` not a directory) is one line
(:class:`ArchiveWriteError`: ``cannot write the archive FILE: …``).

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
short is ``ArchiveDamaged``, one line, and so is anything but a regular file
(a named pipe would block the reader for ever).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import itertools
import os
import queue
import stat
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
        """A name under the home's ``archive/`` that neither a file nor a part file holds: the time to the
        second, then ``-2``, ``-3`` … (two archives in one second); ``create`` still refuses one taken since."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        directory = self.home / "archive"
        for number in itertools.count(1):
            path = directory / f"sessions-{stamp}{'' if number == 1 else f'-{number}'}.ndjson.gz"
            if not (os.path.lexists(path) or os.path.lexists(_part_of(path))):
                return str(path)
        raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends

    @contextmanager
    def create(self, path: str) -> Iterator[ArchiveOutput]:
        """The archive's text in, the file complete under its name out (the module's docstring says how); any
        refusal of the location is one ``cannot write the archive FILE: …``, the part file removed."""
        final = Path(os.path.abspath(path))
        part = _part_of(final)
        _refuse_existing(final)
        if final.parent == self.home / "archive":
            _make_directory(final)
        fd = _claim(part, final)
        held = True  # the part file is this run's (locked): only then is it removed on a failure
        try:
            with os.fdopen(fd, "wb", closefd=False) as raw:
                yield from _written(raw, final)
                raw.flush()
                os.fsync(raw.fileno())
            _publish(part, final)
            held = False
            _sync_directory(final.parent)
        except OSError as error:
            _drop(part, held)
            raise ArchiveWriteError(f"cannot write the archive {final}: {error.strerror or error}") from None
        except BaseException:
            _drop(part, held)
            raise
        finally:
            os.close(fd)

    def sha256(self, path: str) -> str:
        """The hex digest of the file's bytes as read back from disk (what ``sha256sum FILE`` prints)."""
        digest = hashlib.sha256()
        with _open_regular(path) as raw:
            try:
                while block := raw.read(_BLOCK):
                    digest.update(block)
            except OSError as error:
                raise ArchiveDamaged(f"cannot read {path}: {error.strerror or error}") from None
        return digest.hexdigest()

    @contextmanager
    def lines(self, path: str) -> Iterator[Iterator[bytes]]:
        with _open_regular(path) as raw:
            yield _lines(_blocks(gzip.GzipFile(fileobj=raw, mode="rb")))

    def remove(self, path: str) -> None:
        """Delete a new archive the store did not let go of its sessions for (it would only block a retry)."""
        final = Path(os.path.abspath(path))
        try:
            final.unlink()
            _sync_directory(final.parent)
        except OSError as error:
            raise ArchiveWriteError(f"cannot delete {final}: {error.strerror or error}") from None


def _part_of(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def _refuse_existing(final: Path) -> None:
    """Anything at the name, a dangling symbolic link or a loop too, is someone's: never replaced."""
    if os.path.lexists(final):
        raise ArchiveWriteError(f"the archive {final} exists already: choose another --out")


def _make_directory(final: Path) -> None:
    """The home's ``archive/`` (0700), made on first use; any refusal is the usual one line about the archive."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise ArchiveWriteError(f"cannot write the archive {final}: {final.parent} is not a directory") from None
    except OSError as error:
        raise ArchiveWriteError(f"cannot write the archive {final}: {error.strerror or error}") from None


def _written(raw: BinaryIO, final: Path) -> Iterator[ArchiveOutput]:
    """The gzip stream around ``raw``, compressed in a thread of its own, handed out once; complete on return."""
    hashed = _Hashed(raw)
    with gzip.GzipFile(filename=final.name, mode="wb", compresslevel=COMPRESS_LEVEL, fileobj=hashed) as compressed:
        compressing = _CompressingWriter(compressed)
        try:
            yield ArchiveOutput(compressing, hashed)
        except BaseException:
            compressing.abandon()
            raise
        compressing.close()


#: Tries at claiming the part file when others replace it at the same moment (each try is a few system calls).
_CLAIM_TRIES = 5


def _claim(part: Path, final: Path) -> int:
    """The part file, new (0600), under an exclusive ``flock`` held until the archive is in place.

    A part file left by an archive that died (the docs say it can be) holds no
    lock: it is removed and a new one made. One whose lock is held is being
    written by another archive, now: refused. The lock is taken on an open
    file, so after taking it the name must still be that file (another run may
    have replaced a stale one meanwhile); else it is tried again. A name taken
    meanwhile by a finished archive is refused, as before.
    """
    for _ in range(_CLAIM_TRIES):
        fd, fresh = _open_part(part, final)
        try:
            _lock(fd, part, final, fresh=fresh)
            if not _same_file(fd, part):
                os.close(fd)
                continue
        except BaseException:
            os.close(fd)
            raise
        if not fresh:  # stale: its writer is gone (the lock was free); a new file, not its inode (it may be linked)
            _replace_stale(fd, part, final)
            continue
        if os.path.lexists(final):
            _drop(part, True)
            os.close(fd)
            _refuse_existing(final)
        return fd
    raise ArchiveWriteError(f"cannot write the archive {final}: {part} keeps being replaced; is another archive "
                            "writing it?")


def _open_part(part: Path, final: Path) -> tuple[int, bool]:
    """The part file opened for writing: made (True), or the one already there (False), never a link's target."""
    try:
        return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), True
    except FileExistsError:
        pass
    except OSError as error:
        raise ArchiveWriteError(f"cannot write the archive {final}: {error.strerror or error}") from None
    try:  # O_NONBLOCK: a named pipe there must not block the open (it is refused below, not a regular file)
        fd = os.open(part, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return _open_part(part, final)  # removed meanwhile: make it
    except OSError as error:
        raise _leftover(part, final, error.strerror or str(error)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _leftover(part, final, "not a regular file")
    return fd, False


def _lock(fd: int, part: Path, final: Path, *, fresh: bool) -> None:
    """An exclusive ``flock`` on the part file, not waited for. Where the file system has no such locks, a new
    file is written unlocked (as before locks were taken), and an old one is refused: no one can tell whether
    an archive is writing it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ArchiveWriteError(f"cannot write the archive {final}: {part} is being written by another "
                                "'agentledger db archive' right now; wait for it, or choose another --out") from None
    except OSError as error:
        if not fresh:
            raise _leftover(part, final, f"it cannot be locked ({error.strerror or error}) to tell whether an "
                                         "archive is writing it") from None


def _replace_stale(fd: int, part: Path, final: Path) -> None:
    """Remove a part file no archive holds, while holding its lock (so that no other run removes a new one)."""
    try:
        part.unlink()
    except OSError as error:
        raise _leftover(part, final, error.strerror or str(error)) from None
    finally:
        os.close(fd)


def _leftover(part: Path, final: Path, why: str) -> ArchiveWriteError:
    return ArchiveWriteError(f"cannot write the archive {final}: {part} is in the way ({why}); if no "
                             "'agentledger db archive' is running, it is left from one that died: remove it")


def _same_file(fd: int, path: Path) -> bool:
    """Is ``path`` (not following a link) the file open as ``fd``?"""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _publish(part: Path, final: Path) -> None:
    """The finished part file under its final name, never over a file that took the name meanwhile: a hard link
    (which refuses an existing name), then the part's name removed; ``rename`` where links are not supported."""
    try:
        os.link(part, final)
    except FileExistsError:
        raise ArchiveWriteError(f"the archive {final} appeared while it was written: choose another --out "
                                "(nothing was removed from the store)") from None
    except OSError:  # a file system without hard links (EPERM, ENOTSUP, ...): rename, the name checked just before
        _refuse_existing(final)
        os.rename(part, final)
        return
    part.unlink()


def _drop(part: Path, held: bool) -> None:
    """Remove this run's part file (only while it is this run's: its lock still held, the name not handed on)."""
    if held:
        part.unlink(missing_ok=True)


@contextmanager
def _open_regular(path: str) -> Iterator[BinaryIO]:
    """``path`` open for reading, if it is a regular file: a named pipe would block ``verify`` for ever, a device
    never end; either is one line (exit status 1), as a missing file is."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ArchiveDamaged(f"cannot read {path}: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArchiveDamaged(f"cannot read {path}: not a regular file (an archive is a file "
                                 "'agentledger db archive' wrote)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as raw:
        yield raw


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
