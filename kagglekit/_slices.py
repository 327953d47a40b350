"""A model's forward on a CPU as fixed slices of the batch, each on one torch thread, several slices at once.

Why not the whole batch on N intra-op threads (torch's way): oneDNN's convolutions split their work by the
thread count, so the same batch gives outputs that differ in their last bits on 1 and on 2 threads (timm's
resnet10t: about 1e-7 for batches of 2 to 12 at 224 px, at every batch size at 32-96 px), and the thread
policy picks the count by the load it measures, so the bits would change from run to run. Here the batch is
cut into as many slices as the process has usable cores (fewer when the batch is smaller): a property of the
machine, not of the load or of ``threads=``. Each slice always runs on one torch thread, so its output is
the same bits whichever thread runs it and however many run at once; only the number of slices computed at
the same time follows the policy (the cores other processes leave free, or ``threads=``).

It is also faster: the slices wait at no barrier, so a thread that shares its core (another process, a
reader thread) slows one slice instead of stalling every thread of an OpenMP team at each op (bench_load.py,
idle on 2 cores, two slices at once against each batch whole on two intra-op threads: predict (b) 1.29
against 1.73 s, extract_bag (c) 3.59 against 3.83 s, an smp Unet's sliding window (d) 0.95 against 1.24 s).
A batch of one image runs on one thread: give ``batch_size`` at least the cores.

The model must compute each image of the batch on its own (any CNN or ViT in eval mode does); a model
that mixes images of one batch (batch statistics) gets slices as its batches. It is called from several
threads at once: one that keeps Python state across calls (a counter, recorded inputs) must lock it, or
run with ``threads=1`` (one slice at a time, on the caller's thread, in order).
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["run_in_slices"]

_local = threading.local()  # .inside: this thread is computing a slice (a nested call runs whole)
_POOL = None
_POOL_LOCK = threading.Lock()


def _pool(size: int):
    """The process's helper threads for slices (created on first use; a forked child makes its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max(1, size), thread_name_prefix="kagglekit-slice")
        return _POOL


def _forget_pool() -> None:
    """In a forked child (a DataLoader worker): the parent's helper threads do not exist there."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _modes(torch):
    """A context giving another thread the calling thread's grad, inference and CPU autocast modes (torch
    keeps each per thread)."""
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    try:  # torch >= 2.4
        cast, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    except (TypeError, AttributeError):  # torch 2.1 - 2.3
        cast, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()

    @contextlib.contextmanager
    def enter():
        with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
                torch.autocast("cpu", dtype=dtype, enabled=cast):
            yield

    return enter


def run_in_slices(model, x, cores: int, workers: int, join: bool = True):
    """``model(x)`` computed as ``min(cores, len(x))`` slices of the batch ``x`` (torch.tensor_split along dim 0), each
    on one torch thread, ``workers`` at a time (this thread and helper threads); the outputs concatenated,
    or with ``join=False`` their list, in order (no copy: a caller that takes the slices one by one).

    Holds the slices' outputs (and, joined, a copy of them: one batch's output twice). The caller's
    ``torch.get_num_threads()`` is restored, also on an exception (a helper's is raised here). Where the
    model does not return one tensor row per input, ``model(x)`` is returned as it is (``[model(x)]``
    with ``join=False``; the caller's shape check then names what it returned)."""
    import torch

    if getattr(_local, "inside", False) or not isinstance(x, torch.Tensor) or x.ndim == 0 or len(x) == 0:
        return model(x) if join else [model(x)]
    slices = min(cores, len(x))
    parts = x.tensor_split(slices)
    outputs = [None] * slices
    order, lock, failed = iter(range(slices)), threading.Lock(), threading.Event()
    modes = _modes(torch)

    def work():
        _local.inside = True
        torch.set_num_threads(1)
        try:
            with modes():
                while not failed.is_set():
                    with lock:
                        k = next(order, None)
                    if k is None:
                        return
                    outputs[k] = model(parts[k])
        except BaseException:
            failed.set()
            raise
        finally:
            _local.inside = False

    from concurrent.futures import wait

    before = torch.get_num_threads()
    helpers = [_pool(cores - 1).submit(work) for _ in range(min(workers, slices) - 1)]
    try:
        work()
    finally:
        for helper in helpers:
            helper.cancel()  # not started yet (the pool busy with another caller's slices): this thread did its share
        wait(helpers)
        torch.set_num_threads(before)  # the helpers' set_num_threads(1) changed torch's process-wide count too
    for helper in helpers:
        if not helper.cancelled():
            helper.result()
    if not all(isinstance(y, torch.Tensor) and y.ndim >= 1 and len(y) == len(p) for y, p in zip(outputs, parts)):
        return model(x) if join else [model(x)]
    if not join:
        return outputs
    return outputs[0] if slices == 1 else torch.cat(outputs)
