"""External tensor data: located once at load, read later without leaving the model's folder.

A model names its external files by relative location. Loading checks the location (no
absolute path, no ``..``, no link out of the folder) and the byte range, but the bytes are
read much later (a pass, the exporter, a backend). Between the two the file could be replaced
by a link to somewhere else, so every read opens the file again one path component at a time
from the model's folder, refusing links (``O_NOFOLLOW``), and checks that it reached a regular
file. Reads stream in chunks so a 2 GB weight is never held twice.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator

from onnx import TensorProto

from neffkit.errors import FrontendError

#: Bytes read at a time when hashing, comparing or copying external data.
CHUNK = 16 * 1024 * 1024

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class ExternalData:
    """Where an external tensor's bytes live: a checked file inside ``base`` and a byte range.

    Attributes:
        path: the file's resolved absolute path (for messages and reports).
        offset: first byte of the tensor in the file.
        length: number of bytes (the tensor's size; filled in at load when the model omits it).
        base: the model's folder (resolved); every read re-checks that it stays inside.
        name: the tensor's name, for messages.
    """

    __slots__ = ("path", "offset", "length", "base", "name")

    def __init__(
        self,
        path: str,
        offset: int = 0,
        length: int | None = None,
        base: str | None = None,
        name: str = "",
    ) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.base = base if base is not None else os.path.dirname(path)
        self.name = name

    def open(self) -> io.BufferedReader:
        """Opens the file for reading, refusing any link on the way (see the module doc).

        Raises:
            FrontendError: the file left the folder, became a link or is no regular file.
        """
        return os.fdopen(_open_inside(self.base, self.path, self.name), "rb")

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The tensor's bytes in pieces of at most ``size`` bytes."""
        assert self.length is not None
        with self.open() as f:
            f.seek(self.offset)
            left = self.length
            while left > 0:
                piece = f.read(min(size, left))
                if not piece:
                    raise FrontendError(
                        f"tensor '{self.name}': external data file {self.path} is shorter than "
                        f"when the model was loaded ({left} of {self.length} bytes missing)"
                    )
                left -= len(piece)
                yield piece

    def read_into(self, buf: memoryview) -> None:
        """Fills ``buf`` (exactly ``length`` bytes) from the file, with no intermediate copy."""
        with self.open() as f:
            f.seek(self.offset)
            done = 0
            while done < len(buf):
                n = f.readinto(buf[done:])
                if not n:
                    raise FrontendError(
                        f"tensor '{self.name}': external data file {self.path} is shorter than "
                        f"when the model was loaded (expected {len(buf)} bytes at offset "
                        f"{self.offset}, got {done})"
                    )
                done += n


def _open_inside(base: str, path: str, name: str) -> int:
    """An fd for ``path`` opened from ``base`` one component at a time, following no link."""
    where = f"tensor '{name}'"
    real = os.path.realpath(path)
    if real != path or os.path.commonpath([base, real]) != base:
        raise FrontendError(
            f"{where}: external data file {path} now resolves to {real}, which is not the "
            f"file checked when the model was loaded (inside {base}); refusing to read it"
        )
    parts = os.path.relpath(real, base).split(os.sep)
    if os.open not in os.supports_dir_fd:  # no openat (Windows): the realpath check above
        fd = os.open(real, os.O_RDONLY | _BINARY)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FrontendError(f"{where}: external data {path} is not a regular file")
        return fd
    try:
        fd = os.open(base, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as e:
        raise FrontendError(f"{where}: cannot open the model's folder {base}: {e}") from e
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | (_BINARY if last else _DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                raise FrontendError(
                    f"{where}: cannot open external data file {path} without following a "
                    f"link ({e.strerror}); refusing to read it"
                ) from e
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FrontendError(f"{where}: external data {path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def resolve_external(
    proto: TensorProto, base_dir: str | None, nbytes: int | None = None
) -> ExternalData:
    """Validates an external-data reference and returns its checked location.

    The location must be a relative path that stays inside the model's folder after links
    are resolved, and the byte range must lie inside the file and match the tensor's size
    (``nbytes``, when the dtype has a fixed item size); anything else is refused so a model
    cannot make us read arbitrary files or bytes.
    """
    info = {e.key: e.value for e in proto.external_data}
    location = info.get("location", "")
    where = f"tensor '{proto.name}'"
    if base_dir is None:
        raise FrontendError(
            f"{where} stores its data externally ('{location}') but the model was not loaded "
            "from a file, so there is no folder to resolve it against"
        )
    if not location:
        raise FrontendError(f"{where} has external data with no location")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location[:3]:
        raise FrontendError(f"{where}: external data location '{location}' is an absolute path")
    norm = os.path.normpath(location)
    if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
        raise FrontendError(
            f"{where}: external data location '{location}' points outside the model's folder"
        )
    base_real = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(base_real, norm))
    if os.path.commonpath([base_real, full]) != base_real:
        raise FrontendError(
            f"{where}: external data location '{location}' resolves (through a link) to "
            f"{full}, outside the model's folder {base_real}"
        )
    if not os.path.isfile(full):
        raise FrontendError(f"{where}: external data file '{location}' not found in {base_real}")
    offset = _int_field(info, "offset", where, location)
    length = _int_field(info, "length", where, location)
    size = os.path.getsize(full)
    if offset is None:
        offset = 0
    if length is None:
        length = nbytes if nbytes is not None else size - offset
    if nbytes is not None and length != nbytes:
        raise FrontendError(
            f"{where}: external data in '{location}' has length {length} but the tensor's "
            f"dtype and dims need {nbytes} bytes"
        )
    if offset > size or offset + length > size:
        raise FrontendError(
            f"{where}: external data range [{offset}, {offset + length}) lies beyond the end "
            f"of '{location}' ({size} bytes); the file may be truncated"
        )
    return ExternalData(full, offset, length, base_real, proto.name)


def _int_field(info: dict[str, str], key: str, where: str, location: str) -> int | None:
    text = info.get(key)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise FrontendError(
            f"{where}: external data {key} '{text}' for '{location}' is not an integer"
        ) from None
    if value < 0:
        raise FrontendError(f"{where}: external data {key} {value} for '{location}' is negative")
    return value
