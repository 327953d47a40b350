"""The thread policy of kagglekit's CPU-side torch work: how many torch threads (and slices of a batch at
once for the model's forward) ``sliding_window``,
``iter_strips``, ``predict`` / ``iter_predictions``, ``extract_bag``, the pipelines (their top-level ``threads``
key) and the training datasets (``ImageDataset``, ``TileDataset``) use.

    plan = CpuThreads(threads, device)
    with plan.small():          # kagglekit's per-tile ops: a tile's cast into the batch, its stitching
        ...
    forward = plan.forward(model)
    with plan.model():          # whole-batch ops (normalisation, TTA views, merges): the free cores
        y = forward(x)          # the forward: fixed slices of the batch on one thread each, the free cores' worth at once
    # each context restores the torch.get_num_threads() it found, on return and on an exception

What is chosen, and why (bench/bench_load.py measures it; bench/RESULTS.md, "Thread policy under load"):

- **kagglekit's per-tile ops run on one torch thread**: each tile's cast into the batch buffer and the
  stitcher's fused multiply-add of each tile's output (a memory-bound pass over about a megabyte, hundreds
  of them per image). On two threads they gain nothing measurable on an idle machine and are much slower
  when another process keeps one of the cores busy: an OpenMP team waits at every op's barrier for its
  thread that shares a core to get its next time slice (bench_load.py (a), 8192² through a 1x1 conv: idle,
  0.24-0.30 s whichever the threads; beside one busy process, everything on both cores 6.75 s, the
  batch's ops and two slices at once (no load measured) 0.76 s, the policy 0.28 s).
- **whole-batch ops run on the cores that are free**: the batch's normalisation, TTA views, merges and
  activations (several megabytes each: two threads help on an idle machine), on the cores this process may
  use (``os.sched_getaffinity``, capped by a cgroup CPU quota) less the cores kept busy by other processes and
  by kagglekit's own background reader threads (``num_workers`` of ``predict`` / ``extract_bag``), at
  least one. Busy cores are measured, not assumed: from ``/proc/stat`` (the CPU time spent on this
  process's cores) less this process's own CPU time (``time.process_time``) plus what the reader threads
  used (their ``time.thread_time``), over windows of at least a quarter of a second, re-estimated between
  batches; a core is counted busy when other work takes at least half of it. Before the first window
  (a fresh process, or the last estimate is more than a few seconds old) the instantaneous count of
  runnable tasks (``procs_running``) less this process's own gives the first estimate (where that count
  is a larger machine's, the usable cores less the reader threads do). Where
  ``/proc/stat`` cannot tell (no such file, or a CPU quota smaller than the affinity set, so that the
  cores' counters are mostly other containers'), the free cores are the usable cores less the number of
  reader threads kagglekit started.
- **the model's forward runs in fixed slices** (:mod:`kagglekit._slices`): the batch is cut into as many
  slices as there are usable cores, each computed on one torch thread, as many at once as there are cores
  that other processes leave free (kagglekit's own reader threads are not subtracted: slices wait at no
  barrier, so they and the readers share the cores as the OS schedules them; bench_load.py (b), idle with
  two decoding threads busy: two slices at once on every forward, 1.29 s against 1.60 s on one thread).
  The cut depends on the machine only, so the outputs are the same bits whatever the policy chooses
  (oneDNN's convolutions on a whole batch round differently on 1 and 2 threads); and slices share no barrier,
  so a busy core slows one slice instead of the whole team (bench_load.py, idle: predict 1.29 s sliced
  against 1.73 s whole on two threads, extract_bag 3.59 against 3.83 s, a Unet's sliding window 0.95
  against 1.24 s). The model is not capped: on an idle machine its slices use every core.
- **``threads=N`` overrides both**: kagglekit's own ops run on N torch threads and N slices run at once
  (at most the usable cores: the cut stays the machine's); the outputs are the same bits as the policy's.
- **on CUDA** the GPU work is unchanged (the model's context and its forward change nothing); only the
  CPU-side stitching runs on one thread.

kagglekit's own ops do not depend on the thread count: they are elementwise (each value computed the same
way by whichever thread), and tests/test_threads.py checks them, and real CNN backbones whose whole-batch
outputs do differ between thread counts, bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time

from kagglekit.errors import InvalidArgumentError

__all__ = ["CpuThreads", "counted", "free_cores", "one_thread", "reader_task", "readers", "resolve_threads", "usable_cores"]

MIN_WINDOW = 0.25  # seconds of /proc/stat between two estimates: its counters tick every 10 ms (±4 % of a core)
STALE = 5.0  # an estimate older than this is not trusted: the load may have changed since
BUSY = 0.5  # a core is busy when other work takes at least this share of it


def resolve_threads(threads):
    """``None`` / ``"auto"``: the policy (returns None); an integer >= 1: that many threads; else a clear error."""
    if threads is None or threads == "auto":
        return None
    if isinstance(threads, bool) or not hasattr(threads, "__index__") or int(threads) < 1:
        raise InvalidArgumentError(f"threads must be an integer >= 1 (torch threads for kagglekit's CPU work) or "
                                   f"None / 'auto' (the thread policy: one thread for small ops, the free cores for "
                                   f"the model), got {threads!r}")
    return int(threads)


def _quota() -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2 ``cpu.max``, else v1), None when unlimited or unknown."""
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")])):
        text = _read(path)
        if text is None:
            continue
        try:
            quota, period = parse(text)
            if quota in ("max", "-1") or period is None:
                return None
            return int(quota) / int(period)
        except (ValueError, TypeError):
            return None
    return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@functools.cache
def _cpus() -> tuple[frozenset, int, bool]:
    """(this process's CPUs, how many cores it may use, whether /proc/stat's per-CPU counters tell the load)."""
    cpus = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset(range(os.cpu_count() or 1))
    quota = _quota()
    cores = len(cpus) if quota is None else max(1, min(len(cpus), math.ceil(quota - 1e-9)))
    measurable = cores == len(cpus) and _busy_ticks(cpus) is not None
    return cpus, cores, measurable


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    return _cpus()[1]


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_ticks(cpus) -> int | None:
    """Clock ticks the CPUs ``cpus`` spent busy (user, nice, system, irq, softirq, steal) since boot."""
    text = _read("/proc/stat")
    if text is None:
        return None
    busy, seen = 0, 0
    for line in text.splitlines():
        if not (line.startswith("cpu") and line[3:4].isdigit()):
            continue
        name, *fields = line.split()
        if int(name[3:]) in cpus:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in (fields + ["0"] * 8)[:8])
            busy += user + nice + system + irq + softirq + steal
            seen += 1
    return busy if seen else None


def _running_others() -> float | None:
    """Runnable tasks now (``procs_running``) that are not this process's, or None when that count is not
    about this process's cores only (the machine has more CPUs than the process may use)."""
    if (os.cpu_count() or 0) != len(_cpus()[0]):
        return None
    text = _read("/proc/stat")
    running = next((int(line.split()[1]) for line in (text or "").splitlines() if line.startswith("procs_running")), None)
    if running is None:
        return None
    own = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            stat = _read(f"/proc/self/task/{tid}/stat")
            if stat and stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
                own += 1
    except OSError:
        own = 1
    return float(max(0, running - max(own, 1)))


class _Monitor:
    """Process-wide estimate of the cores kept busy by work other than the model's threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.readers = 0.0  # CPU seconds the background reader threads used, ever
        self.readers_alive = 0  # background reader threads running now
        self.snapshot = None  # (wall time, busy ticks, process CPU seconds, readers' CPU seconds)
        self.others = None  # the last estimate of the cores other processes keep busy
        self.reading = 0.0  # ... and of the cores the reader threads used

    def add_reader_time(self, seconds: float) -> None:
        with self.lock:
            self.readers += seconds

    def _take(self, cpus):
        ticks = _busy_ticks(cpus)
        return None if ticks is None else (time.monotonic(), ticks, time.process_time(), self.readers)

    def busy_elsewhere(self, readers: bool = True) -> float | None:
        """Cores busy with other processes' work (and, with ``readers``, kagglekit's reader threads') over
        the last window."""
        cpus, cores, measurable = _cpus()
        if not measurable:
            return None
        with self.lock:
            now = time.monotonic()
            if self.snapshot is None or now - self.snapshot[0] > STALE:
                self.snapshot, self.others, self.reading = self._take(cpus), _running_others(), 0.0
            elif now - self.snapshot[0] >= MIN_WINDOW:
                new = self._take(cpus)
                if new is not None:
                    wall = new[0] - self.snapshot[0]
                    busy = (new[1] - self.snapshot[1]) / _TICK
                    self.others = min(float(cores), max(0.0, (busy - (new[2] - self.snapshot[2])) / wall))
                    self.reading = (new[3] - self.snapshot[3]) / wall
                    self.snapshot = new
            if self.others is None:
                return None
            return min(float(cores), self.others + self.reading) if readers else self.others


_MONITOR = _Monitor()


def _after_fork() -> None:
    """A forked child (a DataLoader worker) may be pinned elsewhere and has no reader threads: it starts afresh."""
    global _MONITOR
    _cpus.cache_clear()
    _MONITOR = _Monitor()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def free_cores(readers: bool = True) -> int:
    """How many cores are free for kagglekit now (see the module docstring): less those kept busy by
    other processes and, with ``readers`` (the whole-batch ops' torch threads), by kagglekit's reader
    threads; without (the forward's slices at once), not."""
    cores = usable_cores()
    others = _MONITOR.busy_elsewhere(readers)
    if others is None:
        return max(1, cores - (_MONITOR.readers_alive if readers else 0))
    return max(1, min(cores, int(cores - others + BUSY)))  # a core counts busy when others take >= BUSY of it


_local = threading.local()


@contextlib.contextmanager
def readers(count: int):
    """While inside, ``count`` background reader threads of kagglekit decode beside the model (for the
    policy where the load cannot be measured); their tasks are wrapped with :func:`reader_task`."""
    with _MONITOR.lock:
        _MONITOR.readers_alive += count
    try:
        yield
    finally:
        with _MONITOR.lock:
            _MONITOR.readers_alive -= count


def reader_task(fn):
    """``fn`` wrapped to run as one task of a background reader thread: the CPU time it takes on this
    thread, and on the threads it hands :func:`counted` work to, counts as busy for the policy."""

    @functools.wraps(fn)
    def task(*args, **kwargs):
        start, _local.reader = time.thread_time(), True
        try:
            return fn(*args, **kwargs)
        finally:
            _local.reader = False
            _MONITOR.add_reader_time(time.thread_time() - start)

    return task


def _timed(fn):
    @functools.wraps(fn)
    def task(*args, **kwargs):
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _MONITOR.add_reader_time(time.thread_time() - start)

    return task


def counted(fn):
    """``fn`` as it is, or, when called from a background reader's task (:func:`reader_task`), wrapped so
    that the CPU time it takes on another thread (a pool decoding a batch of TIFF tiles) counts as the reader's."""
    return _timed(fn) if getattr(_local, "reader", False) else fn


def _set(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def _scope(n: int | None):
    """torch on ``n`` threads inside (None: unchanged); the caller's count restored after, also on an exception."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    _set(n)
    try:
        yield
    finally:
        _set(before)


def one_thread():
    """torch on one thread inside, the caller's count restored after: for per-item work such as a training
    dataset's cast and normalisation of one image (a DataLoader worker is on one thread already; this is for
    the items a main process reads itself, with ``num_workers=0``)."""
    return _scope(1)


class CpuThreads:
    """The thread plan of one call (see the module docstring): ``threads`` None / ``"auto"`` (the policy) or
    an integer >= 1 (kagglekit's ops on that many torch threads, that many slices at once); ``device`` the
    torch device the model runs on."""

    def __init__(self, threads=None, device=None):
        self.fixed = resolve_threads(threads)
        self.on_cuda = device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"

    def small(self):
        """The context for kagglekit's per-tile ops: one thread (or ``threads``)."""
        return _scope(self.fixed or 1)

    def model(self):
        """The context for whole-batch ops: the free cores on a CPU (or ``threads``); on CUDA unchanged."""
        if self.on_cuda:
            return _scope(self.fixed)
        return _scope(self.fixed or free_cores())

    def forward(self, model, join: bool = True):
        """``model`` as the batches call it: on CUDA itself; on a CPU a callable that runs a batch in
        :func:`kagglekit._slices.run_in_slices`, as many slices as usable cores, the free cores' worth
        (or ``threads``) at once. ``join=False``: the callable returns a list of outputs, one per slice
        (on CUDA, one)."""
        if self.on_cuda:
            return model if join else lambda x: [model(x)]
        from kagglekit._slices import run_in_slices

        return lambda x: run_in_slices(model, x, usable_cores(), self.fixed or free_cores(readers=False), join)
