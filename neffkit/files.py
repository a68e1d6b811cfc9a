"""How neffkit writes files: collisions refused, writes atomic, temporary files cleaned up.

Every file neffkit writes goes through this module:

* **Collisions are refused first.** :func:`check_writes` compares every path a run will write
  with every file it reads (the model, all its external data files, an inputs file) and with
  the run's other outputs, by ``os.path.samefile`` (hard links and symbolic links included) or,
  for a path that does not exist yet, by its real path. A model output also claims the data
  files it may write or remove: ``<model>.data`` and ``<model>.<16 hex digits>.data``.
* **Single files** (:func:`atomic_write`, :func:`write_bytes`, :func:`write_text`) are written
  to a temporary file beside the destination, flushed to disk and renamed over it.
* **A model and its external data** are replaced as a pair by :func:`replace_model_pair`, so
  that a kill at any moment leaves either the old pair or the new pair (see its docstring).
* **Temporary files** are named ``.neffkit-<pid>-<random>.tmp`` and removed on every exit path:
  exceptions, and SIGINT / SIGTERM while :func:`interruptible` is active (the CLI keeps it
  active for the whole command). A SIGKILL leaves them behind; the next write into that folder
  removes the ones whose process is gone (:func:`remove_stale_temps`).
* **Permissions** follow the umask (``0o666 & ~umask``) as for any newly created file, not the
  ``0o600`` that ``tempfile.mkstemp`` gives.

This module imports only the standard library and :mod:`neffkit.errors`, so any layer can use
it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from neffkit.errors import NeffkitError

PathLike = str | os.PathLike

TEMP_PREFIX = ".neffkit-"
TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"^\.neffkit-(\d+)-[A-Za-z0-9_]+\.tmp$")
_DATA_ID_RE = r"\.[0-9a-f]{16}\.data"


class FileCollisionError(NeffkitError):
    """An output path is a file the run reads, another output, a directory or in no folder."""


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler of :func:`interruptible`, so cleanup code runs.

    A ``KeyboardInterrupt`` subclass: ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


# -- collisions -------------------------------------------------------------------------------


class Write(NamedTuple):
    """One path a run will write.

    Attributes:
        path: the destination.
        role: what it is, for messages ("the output model", "the report").
        model: an ONNX model: it also claims ``<path>.data`` and ``<path>.<id>.data``, the
            external data files a model write may create or remove.
    """

    path: str
    role: str
    model: bool = False


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: same inode when both exist, else same real path."""
    a, b = os.fspath(a), os.fspath(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def is_data_file_of(
    model: PathLike, path: PathLike, *, existing: Sequence[str] | None = None
) -> bool:
    """Whether ``path`` is a name a write of ``model`` may use for its external data.

    Those are ``<model>.data`` and ``<model>.<16 hex digits>.data`` in the model's folder
    (after resolving links, so another name of the same file counts too). ``existing``: those
    names as found in the folder, for a caller that checks many paths against one model (the
    folder is then listed once, not once per path).
    """
    model = os.path.abspath(os.fspath(model))
    m_dir = os.path.realpath(os.path.dirname(model))
    m_base = os.path.basename(model)
    pattern = re.compile(re.escape(m_base) + _DATA_ID_RE)
    path = os.path.abspath(os.fspath(path))
    # The path as given and, for a link, the file it points to.
    for p in (path, os.path.realpath(path)):
        p_dir, p_base = os.path.split(p)
        if os.path.realpath(p_dir) != m_dir:
            continue
        if p_base == m_base + ".data" or pattern.fullmatch(p_base):
            return True
    # A hard link with another name to one of those files.
    if existing is None:
        existing = _data_names_in(m_dir, m_base)
    return any(same_file(os.path.join(m_dir, n), path) for n in existing)


def _data_names_in(folder: str, base: str) -> list[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern = re.compile(re.escape(base) + _DATA_ID_RE)
    return [n for n in names if n == base + ".data" or pattern.fullmatch(n)]


def _collision(
    w: Write, path: str, role: str, data_names: Sequence[str] | None = None
) -> str | None:
    """The message when ``w`` would overwrite ``path`` (whose role is ``role``), else None."""
    if same_file(w.path, path):
        if w.path == path:
            return f"{path}: is {role} and {w.role}; refusing to overwrite it"
        return f"{w.path} ({w.role}) is {path} ({role}); refusing to overwrite it"
    if w.model and is_data_file_of(w.path, path, existing=data_names):
        return (
            f"{path} ({role}) is a name the external data of {w.path} ({w.role}) may use; "
            "refusing to overwrite it"
        )
    return None


def check_writes(
    writes: Sequence[Write], reads: Mapping[str | None, str], *, folders_exist: bool = True
) -> None:
    """Refuses a run whose outputs would overwrite what it reads, or each other.

    Args:
        writes: every path the run will write.
        reads: path -> role of every file the run reads; ``None`` or empty paths are ignored.
        folders_exist: also refuse an output whose folder does not exist (the caller does not
            create it).

    Raises:
        FileCollisionError: one line naming both paths and their roles; nothing was written.
    """
    for w in writes:
        if os.path.isdir(w.path):
            raise FileCollisionError(f"{w.path}: is a directory, expected a file name ({w.role})")
        folder = os.path.dirname(os.path.abspath(w.path))
        if folders_exist and not os.path.isdir(folder):
            raise FileCollisionError(f"{w.path}: the folder {folder} does not exist")
        # a model output's data names in its folder, listed once for all the reads
        names = None
        if w.model:
            model = os.path.abspath(w.path)
            names = _data_names_in(os.path.realpath(folder), os.path.basename(model))
        for src, role in reads.items():
            message = _collision(w, os.fspath(src), role, names) if src else None
            if message:
                raise FileCollisionError(message)
    for i, w in enumerate(writes):
        for other in writes[i + 1 :]:
            message = _collision(w, other.path, other.role) or _collision(other, w.path, w.role)
            if message:
                raise FileCollisionError(message)


# -- signals ----------------------------------------------------------------------------------

_lock = threading.Lock()
_critical = 0
_pending: int | None = None


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _on_signal(signum: int, frame: object) -> None:
    global _pending
    if _critical:
        _pending = signum  # raised when the critical section ends
        return
    _raise_for(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated` for the duration.

    So ``finally`` blocks remove temporary files on those signals too. Only default handlers
    are replaced (a program's own handlers are left alone), only in the main thread, and they
    are put back on exit. Nesting is fine.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, None)):
        current = signal.getsignal(sig)
        if current is _on_signal or current not in (default, signal.SIG_DFL):
            continue
        previous[sig] = current
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Holds SIGINT / SIGTERM (from :func:`interruptible`) back until the block is done."""
    global _critical, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers run in the main thread only
        return
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
        signum = _pending if not _critical else None
        if signum is not None:
            _pending = None
            _raise_for(signum)


# -- temporary files --------------------------------------------------------------------------


def file_mode() -> int:
    """The mode a newly created file gets under the current umask (``0o666 & ~umask``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:  # no /proc: read it by setting it (not thread-safe, hence the lock)
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, another user's
        return True
    return True


def remove_stale_temps(folder: PathLike) -> list[str]:
    """Removes neffkit temporary files in ``folder`` whose writing process no longer runs.

    Such files are left by a killed run (SIGKILL, power loss); their name carries the pid of
    the writer, so a file is removed only when that pid is not alive on this machine.

    Returns:
        the paths removed.
    """
    folder = os.fspath(folder)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        path = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


def new_temp(folder: PathLike) -> tuple[int, str]:
    """Creates an empty temporary file in ``folder`` (after removing stale ones).

    Returns:
        an open descriptor and the path. The mode follows the umask.
    """
    folder = os.fspath(folder)
    remove_stale_temps(folder)
    prefix = f"{TEMP_PREFIX}{os.getpid()}-"
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


class TempFiles:
    """Temporary files beside an output, removed on exit unless renamed into place.

    A context manager: the ``with`` block also runs under :func:`interruptible`, so SIGINT and
    SIGTERM remove the files too.
    """

    def __init__(self, folder: PathLike) -> None:
        self.folder = os.fspath(folder)
        self.paths: list[str] = []
        self._signals = interruptible()

    def new(self) -> tuple[int, str]:
        """A new temporary file (descriptor, path) that this object will remove."""
        fd = -1
        try:
            with _deferred_signals():  # a signal between creating and tracking it would leak it
                fd, path = new_temp(self.folder)
                self.paths.append(path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd, path

    def rename(self, tmp: str, dest: str) -> None:
        """Renames ``tmp`` to ``dest`` (atomic) and stops tracking it."""
        os.replace(tmp, dest)
        self.paths.remove(tmp)

    def __enter__(self) -> TempFiles:
        self._signals.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            try:
                with _deferred_signals():
                    self._remove_tracked()
            except BaseException:
                # a signal that lands before the held-back section begins (while the context
                # manager is being entered) skips its body: remove the files anyway
                self._remove_tracked()
                raise
        finally:
            self._signals.__exit__(None, None, None)

    def _remove_tracked(self) -> None:
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.paths.clear()


def fsync_dir(folder: PathLike) -> None:
    """Flushes a folder's entries (renames, removals) to disk, where the platform allows."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it over ``path``.

    The temporary file is flushed to disk before the rename and removed on failure,
    ``KeyboardInterrupt`` and SIGTERM; the result has the umask's mode.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    with TempFiles(folder) as temps:
        fd, tmp = temps.new()
        os.close(fd)
        write(tmp)
        os.chmod(tmp, file_mode())  # in case ``write`` made the file anew
        _fsync_path(tmp)
        with _deferred_signals():
            temps.rename(tmp, path)
            fsync_dir(folder)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def write_text(path: PathLike, text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    write_bytes(path, text.encode("utf-8"))


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- a model and its external data ------------------------------------------------------------


def new_data_name(model: PathLike) -> str:
    """The file name (no folder) for a model's new external data: a name not in use.

    ``<model>.data`` when no such file exists, else ``<model>.<16 random hex digits>.data``, so
    the data file the existing model references is never overwritten.
    """
    folder, base = os.path.split(os.path.abspath(os.fspath(model)))
    name = base + ".data"
    while os.path.lexists(os.path.join(folder, name)):
        name = f"{base}.{secrets.token_hex(8)}.data"
    return name


def replace_model_pair(
    temps: TempFiles,
    path: PathLike,
    model_tmp: str,
    data_tmp: str | None = None,
    data_name: str | None = None,
    *,
    old_references: Callable[[], Iterable[str]] = lambda: (),
    keep: Iterable[str] = (),
) -> None:
    """Puts a written model (and its external data) in place of the old ones.

    The scheme, so that a kill at any moment leaves the old pair or the new pair:

    1. the caller has written the new data under a name no file has (:func:`new_data_name`)
       and the model that references it, each to a temporary file in ``temps`` (not yet
       flushed: this function fsyncs both);
    2. the data file is renamed to its name and the folder flushed: the old model does not
       reference that name, so the old pair is still whole;
    3. the model is renamed over ``path`` (the atomic switch) and the folder flushed;
    4. only then are the old data files removed: ``<model>.data`` when the old model
       referenced it (``old_references``, asked before the switch), and every
       ``<model>.<16 hex>.data`` the new model does not reference (those names are neffkit's
       own; this also removes one orphaned by a kill between steps 2 and 3). Files in ``keep``
       (what the run reads) are never removed.

    SIGINT / SIGTERM are held back during steps 2-4. A kill before step 3 leaves the old pair
    (plus, between steps 2 and 3, an unreferenced new data file); after it, the new pair.

    Args:
        temps: the ``TempFiles`` holding the temporary files.
        path: the model's destination.
        model_tmp: the temporary file holding the serialized model.
        data_tmp: the temporary file holding its external data, if any.
        data_name: the name (in ``path``'s folder) the model references for its data.
        old_references: returns the absolute paths of the external data files the model now at
            ``path`` references (called only when ``<model>.data`` exists).
        keep: paths never to remove.
    """
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    data_path = os.path.join(folder, data_name) if data_name else None
    legacy = os.path.join(folder, base + ".data")
    old_refs: set[str] = set()
    if data_path != legacy and os.path.lexists(legacy):
        old_refs = {os.path.realpath(p) for p in old_references()}
    for tmp in (data_tmp, model_tmp):
        if tmp is not None:
            _fsync_path(tmp)
    keep = [os.fspath(k) for k in keep]
    with _deferred_signals():
        if data_tmp is not None and data_path is not None:
            temps.rename(data_tmp, data_path)
            temps.paths.append(data_path)  # removed again if the switch does not happen
            fsync_dir(folder)
        temps.rename(model_tmp, path)
        if data_path is not None and data_tmp is not None:
            temps.paths.remove(data_path)
        fsync_dir(folder)
        removed = False
        for name in _data_names_in(folder, base):
            p = os.path.join(folder, name)
            if p == data_path or any(same_file(p, k) for k in keep):
                continue
            if name == base + ".data" and os.path.realpath(p) not in old_refs:
                continue  # not neffkit's name alone, and the old model did not use it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
                removed = True
        if removed:
            fsync_dir(folder)
