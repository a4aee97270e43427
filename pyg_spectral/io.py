"""Crash-safe files: every file the library writes (encoding caches,
checkpoints) goes to a temporary name in the same directory and is renamed
over the target, so a process killed mid-write leaves the previous file (or
none), never a truncated one; readers turn a corrupt file into an error that
names it and says what to do."""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
import types
import zipfile
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import torch

# mkstemp creates files readable by the owner only; a cache shared by a group
# should get the permissions a plain open() would give
_UMASK = os.umask(0)
os.umask(_UMASK)

# what torch.load raises on a truncated, empty or foreign file
_CORRUPT = (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, IndexError, KeyError, TypeError, UnicodeDecodeError)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    r"""Writes :obj:`obj` with :func:`torch.save` to :obj:`path` through a
    temporary file in the same directory, flushed to disk and renamed over
    :obj:`path` (:func:`os.replace`, atomic on POSIX and Windows): a reader
    sees the old file or the new one, and an interrupted write leaves no
    partial file behind. Creates the parent directory. Errors (e.g. a
    read-only directory) propagate after the temporary file is removed."""
    _atomic_write(path, lambda f: torch.save(obj, f), 'wb')


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    r"""Writes :obj:`text` to :obj:`path` as :func:`atomic_save` writes a
    tensor file: complete or not at all."""
    _atomic_write(path, lambda f: f.write(text), 'w')


def atomic_write_file(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    r"""Calls :obj:`write` on a binary file that becomes :obj:`path` once it
    returns, as :func:`atomic_save` writes a tensor file, for writers that
    take a file object (:func:`numpy.save`, :func:`numpy.savez_compressed`,
    a figure's :obj:`savefig`)."""
    _atomic_write(path, write, 'wb')


def _atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sync_directory(path)


def sync_directory(path: str | os.PathLike) -> None:
    r"""Makes a rename to :obj:`path` durable: it is, only once the directory
    entry is synced (a no-op where the platform cannot open a directory)."""
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def safe_load(path: str | os.PathLike, what: str = 'file',
              remedy: str = 'delete it and run again', **kwargs: Any) -> Any:
    r""":func:`torch.load` of :obj:`path` (:obj:`kwargs` go to it) that turns
    a corrupt, truncated or empty file into a :class:`ValueError` naming
    :obj:`what` and the path and saying :obj:`remedy`. A missing or
    unreadable file raises the :class:`OSError` of :func:`open`."""
    path = Path(path)
    try:
        return torch.load(path, **kwargs)
    except OSError:
        raise
    except _CORRUPT as error:
        size = path.stat().st_size if path.exists() else 0
        detail = (str(error).splitlines() or [''])[0]
        detail = detail if len(detail) <= 120 else detail[:117] + '...'
        raise ValueError(f"{what} '{path}' ({size} bytes) is corrupt or truncated and cannot "
                         f"be read ({type(error).__name__}: {detail}); {remedy}") from error


def digest(*objects: Any) -> str:
    r"""A hex SHA-1 of the content of :obj:`objects`: tensors by dtype, shape
    and bytes (on any device), modules by type, plain attributes and state
    dict, functions by name, constants and the values they close over, containers and
    other objects by their items or public attributes. Devices and private
    attributes (lazy caches) do not count, so the digest of an object is
    the same before and after it is used and on every device; memory
    addresses never enter it."""
    h = hashlib.sha1()
    for obj in objects:
        _feed(h, obj, 0, set())
    return h.hexdigest()


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype)


def _feed(h: 'hashlib._Hash', obj: Any, depth: int, seen: set[int]) -> None:
    if isinstance(obj, _PLAIN):
        h.update(f'{type(obj).__name__}:{obj!r};'.encode())
        return
    if isinstance(obj, torch.device):
        return
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        h.update(f'tensor:{t.dtype}:{tuple(t.shape)};'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
        return
    if isinstance(obj, np.ndarray):
        h.update(f'ndarray:{obj.dtype}:{obj.shape};'.encode())
        h.update(np.ascontiguousarray(obj).tobytes())
        return
    if id(obj) in seen or depth > 8:  # cycles, and object graphs too deep to matter
        h.update(f'<{type(obj).__qualname__}>;'.encode())
        return
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple)):
        h.update(f'{type(obj).__name__}[{len(obj)}];'.encode())
        for item in obj:
            _feed(h, item, depth + 1, seen)
        return
    if isinstance(obj, dict):
        h.update(f'dict[{len(obj)}];'.encode())
        for key in sorted(obj, key=repr):
            _feed(h, key, depth + 1, seen)
            _feed(h, obj[key], depth + 1, seen)
        return
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        func = getattr(obj, '__func__', obj)
        h.update(f'function:{func.__module__}.{func.__qualname__};'.encode())
        # constants and names, not bytecode: the digest outlives a Python upgrade
        _feed(h, func.__code__, depth + 1, seen)
        _feed(h, func.__defaults__, depth + 1, seen)
        for cell in func.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                _feed(h, cell.cell_contents, depth + 1, seen)
        if isinstance(obj, types.MethodType):
            _feed(h, obj.__self__, depth + 1, seen)
        return
    if isinstance(obj, types.CodeType):
        h.update(f'code:{obj.co_name}:{obj.co_names};'.encode())
        _feed(h, obj.co_consts, depth + 1, seen)
        return
    h.update(f'object:{type(obj).__module__}.{type(obj).__qualname__};'.encode())
    if isinstance(obj, torch.nn.Module):
        # parameters and buffers through the state dict (also of submodules)
        for name, value in obj.state_dict().items():
            h.update(name.encode())
            _feed(h, value, depth + 1, seen)
        for name, module in obj.named_modules():
            h.update(f'module:{name}:{type(module).__qualname__};'.encode())
            _feed(h, {key: value for key, value in vars(module).items()
                      if not key.startswith('_') and key != 'training'}, depth + 1, seen)
        return
    state = getattr(obj, '__dict__', None)
    if state is not None:
        _feed(h, {key: value for key, value in state.items() if not key.startswith('_')},
              depth + 1, seen)
