"""Peak memory of one block of work (one model's runs in ``pyg-spectral bench``).

The process-wide peak (``ru_maxrss``) cannot be reset, so every model of a
sweep would report the largest model's peak. Instead, on CPU a daemon thread
samples the process's resident set size while the block runs and reports
the peak *increase* over the RSS just before it; on CUDA the allocator's
peak is reset before the block and read after it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import sys
import threading
from dataclasses import dataclass

import torch

# seconds between two RSS samples: a fifth of a Cora GCN epoch on one quiet
# thread; the sampler costs about 0.6 % of one core at this rate (1.3 % at
# 5 ms, measured on the loaded 2-core machine)
SAMPLE_INTERVAL = 0.01

_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def current_rss() -> int | None:
    r"""The process's resident set size in bytes (from :obj:`/proc/self/statm`,
    else :mod:`psutil` when installed), or :obj:`None` where neither is."""
    try:
        with open('/proc/self/statm', 'rb') as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def _release_free_heap() -> None:
    r"""Collects garbage and asks glibc to hand freed heap pages back to the
    system, so that memory an earlier model freed (but the allocator kept)
    is not resident at the start of the next one."""
    gc.collect()
    name = ctypes.util.find_library('c') if sys.platform.startswith('linux') else None
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


@dataclass
class MemoryReport:
    r"""What :class:`PeakMemory` measured. :obj:`peak_mib`: the block's peak
    above :obj:`baseline_mib`; :obj:`kind`: which quantity (see
    :data:`KINDS`); :obj:`samples`: RSS readings taken (CPU)."""
    peak_mib: float
    baseline_mib: float
    kind: str
    samples: int = 0


KINDS = {
    'rss_increase_sampled': (
        "this model's peak resident set size of the process minus the RSS just before its "
        "first seed (after garbage collection and malloc_trim), sampled every {interval_ms:g} ms "
        "by a thread reading /proc/self/statm (or psutil) and once at the end; a peak shorter "
        "than the interval can be missed, and memory that libraries keep from earlier models "
        "(thread pools, workspaces) is not counted again"),
    'cuda_max_allocated_increase': (
        "torch.cuda.max_memory_allocated during this model's seeds (reset before the first) "
        "minus torch.cuda.memory_allocated before it: tensors allocated by this model on the "
        "GPU, not the caching allocator's reserve"),
    'process_max_rss': (
        "the process's peak RSS since it started (ru_maxrss): NOT per model, no way to read "
        "the RSS on this platform"),
}


class PeakMemory:
    r"""Context manager: the peak memory of the block on :obj:`device`,
    as :attr:`report` (a :class:`MemoryReport`) once the block has exited.

    On CPU the measure is the process's RSS, sampled every
    :obj:`interval` seconds by a daemon thread (which only reads a file,
    then sleeps); on CUDA the allocator's own peak. The numbers are MiB."""

    def __init__(self, device: torch.device | str = 'cpu',
                 interval: float = SAMPLE_INTERVAL) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.report: MemoryReport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0
        self._samples = 0

    def description(self) -> str:
        kind = self.report.kind if self.report else None
        return KINDS.get(kind, '').format(interval_ms=1e3 * self.interval)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def _read(self) -> None:
        rss = current_rss()
        if rss is not None:
            self._samples += 1
            if rss > self._peak:
                self._peak = rss

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_heap()
        self._base = current_rss()
        if self._base is not None:
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, name='pyg-spectral-rss',
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        mib = 2 ** 20
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.report = MemoryReport((peak - self._base) / mib, self._base / mib,
                                       'cuda_max_allocated_increase')
            return
        if self._base is None:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            # Linux reports KiB, macOS bytes
            peak = rss / mib if sys.platform == 'darwin' else rss / 2 ** 10
            self.report = MemoryReport(peak, 0.0, 'process_max_rss')
            return
        self._stop.set()
        self._thread.join()
        self._read()  # the end state, in case the block was shorter than one interval
        self.report = MemoryReport((self._peak - self._base) / mib, self._base / mib,
                                   'rss_increase_sampled', self._samples)
