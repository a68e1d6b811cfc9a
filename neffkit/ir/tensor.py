"""Constant tensors: numpy-backed, decoded lazily, content-hashed once for deduplication.

A ``Tensor`` is built from a numpy array, from an ONNX ``TensorProto`` (decoded only when the
values are asked for) or from an external-data reference (read only when needed). The content
hash covers dtype, shape and bytes, so two tensors with equal hashes are equal up to a hash
collision; callers that merge tensors confirm with :meth:`Tensor.equals`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from neffkit.errors import FrontendError
from neffkit.ir.external import ExternalData, resolve_external

__all__ = ["ExternalData", "Tensor", "dtype_name", "np_dtype", "onnx_dtype", "resolve_external"]

_NP_CACHE: dict[int, np.dtype] = {}


def np_dtype(elem_type: int) -> np.dtype:
    """Maps an ONNX element type (``TensorProto.FLOAT`` ...) to its numpy dtype."""
    dt = _NP_CACHE.get(elem_type)
    if dt is None:
        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
        _NP_CACHE[elem_type] = dt
    return dt


def onnx_dtype(dtype: Any) -> int:
    """Maps a numpy dtype (or anything ``np.dtype`` accepts) to its ONNX element type."""
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O"):
        return TensorProto.STRING
    return onnx.helper.np_dtype_to_tensor_dtype(dt)


def dtype_name(elem_type: int | None) -> str:
    """Returns the ONNX spelling of an element type (``float``, ``int64`` ...)."""
    if elem_type is None:
        return "?"
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"dtype{elem_type}"


#: Bytes per element by ONNX dtype (0: a 4-bit type, two a byte), filled on first use: the
#: pass manager sums constant sizes after every pass.
_ITEMSIZE: dict[int, int] = {}


#: Bits per element of the types stored packed (several values a byte).
PACKED_BITS: dict[int, int] = {
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.FLOAT4E2M1: 4,
    TensorProto.INT2: 2,
    TensorProto.UINT2: 2,
}


def _itemsize(dtype: int) -> int:
    if dtype in PACKED_BITS:
        item = 0
    else:
        try:
            item = np_dtype(dtype).itemsize
        except Exception:  # noqa: BLE001 - exotic types have no numpy itemsize
            item = 1
    _ITEMSIZE[dtype] = item
    return item


class Tensor:
    """An immutable constant tensor.

    Build it from a numpy array (``Tensor(arr)``) or with :meth:`from_proto`. The array, the
    protobuf form and the content hash are each computed at most once.
    """

    __slots__ = ("name", "dtype", "shape", "_array", "_proto", "_external", "_hash")

    def __init__(self, array: Any = None, name: str = "") -> None:
        self.name = name
        self._proto: TensorProto | None = None
        self._external: ExternalData | None = None
        self._hash: bytes | None = None
        if array is None:
            self._array = None
            self.dtype: int = TensorProto.UNDEFINED
            self.shape: tuple[int, ...] = ()
            return
        arr = np.asarray(array)
        if arr.dtype.kind in ("U", "S"):
            arr = arr.astype(object)
        self._array = arr
        self.dtype = onnx_dtype(arr.dtype)
        self.shape = tuple(int(d) for d in arr.shape)

    @classmethod
    def from_proto(cls, proto: TensorProto, base_dir: str | None = None) -> Tensor:
        """Wraps a TensorProto without decoding it; external data is located, not read.

        Raises:
            FrontendError: the external-data location escapes ``base_dir`` or is missing.
        """
        t = cls.__new__(cls)
        t.name = proto.name
        t.dtype = proto.data_type
        t.shape = tuple(proto.dims)
        t._array = None
        t._hash = None
        t._external = None
        t._proto = proto
        if t.shape and min(t.shape) < 0:
            raise FrontendError(f"tensor '{proto.name}' has a negative dimension {list(t.shape)}")
        if proto.data_location == TensorProto.EXTERNAL:
            if t.dtype in (TensorProto.STRING, TensorProto.UNDEFINED):
                raise FrontendError(
                    f"tensor '{proto.name}' of type {dtype_name(t.dtype)} stores its data "
                    "externally; only numeric tensors can (ONNX keeps strings inline)"
                )
            # the byte range must match the stored size exactly (packed types included)
            t._external = resolve_external(proto, base_dir, t.nbytes)
        return t

    # -- values -----------------------------------------------------------------------------

    @property
    def is_external(self) -> bool:
        """True while the bytes still live in an external file that has not been read."""
        return self._array is None and self._external is not None

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Size of the values in bytes (strings count their encoded length)."""
        if self.dtype == TensorProto.STRING:
            return int(sum(len(s) for s in self.numpy().reshape(-1)))
        item = _ITEMSIZE.get(self.dtype)
        if item is None:
            item = _itemsize(self.dtype)
        if item == 0:  # packed types: several values a byte
            return (self.size * PACKED_BITS[self.dtype] + 7) // 8
        return self.size * item

    @property
    def external_path(self) -> str | None:
        """The file the bytes live in, for a tensor stored as external data."""
        return None if self._external is None else self._external.path

    def numpy(self) -> np.ndarray:
        """The values as a numpy array (decoded or read from external data on first use).

        Raises:
            FrontendError: the stored data does not match the tensor's dtype and dims.
        """
        if self._array is None:
            try:
                self._array = self._decode()
            except (ValueError, TypeError) as e:
                raise FrontendError(
                    f"tensor '{self.name}' ({dtype_name(self.dtype)}{list(self.shape)}) holds "
                    f"data that does not fit its type and dims: {e}"
                ) from e
        return self._array

    def _decode(self) -> np.ndarray:
        proto = self._proto
        assert proto is not None
        if self._external is not None:
            return self._read_external()
        return numpy_helper.to_array(proto)

    def _plain(self) -> bool:
        """The stored bytes are the numpy array's bytes (not a packed or string type)."""
        if self.dtype in (TensorProto.STRING, TensorProto.UNDEFINED):
            return False
        item = _ITEMSIZE.get(self.dtype)
        if item is None:
            item = _itemsize(self.dtype)
        try:
            return item > 0 and np_dtype(self.dtype).itemsize == item
        except Exception:  # noqa: BLE001 - a dtype numpy has no form for
            return False

    def _read_external(self) -> np.ndarray:
        """A new array read from the external file (checked again at this moment)."""
        ext = self._external
        assert ext is not None and ext.length is not None
        if self._plain():
            arr = np.empty(self.shape, dtype=np_dtype(self.dtype))
            ext.read_into(memoryview(arr.reshape(-1)).cast("B"))  # type: ignore[arg-type]  # numpy arrays are buffers; its stubs do not say so
            return arr
        p = TensorProto()
        p.name = self.name
        p.data_type = self.dtype
        p.dims.extend(self.shape)
        p.raw_data = b"".join(ext.chunks())
        return numpy_helper.to_array(p)

    def fresh_numpy(self) -> np.ndarray:
        """A writable array the caller owns (external data is read anew, not kept here).

        Backends that keep their own copy of the weights use it so the bytes are not held
        twice (once cached on the tensor, once in the backend).
        """
        if self._array is None and self._external is not None:
            try:
                return self._read_external()
            except (ValueError, TypeError) as e:
                raise FrontendError(
                    f"tensor '{self.name}' ({dtype_name(self.dtype)}{list(self.shape)}) holds "
                    f"data that does not fit its type and dims: {e}"
                ) from e
        return np.array(self.numpy(), copy=True)

    def byte_chunks(self) -> Iterator[bytes | memoryview]:
        """The raw little-endian bytes, streamed from the file for unread external data."""
        if self._array is None and self._external is not None and self._plain():
            yield from self._external.chunks()
            return
        p = self._proto
        if self._array is None and p is not None and self._external is None and p.raw_data:
            yield p.raw_data
            return
        arr = self.numpy()
        if self._plain() and sys.byteorder == "little":
            flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
            yield memoryview(flat)  # type: ignore[arg-type]  # no copy; numpy stubs lack Buffer
            return
        yield numpy_helper.from_array(arr).raw_data

    def to_proto(self) -> TensorProto:
        """The TensorProto form; reuses the original proto when the tensor came from one."""
        if self._proto is not None and self._external is None:
            if self._proto.name != self.name:
                p = TensorProto()
                p.CopyFrom(self._proto)
                p.name = self.name
                return p
            return self._proto
        arr = self.numpy()
        p = numpy_helper.from_array(arr, self.name)
        return p

    # -- identity ---------------------------------------------------------------------------

    def content_hash(self) -> bytes:
        """A digest of (dtype, shape, bytes), computed once and cached.

        Unread external data is hashed in chunks straight from the file, so hashing a large
        weight neither loads it nor keeps it.
        """
        if self._hash is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((self.dtype, self.shape)).encode())
            if self.is_external and self._plain():
                for piece in self._external.chunks():  # type: ignore[union-attr]
                    h.update(piece)
            else:
                h.update(self._raw_bytes())
            self._hash = h.digest()
        return self._hash

    def _raw_bytes(self) -> bytes:
        p = self._proto
        if self._array is None and p is not None and self._external is None and p.raw_data:
            return p.raw_data
        arr = self.numpy()
        if arr.dtype == object:
            return b"\0".join(s if isinstance(s, bytes) else str(s).encode() for s in arr.flat)
        return np.ascontiguousarray(arr).tobytes()

    def _compare_chunks(self) -> Iterator[bytes]:
        if self.is_external and self._plain():
            return self._external.chunks()  # type: ignore[union-attr]
        return iter((self._raw_bytes(),))

    def equals(self, other: Tensor) -> bool:
        """Byte-exact equality of dtype, shape and values (confirms a hash match).

        External data is compared chunk by chunk from the files, without loading it.
        """
        if self is other:
            return True
        if self.dtype != other.dtype or self.shape != other.shape:
            return False
        if not (self.is_external or other.is_external):
            return self._raw_bytes() == other._raw_bytes()
        return _same_stream(self._compare_chunks(), other._compare_chunks())

    def __repr__(self) -> str:
        return f"Tensor({dtype_name(self.dtype)}{list(self.shape)}, name={self.name!r})"


def _same_stream(a: Iterator[bytes], b: Iterator[bytes]) -> bool:
    """Whether two byte streams cut into different pieces hold the same bytes."""
    left = memoryview(b"")
    right = memoryview(b"")
    while True:
        if not left:
            left = memoryview(next(a, b""))
        if not right:
            right = memoryview(next(b, b""))
        if not left or not right:
            return not left and not right
        n = min(len(left), len(right))
        if left[:n] != right[:n]:
            return False
        left = left[n:]
        right = right[n:]
