"""Graph files read whole or in chunks of edges, and written edge chunk by
edge chunk: a process that needs only some rows of a big graph's matrix
reads the edge list a chunk at a time instead of holding all of it.

Formats (the keys are those of ``pyg-spectral eigs``):

* ``.npz`` with ``edge_index`` (``[2, m]`` integers), optional
  ``edge_weight`` (``[m]``) and ``num_nodes``. Members stored uncompressed
  (:func:`numpy.savez`, :class:`GraphWriter`) are read chunk by chunk
  straight from the file; compressed members (:func:`numpy.savez_compressed`)
  are decompressed whole, once.
* ``.npy`` holding ``edge_index`` alone, read chunk by chunk.
* ``.pt`` (:func:`torch.save` of an ``edge_index`` tensor or of a dict with
  those keys): loaded whole, since :func:`torch.load` has no ranged read.
"""
from __future__ import annotations

import contextlib
import os
import struct
import uuid
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

# edges per chunk: 16 MiB of int64 node ids, small beside any graph worth
# streaming, large enough that the per-chunk Python overhead is noise
CHUNK_EDGES = 1 << 20
GRAPH_SUFFIXES = ('.npz', '.npy', '.pt')
_ZIP_LOCAL_HEADER = 30  # bytes before a member's name in its local file header


class _DiskArray:
    r"""An array in a ``.npy`` file or an uncompressed ``.npz`` member whose
    ranges of columns (of a ``[2, m]`` array) or entries (of a 1-d one) are
    read with plain file reads. Plain reads, not a memory map: the page
    cache keeps the file, and a process's resident memory holds only the
    chunk it reads, where a memory map's pages would count against it."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                 fortran_order: bool) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype
        self.fortran_order = fortran_order

    @classmethod
    def at(cls, path: Path, start: int) -> '_DiskArray':
        with open(path, 'rb') as f:
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read(f)
            return cls(path, f.tell(), tuple(shape), np.dtype(dtype), bool(fortran_order))

    def _read(self, f, first: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=self.dtype)
        f.seek(self.offset + first * self.dtype.itemsize)
        if f.readinto(memoryview(out).cast('B')) != out.nbytes:
            raise ValueError(f"graph file '{self.path}' is truncated (an array ends early); "
                             f"write it again")
        return out.astype(self.dtype.newbyteorder('='), copy=False)

    def columns(self, start: int, stop: int) -> np.ndarray:
        r"""Columns :obj:`start:stop` of a :obj:`[2, m]` array (:obj:`[2, c]`),
        or entries of a 1-d one."""
        count = stop - start
        with open(self.path, 'rb') as f:
            if len(self.shape) == 1:
                return self._read(f, start, count)
            m = self.shape[1]
            if self.fortran_order:  # pairs side by side
                return self._read(f, 2 * start, 2 * count).reshape(count, 2).T
            return np.stack([self._read(f, start, count), self._read(f, m + start, count)])

    def load(self) -> np.ndarray:
        size = int(np.prod(self.shape))
        with open(self.path, 'rb') as f:
            flat = self._read(f, 0, size)
        return flat.reshape(self.shape, order='F' if self.fortran_order else 'C')


def _npz_members(path: Path) -> dict[str, '_DiskArray | np.ndarray']:
    r"""The arrays of an ``.npz``: uncompressed members as :class:`_DiskArray`,
    compressed ones decompressed."""
    members: dict[str, _DiskArray | np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, 'rb') as raw:
        for info in archive.infolist():
            if not info.filename.endswith('.npy'):
                continue
            key = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as f:
                    members[key] = np.lib.format.read_array(f, allow_pickle=False)
                continue
            raw.seek(info.header_offset)
            header = raw.read(_ZIP_LOCAL_HEADER)
            if header[:4] != b'PK\x03\x04':
                raise ValueError(f"graph file '{path}' is not a readable .npz (member "
                                 f"{info.filename} has no local header); write it again")
            name_len, extra_len = struct.unpack('<HH', header[26:30])
            members[key] = _DiskArray.at(path, info.header_offset + _ZIP_LOCAL_HEADER
                                         + name_len + extra_len)
    return members


def _as_edge_index(array, path: Path) -> Tensor:
    array = np.asarray(array)
    if array.dtype.kind not in 'iu':
        raise TypeError(f"edge_index in graph file '{path}' has dtype {array.dtype}; save it "
                        f"as integers (e.g. edge_index.long())")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


class GraphFile:
    r"""A graph on disk, read whole (:meth:`load`) or a chunk of edges at a
    time (:meth:`chunks`).

    Args:
        path: a :obj:`.npz`, :obj:`.npy` or :obj:`.pt` file (module
            docstring).

    Attributes:
        num_nodes: the file's :obj:`num_nodes`, or :obj:`None` when it holds
            none (then it is the largest node id plus one).
        num_edges: :obj:`m`, the columns of :obj:`edge_index`.
        streamed: whether :meth:`chunks` reads the file piece by piece
            (:obj:`False`: the file was loaded whole when opened).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"graph file '{path}' does not exist")
        if path.suffix not in GRAPH_SUFFIXES:
            raise ValueError(f"graph file '{path}' must end in {', '.join(GRAPH_SUFFIXES)}")
        self.path = path
        if path.suffix == '.npy':
            members: dict = {'edge_index': _DiskArray.at(path, 0)}
        elif path.suffix == '.npz':
            try:
                members = _npz_members(path)
            except zipfile.BadZipFile as error:
                raise ValueError(f"graph file '{path}' is not a readable .npz ({error}); "
                                 f"write it again") from error
        else:
            members = self._load_pt(path)
        if 'edge_index' not in members:
            raise ValueError(f"graph file '{path}' has no 'edge_index' (keys: {sorted(members)}); "
                             f"save a dict with 'edge_index' [2, m] and optional 'edge_weight', "
                             f"'num_nodes'")
        self._edges, self._weights = members['edge_index'], members.get('edge_weight')
        shape = tuple(self._edges.shape)
        if len(shape) != 2 or shape[0] != 2:
            raise ValueError(f"edge_index in graph file '{path}' must have shape [2, m], got "
                             f"{list(shape)}")
        self.num_edges = shape[1]
        if self._weights is not None and tuple(self._weights.shape) != (self.num_edges,):
            raise ValueError(f"edge_weight in graph file '{path}' must have shape "
                             f"[{self.num_edges}] (one weight per edge), got "
                             f"{list(self._weights.shape)}")
        num_nodes = members.get('num_nodes')
        if isinstance(num_nodes, _DiskArray):
            num_nodes = num_nodes.load()
        self.num_nodes = None if num_nodes is None else int(np.asarray(num_nodes))
        self.streamed = isinstance(self._edges, _DiskArray)

    @staticmethod
    def _load_pt(path: Path) -> dict:
        from .io import safe_load
        obj = safe_load(path, 'graph file', 'write it again with torch.save', weights_only=True)
        if not isinstance(obj, dict):
            obj = {'edge_index': obj}
        out = dict(obj)
        for key in ('edge_index', 'edge_weight'):
            if isinstance(out.get(key), Tensor):
                out[key] = out[key].detach().cpu().numpy()
        return out

    @property
    def weighted(self) -> bool:
        return self._weights is not None

    def _edge_columns(self, start: int, stop: int) -> Tensor:
        source = self._edges
        block = source.columns(start, stop) if isinstance(source, _DiskArray) \
            else np.asarray(source)[:, start:stop]
        return _as_edge_index(block, self.path)

    def _weight_entries(self, start: int, stop: int) -> Tensor | None:
        source = self._weights
        if source is None:
            return None
        block = source.columns(start, stop) if isinstance(source, _DiskArray) \
            else np.asarray(source)[start:stop]
        if block.dtype.kind != 'f':
            raise TypeError(f"edge_weight in graph file '{self.path}' has dtype {block.dtype}; "
                            f"save it as floats")
        return torch.from_numpy(np.ascontiguousarray(block))

    def chunks(self, size: int = CHUNK_EDGES) -> Iterator[tuple[Tensor, Tensor | None]]:
        r"""The edges in file order, :obj:`size` at a time: pairs of
        :obj:`edge_index` :obj:`[2, c]` (:obj:`torch.long`) and
        :obj:`edge_weight` :obj:`[c]` (or :obj:`None`)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        for start in range(0, self.num_edges, size):
            stop = min(start + size, self.num_edges)
            yield self._edge_columns(start, stop), self._weight_entries(start, stop)

    def load(self) -> tuple[Tensor, Tensor | None, int | None]:
        r"""The whole graph: :obj:`(edge_index, edge_weight, num_nodes)`."""
        return (self._edge_columns(0, self.num_edges),
                self._weight_entries(0, self.num_edges), self.num_nodes)


class GraphWriter:
    r"""Writes a graph into an uncompressed :obj:`.npz` (the format
    :class:`GraphFile` reads chunk by chunk) one chunk of edges at a time,
    so that a generator never holds the whole edge list: :obj:`edge_index`
    is stored as a :obj:`[2, m]` array in Fortran order (its pairs side by
    side, which is what appending chunks writes), the weights, if any, go
    to a scratch file first and become the second member on :meth:`close`.
    The file is written under a temporary name and renamed only when all
    :obj:`num_edges` edges arrived; an error or a missing edge leaves no
    file.

    .. code-block:: python

        with GraphWriter('graph.npz', num_nodes=n, num_edges=m) as out:
            for edge_index in chunks:   # [2, c] each, m in all
                out.write(edge_index)

    Args:
        path: the :obj:`.npz` to write.
        num_nodes: :math:`n`, stored as :obj:`num_nodes`.
        num_edges: :math:`m`, the number of columns all chunks add up to
            (the array header comes first, so it must be known).
        weighted: whether every chunk comes with :obj:`edge_weight`.
        weight_dtype: the stored weights' dtype.
    """

    def __init__(self, path: str | os.PathLike, num_nodes: int, num_edges: int,
                 weighted: bool = False, weight_dtype: np.dtype = np.float32) -> None:
        path = Path(path)
        if path.suffix != '.npz':
            raise ValueError(f"path must end in .npz, got '{path}'")
        if num_nodes < 1 or num_edges < 0:
            raise ValueError(f"num_nodes must be positive and num_edges non-negative, got "
                             f"{num_nodes} and {num_edges}")
        self.path, self.num_nodes, self.num_edges = path, int(num_nodes), int(num_edges)
        self.weighted, self.weight_dtype = weighted, np.dtype(weight_dtype)
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        # a fresh name opened with open(), so the file gets the permissions
        # of the umask (mkstemp's are the owner's alone)
        self._tmp = path.with_name(f'.{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
        self._weights_tmp = None
        self._zip = zipfile.ZipFile(open(self._tmp, 'xb'), 'w', compression=zipfile.ZIP_STORED,
                                    allowZip64=True)
        self._member = self._zip.open('edge_index.npy', 'w', force_zip64=True)
        np.lib.format.write_array_header_2_0(
            self._member, {'descr': np.dtype('<i8').str, 'fortran_order': True,
                           'shape': (2, self.num_edges)})
        if weighted:
            self._weights_tmp = self._tmp.with_suffix('.weights')
            self._weight_file = open(self._weights_tmp, 'xb')

    def write(self, edge_index: Tensor | np.ndarray, edge_weight: Tensor | np.ndarray | None = None
              ) -> None:
        r"""Appends :obj:`edge_index` :obj:`[2, c]` (and :obj:`edge_weight`
        :obj:`[c]` when :obj:`weighted`)."""
        edges = np.asarray(edge_index.cpu() if isinstance(edge_index, Tensor) else edge_index)
        if edges.ndim != 2 or edges.shape[0] != 2 or edges.dtype.kind not in 'iu':
            raise ValueError(f"edge_index must be an integer array of shape [2, c], got "
                             f"{edges.dtype} {list(edges.shape)}")
        count = edges.shape[1]
        if self.written + count > self.num_edges:
            raise ValueError(f"more edges written than num_edges={self.num_edges}")
        if count and (edges.min() < 0 or edges.max() >= self.num_nodes):
            raise ValueError(f"edge_index has node ids outside [0, {self.num_nodes}); check "
                             f"num_nodes")
        if self.weighted != (edge_weight is not None):
            raise ValueError("edge_weight must come with every chunk of a weighted writer and "
                             "with none of an unweighted one")
        self._member.write(np.ascontiguousarray(edges.T, dtype='<i8').tobytes())
        if edge_weight is not None:
            weights = np.asarray(edge_weight.cpu() if isinstance(edge_weight, Tensor)
                                 else edge_weight)
            if weights.shape != (count,):
                raise ValueError(f"edge_weight must have shape [{count}], got "
                                 f"{list(weights.shape)}")
            self._weight_file.write(weights.astype(self.weight_dtype.newbyteorder('<'))
                                    .tobytes())
        self.written += count

    def close(self) -> None:
        r"""Completes the file and renames it into place; raises, leaving no
        file, unless exactly :obj:`num_edges` edges were written."""
        try:
            self._member.close()
            if self.written != self.num_edges:
                raise ValueError(f"{self.written} edges were written, not num_edges="
                                 f"{self.num_edges}; '{self.path}' was not written")
            if self.weighted:
                self._weight_file.close()
                with self._zip.open('edge_weight.npy', 'w', force_zip64=True) as member, \
                        open(self._weights_tmp, 'rb') as weights:
                    np.lib.format.write_array_header_2_0(
                        member, {'descr': self.weight_dtype.newbyteorder('<').str,
                                 'fortran_order': False, 'shape': (self.num_edges,)})
                    while block := weights.read(1 << 24):
                        member.write(block)
            with self._zip.open('num_nodes.npy', 'w') as member:
                np.lib.format.write_array(member, np.asarray(self.num_nodes, dtype='<i8'))
            handle = self._zip.fp
            self._zip.close()
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self._tmp, self.path)
            # the rename itself is durable only once the directory entry is synced
            with contextlib.suppress(OSError, AttributeError):
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except BaseException:
            self._discard()
            raise
        finally:
            if self._weights_tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._weights_tmp)

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._member.close()
        handle = self._zip.fp
        with contextlib.suppress(Exception):
            self._zip.close()
        with contextlib.suppress(Exception):
            handle.close()
        if self._weights_tmp is not None:
            with contextlib.suppress(Exception):
                self._weight_file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self) -> 'GraphWriter':
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:
            self._discard()
            if self._weights_tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._weights_tmp)
