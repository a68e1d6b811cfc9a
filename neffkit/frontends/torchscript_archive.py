"""Reading a TorchScript archive (``torch.jit.save``) without running code it should not run.

``torch.jit.load`` unpickles the archive's ``data.pkl`` and ``constants.pkl`` with a C++
unpickler that only builds tensors, storages and the archive's own TorchScript classes, but it
also compiles the archive's TorchScript source and runs a class's ``__setstate__`` while
loading, and that source may call operators that touch files (``torch.from_file``). A ``.pt``
may also be no TorchScript at all: a pickle written by ``torch.save``, which only a full
unpickler reads, and unpickling an untrusted file runs whatever it says.

So the bytes are checked before torch sees them, with the standard library only:

1. the file is a zip whose entries all sit under one folder, with no absolute or ``..`` names,
   no encryption, and a sane total size; a bare pickle or a ``torch.save`` zip (no
   ``constants.pkl``, no ``code/``) is refused, saying what it is and what to save instead;
2. both pickles are read opcode by opcode (never executed): every global they name must be one
   the TorchScript unpickler builds itself, or a class of the archive (``__torch__.``);
3. the TorchScript source may not define ``__setstate__``, call ``torch.from_file`` or use an
   operator namespace other than ``aten``, ``prim`` and ``quantized`` (a Neuron-compiled module
   uses ``neuron``: it loads on a Neuron host only) unless the caller trusts the file
   (``trust_code=True``).

Only then is the file given to ``torch.jit.load`` (on the CPU); any torch error comes back as a
``FrontendError`` naming the file.
"""

from __future__ import annotations

import os
import pickletools
import posixpath
import re
import zipfile
from dataclasses import dataclass

from neffkit.errors import FrontendError

#: Globals the TorchScript unpickler builds itself (torch/csrc/jit/serialization/unpickler.cpp);
#: anything else must name a class compiled from the archive's own code (``__torch__.``).
_GLOBALS = frozenset(
    {
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch._tensor._rebuild_from_type_v2",
        "torch.jit._pickle.build_intlist",
        "torch.jit._pickle.build_tensorlist",
        "torch.jit._pickle.build_doublelist",
        "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensor_from_id",
        "torch.jit._pickle.restore_type_tag",
        "collections.OrderedDict",
        "builtins.complex",
        "torch.device",
        "__main__.TensorID",
        "__main__.IntList",
        "__main__.LiteralTensor",
    }
)
_STORAGE = re.compile(r"^torch\.[A-Za-z0-9]*Storage$")
_QSCHEME = re.compile(r"^torch\.per_(tensor|channel)_(affine|symmetric)(_float_qparams)?$")
#: Opcodes that name or import something by itself: refused outright (EXT* read a registry).
_FORBIDDEN_OPS = frozenset({"EXT1", "EXT2", "EXT4", "INST"})
#: Archives larger than this (uncompressed) are refused: a zip bomb, not a model.
MAX_TOTAL_BYTES = 64 * 1024**3
#: Operator namespaces TorchScript source may call without ``trust_code``.
_SAFE_NAMESPACES = frozenset({"aten", "prim", "quantized"})


@dataclass(frozen=True)
class ArchiveInfo:
    """What the checks found: the archive's top folder, its entries and its total size."""

    path: str
    top: str
    entries: int
    total_bytes: int


def check_archive(path: str | os.PathLike, *, trust_code: bool = False) -> ArchiveInfo:
    """Checks that ``path`` is a TorchScript archive that is safe to give ``torch.jit.load``.

    Raises:
        FrontendError: the file is missing, not a TorchScript archive (a pickle, a
            ``torch.save`` checkpoint, something else), malformed, or (without ``trust_code``)
            its code does what loading should not.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise FrontendError(f"{name}: cannot read the file ({e.strerror or e})") from e
    if head[:1] == b"\x80":  # a pickle of protocol 2 or later
        raise FrontendError(
            f"{name}: a pickle (as torch.save writes), not a TorchScript archive; neffkit does "
            "not unpickle files, since that runs whatever they contain. Save the module with "
            "torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, inputs), path)"
        )
    if head != b"PK\x03\x04":
        raise FrontendError(f"{name}: not a TorchScript archive (not a zip file)")
    try:
        with zipfile.ZipFile(name) as z:
            return _check_zip(name, z, trust_code)
    except zipfile.BadZipFile as e:
        raise FrontendError(f"{name}: not a TorchScript archive (a broken zip: {e})") from e


def _check_zip(name: str, z: zipfile.ZipFile, trust_code: bool) -> ArchiveInfo:
    infos = z.infolist()
    if not infos:
        raise FrontendError(f"{name}: an empty zip, not a TorchScript archive")
    tops = set()
    total = 0
    for info in infos:
        entry = info.filename
        if entry.startswith("/") or "\\" in entry or ".." in entry.split("/"):
            raise FrontendError(f"{name}: entry {entry!r} points outside the archive")
        if info.flag_bits & 0x1:
            raise FrontendError(f"{name}: entry {entry!r} is encrypted")
        tops.add(entry.split("/", 1)[0])
        total += info.file_size
    if len(tops) != 1:
        raise FrontendError(f"{name}: entries under {len(tops)} folders; an archive has one")
    if total > MAX_TOTAL_BYTES:
        raise FrontendError(f"{name}: {total} bytes uncompressed, more than {MAX_TOTAL_BYTES}")
    (top,) = tops
    names = set(z.namelist())
    if f"{top}/data.pkl" not in names:
        raise FrontendError(f"{name}: not a TorchScript archive (no {top}/data.pkl)")
    code = [n for n in names if n.startswith(f"{top}/code/")]
    if f"{top}/constants.pkl" not in names or not code:
        raise FrontendError(
            f"{name}: a torch.save checkpoint (a state_dict or a pickled module), not a "
            "TorchScript archive; neffkit does not unpickle it. Save the module with "
            "torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, inputs), path)"
        )
    for pickle_name in ("data.pkl", "constants.pkl"):
        _check_pickle(name, f"{top}/{pickle_name}", z.read(f"{top}/{pickle_name}"))
    if not trust_code:
        for entry in sorted(code):
            if entry.endswith(".py"):
                _check_code(name, entry, z.read(entry).decode("utf-8", errors="replace"))
    return ArchiveInfo(name, top, len(infos), total)


def _check_pickle(name: str, entry: str, data: bytes) -> None:
    """Every global the pickle names is one the TorchScript unpickler builds, or the
    archive's own class; read opcode by opcode, never run."""
    strings: list[str | None] = []  # what the last opcodes pushed (for STACK_GLOBAL)
    memo: dict[int, str | None] = {}
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in _FORBIDDEN_OPS:
                raise FrontendError(f"{name}: {entry} uses pickle opcode {op.name}; refusing")
            if op.name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                _check_global(name, entry, module, attr)
            elif op.name == "STACK_GLOBAL":
                if len(strings) < 2 or strings[-1] is None or strings[-2] is None:
                    raise FrontendError(f"{name}: {entry} names a global it builds; refusing")
                _check_global(name, entry, strings[-2], strings[-1])  # type: ignore[arg-type]
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                strings.append(str(arg))
            elif op.name in ("MEMOIZE",):
                memo[len(memo)] = strings[-1] if strings else None
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = strings[-1] if strings else None
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                strings.append(memo.get(int(arg)))
            else:
                strings.append(None)
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - pickletools raises ValueError and others
        raise FrontendError(f"{name}: {entry} is not a readable pickle ({e})") from e


def _check_global(name: str, entry: str, module: str, attr: str) -> None:
    full = f"{module}.{attr}"
    if full in _GLOBALS or _STORAGE.match(full) or _QSCHEME.match(full):
        return
    if module == "__torch__" or module.startswith("__torch__."):
        return
    raise FrontendError(
        f"{name}: {entry} refers to {full}, which is not a TorchScript type; refusing to load "
        "(a TorchScript archive only holds tensors and its own classes)"
    )


_SETSTATE = re.compile(r"^\s*def __setstate__\s*\(", re.M)
_FROM_FILE = re.compile(r"\bfrom_file\s*\(")
#: an operator call: ``ops.ns.op`` or ``torch.ops.ns.op``, not a module path that holds ``.ops.``
_NAMESPACE = re.compile(r"(?:(?<![\w.])torch\.|(?<![\w.]))ops\.([A-Za-z_][A-Za-z0-9_]*)\.")


def _check_code(name: str, entry: str, text: str) -> None:
    """The archive's TorchScript source runs at load (``__setstate__``) and may call any
    registered operator: refuse what reads files or needs foreign operators."""
    where = posixpath.basename(entry)
    advice = " (pass trust_code=True, or --trust-code, for a file you trust)"
    if _SETSTATE.search(text):
        raise FrontendError(f"{name}: {where} defines __setstate__, code that runs while "
                            f"loading{advice}")  # fmt: skip
    if _FROM_FILE.search(text):
        raise FrontendError(f"{name}: {where} calls from_file, which reads any file{advice}")
    for ns in sorted(set(_NAMESPACE.findall(text)) - _SAFE_NAMESPACES):
        extra = (
            "; a Neuron-compiled module loads only on a Neuron host with torch_neuron(x) imported"
            if ns == "neuron"
            else ""
        )
        raise FrontendError(f"{name}: {where} calls operators of namespace '{ns}'{extra}{advice}")


def load_archive(path: str | os.PathLike, *, trust_code: bool = False) -> object:
    """``torch.jit.load`` of a checked archive, on the CPU.

    Returns:
        The ``torch.jit.ScriptModule``.

    Raises:
        FrontendError: the checks of ``check_archive`` fail, or torch cannot load the file.
    """
    info = check_archive(path, trust_code=trust_code)
    import torch  # noqa: PLC0415 - torch is only needed once a TorchScript file is read

    try:
        return torch.jit.load(info.path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError and others
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(
            f"{info.path}: torch cannot load this TorchScript archive: {first}"
        ) from e
