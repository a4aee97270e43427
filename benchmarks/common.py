"""Measurement helpers shared by the benchmark scripts: wall time, peak
memory, a trusted reference eigenspace and sign/rotation-invariant errors."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from pyg_spectral.metrics import max_principal_sine


def _vm_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


@dataclass
class Measure:
    seconds: float = 0.0
    peak_mib: float = 0.0


@contextmanager
def measured():
    r"""Wall time and the peak resident memory above the level at entry
    (Linux: VmHWM is reset through /proc/self/clear_refs)."""
    m = Measure()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    base = _vm_kib('VmRSS:')
    start = time.perf_counter()
    yield m
    m.seconds = time.perf_counter() - start
    m.peak_mib = max(0, _vm_kib('VmHWM:') - base) / 1024


@dataclass
class Reference:
    values: np.ndarray   # [K] ascending, K >= k, closed over the cluster at k
    vectors: np.ndarray  # [n, K]
    how: str


def reference_smallest(L: sp.csr_matrix, k: int, dense_limit: int = 5000,
                       cluster_tol: float = 1e-6) -> Reference:
    r"""The k smallest eigenpairs of a symmetric sparse matrix in float64,
    extended to the whole eigenvalue cluster at position k so that any valid
    choice inside a degenerate eigenspace counts as right. Dense
    :obj:`eigh` up to :obj:`dense_limit` nodes, else shift-invert Lanczos
    (trusted only without large degenerate clusters: connected graphs)."""
    n = L.shape[0]
    if n <= dense_limit:
        w, V = np.linalg.eigh(L.toarray())
        how = 'dense eigh (float64)'
    else:
        from scipy.sparse.linalg import eigsh
        w, V = eigsh(L.astype(np.float64), k=k + 8, sigma=-1e-3, which='LM', tol=1e-12)
        order = np.argsort(w)
        w, V = w[order], V[:, order]
        how = 'eigsh shift-invert, sigma=-1e-3, tol=1e-12 (float64)'
    K = k
    while K < len(w) and w[K] - w[k - 1] <= cluster_tol * max(1.0, abs(w[k - 1])):
        K += 1
    return Reference(w[:K], V[:, :K], how)


def errors(values, vectors, ref: Reference, k: int) -> tuple[float, float]:
    r"""(max |lambda - lambda_ref| over the k smallest, max principal sine of
    the method's vectors against the cluster-closed reference space)."""
    values = np.sort(np.asarray(values, dtype=np.float64))[:k]
    eig_err = float(np.abs(values - ref.values[:k]).max())
    sine = max_principal_sine(torch.as_tensor(np.asarray(vectors)), torch.as_tensor(ref.vectors))
    return eig_err, sine


def threads() -> str:
    return f'torch threads={torch.get_num_threads()}, load avg={os.getloadavg()[0]:.1f}'
