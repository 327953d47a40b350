"""The thread policy (kagglekit._threads) and the sliced forward (kagglekit._slices): outputs are the same bit
for bit whatever the policy chooses (threads=1, threads=2 and the default with 1 and 2 free cores, against
threads=1 as the oracle), with real CNN backbones (timm's resnet10t, smp's Unet on a MobileNetV3) whose whole-batch outputs
differ between 1 and 2 intra-op threads at these sizes; ``threads=`` and the pipelines' ``threads`` key reach
the forward (how many slices run at once) and kagglekit's own ops (seen by callables that record
torch.get_num_threads()); the stitching runs on one thread, the batch's normalisation on the free cores, every
slice on one; the caller's torch.get_num_threads() is the same after every call, an exception included;
run_in_slices against the model on each slice by hand; the free-core estimate from /proc/stat counters
against the arithmetic done by hand."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from kagglekit import _slices, _threads
from kagglekit.errors import InvalidArgumentError
from kagglekit.infer import iter_predictions, iter_strips, predict, sliding_window
from kagglekit.mil import extract_bag
from kagglekit.models import create, register_model, save_checkpoint
from kagglekit.pipeline import PipelineConfigError, classify, load_config, segment

from competitions import competition, config, write_png
from helpers import tissue_slide

CALLER = 3  # the caller's thread count in these tests: neither 1 nor this machine's default of 2


class Recording(nn.Module):
    """A 3x3 convolution (oneDNN on a CPU) that records torch.get_num_threads() at each forward on a real
    input (a pipeline's all-zero probe is not recorded)."""

    seen: list[int] = []

    def __init__(self, in_channels: int = 3, out_channels: int = 2, pooled: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pooled = pooled

    def forward(self, x):
        if x.any():
            Recording.seen.append(torch.get_num_threads())
        y = self.conv(x)
        return y.mean(dim=(2, 3)) if self.pooled else y


register_model("test_threads_recording", Recording)


@pytest.fixture(autouse=True)
def caller_threads():
    """Every test runs with the caller on CALLER threads, and checks that it still is at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(CALLER)
    Recording.seen = []
    yield
    assert torch.get_num_threads() == CALLER
    torch.set_num_threads(before)


@pytest.fixture
def at_once(monkeypatch):
    """How many slices each sliced forward was allowed to run at once (run_in_slices' ``workers``)."""
    seen, run = [], _slices.run_in_slices

    def recorded(model, x, cores, workers, join=True):
        seen.append(workers)
        return run(model, x, cores, workers, join)

    monkeypatch.setattr(_slices, "run_in_slices", recorded)
    return seen


def image(h=150, w=190, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def recorded_batch_ops():
    """A ``normalize`` callable (applied by kagglekit to the float batch, a whole-batch op) that records the
    thread count it runs on."""
    seen = []

    def normalize(x):
        seen.append(torch.get_num_threads())
        return x / 255

    return normalize, seen


@pytest.fixture
def stitching(monkeypatch):
    """The thread counts the stitcher's per-tile accumulation ran on."""
    from kagglekit.tiling import stitcher

    seen, accumulate = [], stitcher._accumulate

    def recorded(*args):
        seen.append(torch.get_num_threads())
        return accumulate(*args)

    monkeypatch.setattr(stitcher, "_accumulate", recorded)
    return seen


# -- the same outputs whatever the policy chooses --------------------------------------------------------------

CHOICES = [(1, None), (2, None), (None, 1), (None, 2)]  # (threads=, the free cores the policy measures)


def each_choice(monkeypatch, run):
    """``run(threads)`` under every choice of the policy: threads=1 and 2, and the default with 1 and 2 free cores."""
    outputs = []
    for threads, free in CHOICES:
        monkeypatch.setattr(_threads, "free_cores", lambda readers=True, free=free: free or 2)
        outputs.append(run(threads))
    return outputs


def unet():
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.Unet("tu-mobilenetv3_small_050", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8),
                    classes=2).eval()


def test_sliding_window_and_iter_strips_of_a_unet_are_identical_on_any_thread_count(monkeypatch):
    model, src = unet(), image(130, 170)
    args = dict(tile=64, stride=48, batch_size=5, window="gaussian", progress=False)
    oracle = sliding_window(model, src, threads=1, **args)
    for out in each_choice(monkeypatch, lambda threads: sliding_window(model, src, threads=threads, **args)):
        assert np.array_equal(out, oracle)
    strips = each_choice(monkeypatch, lambda threads: np.concatenate(
        [s for _, s in iter_strips(model, src, threads=threads, strip_rows=40, **args)], axis=1))
    for out in strips:
        assert np.array_equal(out, oracle)


def test_predict_with_resnets_is_identical_on_any_thread_count(monkeypatch):
    models = [create("timm/resnet10t", num_classes=3).eval() for _ in range(2)]
    inputs = [image(40, 50, seed=k) for k in range(9)]
    args = dict(size=32, tta="d4", activation="softmax", batch_size=6, num_workers=2, progress=False)
    oracle = predict(models, inputs, threads=1, **args)
    for out in each_choice(monkeypatch, lambda threads: predict(models, inputs, threads=threads, **args)):
        assert np.array_equal(out, oracle)


def test_extract_bag_with_a_resnet_is_identical_on_any_thread_count(tmp_path, monkeypatch):
    import tifffile

    slide = tissue_slide(300, 380, seed=2)
    tifffile.imwrite(tmp_path / "s.tif", slide, tile=(64, 64), compression="zlib")
    torch.manual_seed(0)
    backbone = create("timm/resnet10t", num_classes=0).eval()
    args = dict(name="r", tile=48, min_tissue=0.2, batch_size=5, num_workers=2)
    oracle = extract_bag(backbone, tmp_path / "s.tif", threads=1, **args)
    assert len(oracle) > 5
    for bag in each_choice(monkeypatch, lambda threads: extract_bag(backbone, tmp_path / "s.tif", threads=threads, **args)):
        assert np.array_equal(bag.features, oracle.features) and np.array_equal(bag.coords, oracle.coords)


# -- run_in_slices -----------------------------------------------------------------------------------------------


class Slicewise(nn.Module):
    """Records, per call, the thread it ran on, its torch threads, grad / inference / autocast modes and
    the batch's length; may wait at a barrier (to prove that two slices run at the same time) or fail."""

    def __init__(self, barrier=None, fail_on=None):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.barrier, self.fail_on, self.calls = nn.Conv2d(3, 4, 3, padding=1), barrier, fail_on, []

    def forward(self, x):
        self.calls.append(dict(thread=threading.get_ident(), threads=torch.get_num_threads(), rows=len(x),
                               inference=torch.is_inference_mode_enabled(), grad=torch.is_grad_enabled()))
        call = len(self.calls)
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        if call == self.fail_on:
            raise RuntimeError("the model failed")
        return self.conv(x)


def test_run_in_slices_equals_the_model_on_each_slice_on_one_thread():
    model, x = Slicewise(), torch.randn(7, 3, 20, 20)
    with torch.inference_mode():
        out = _slices.run_in_slices(model, x, 3, 3)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        by_hand = torch.cat([model(x[0:3]), model(x[3:5]), model(x[5:7])])  # torch.tensor_split's cut of 7 into 3
        torch.set_num_threads(before)
    assert torch.equal(out, by_hand)
    assert sorted(c["rows"] for c in model.calls[:3]) == [2, 2, 3]
    assert all(c["threads"] == 1 and c["inference"] for c in model.calls)
    assert torch.get_num_threads() == CALLER


def test_run_in_slices_runs_that_many_slices_at_once_and_no_more():
    model = Slicewise(barrier=threading.Barrier(2))  # each of the two slices waits for the other: both at once
    _slices.run_in_slices(model, torch.randn(4, 3, 8, 8), 2, 2)
    assert len({c["thread"] for c in model.calls}) == 2
    model = Slicewise()
    _slices.run_in_slices(model, torch.randn(6, 3, 8, 8), 3, 1)  # one at a time: all on the caller's thread
    assert {c["thread"] for c in model.calls} == {threading.get_ident()} and len(model.calls) == 3
    model = Slicewise()
    _slices.run_in_slices(model, torch.randn(1, 3, 8, 8), 2, 2)  # fewer rows than slices
    assert [c["rows"] for c in model.calls] == [1]


def test_run_in_slices_gives_the_helpers_the_callers_modes():
    model = Slicewise(barrier=threading.Barrier(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = _slices.run_in_slices(model, torch.randn(4, 3, 8, 8), 2, 2)
    assert out.dtype == torch.bfloat16 and not any(c["grad"] for c in model.calls)
    model = Slicewise(barrier=threading.Barrier(2))
    out = _slices.run_in_slices(model, torch.randn(4, 3, 8, 8), 2, 2)
    assert out.requires_grad and all(c["grad"] and not c["inference"] for c in model.calls)


@pytest.mark.parametrize("fail_on", [1, 2])
def test_a_slices_exception_reaches_the_caller_and_its_threads_come_back(fail_on):
    with pytest.raises(RuntimeError, match="the model failed"):
        _slices.run_in_slices(Slicewise(barrier=threading.Barrier(2), fail_on=fail_on), torch.randn(4, 3, 8, 8), 2, 2)
    assert torch.get_num_threads() == CALLER


def test_a_model_without_one_row_per_input_is_called_whole():
    def summed(x):
        return x.sum()

    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(_slices.run_in_slices(summed, x, 2, 2), summed(x))


# -- what runs on how many threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_threads_reaches_the_forward_the_batch_and_the_stitching(threads, stitching, at_once):
    normalize, batch = recorded_batch_ops()
    sliding_window(Recording(), image(), tile=64, stride=48, progress=False, normalize=normalize, threads=threads)
    assert set(at_once) == {threads} and set(batch) == {threads} and set(stitching) == {threads}
    at_once.clear()
    predict(Recording(pooled=True), [image(30, 30)] * 3, batch_size=2, num_workers=1, progress=False, threads=threads)
    assert set(at_once) == {threads}
    assert set(Recording.seen) == {1}  # every slice on one thread


def test_the_policy_stitches_on_one_thread_and_runs_the_batch_on_the_free_cores(monkeypatch, stitching, at_once):
    normalize, batch = recorded_batch_ops()
    monkeypatch.setattr(_threads, "free_cores", lambda readers=True: 2)
    sliding_window(Recording(), image(), tile=64, stride=48, progress=False, normalize=normalize)
    assert set(stitching) == {1} and set(batch) == {2} and set(at_once) == {2} and set(Recording.seen) == {1}
    stitching.clear()
    list(iter_strips(Recording(), image(), tile=64, stride=48, progress=False))
    assert set(stitching) == {1}
    at_once.clear()
    monkeypatch.setattr(_threads, "free_cores", lambda readers=True: 1)
    predict(Recording(pooled=True), [image(30, 30)] * 3, batch_size=2, progress=False)
    assert set(at_once) == {1}


def test_extract_bag_passes_threads_to_the_backbone(at_once):
    extract_bag(Recording(out_channels=4, pooled=True), tissue_slide(260, 300), name="rec", tile=48, min_tissue=0.2,
                threads=4)
    assert at_once and set(at_once) == {4}


def test_the_default_slices_at_once_are_between_one_and_the_usable_cores(at_once):
    sliding_window(Recording(), image(), tile=64, progress=False)
    assert at_once and all(1 <= n <= _threads.usable_cores() for n in at_once)


# -- the caller's setting comes back -----------------------------------------------------------------------------------


class Failing(nn.Module):
    def forward(self, x):
        assert torch.get_num_threads() in (1, 2, 4)
        raise RuntimeError("the model failed")


@pytest.mark.parametrize("threads", [None, 4])
def test_the_callers_threads_come_back_after_an_exception(threads, tmp_path):
    with pytest.raises(RuntimeError, match="the model failed"):
        sliding_window(Failing(), image(), tile=64, progress=False, threads=threads)
    assert torch.get_num_threads() == CALLER
    with pytest.raises(RuntimeError, match="the model failed"):
        list(iter_strips(Failing(), image(), tile=64, progress=False, threads=threads))
    assert torch.get_num_threads() == CALLER
    with pytest.raises(RuntimeError, match="the model failed"):
        predict(Failing(), [image(20, 20)], num_workers=1, progress=False, threads=threads)
    assert torch.get_num_threads() == CALLER
    with pytest.raises(RuntimeError, match="the model failed"):
        extract_bag(Failing(), tissue_slide(260, 300), name="f", tile=48, min_tissue=0.2, threads=threads)
    assert torch.get_num_threads() == CALLER


def test_the_callers_code_between_strips_and_batches_runs_on_its_own_threads():
    for _ in iter_strips(Recording(), image(), tile=64, stride=48, strip_rows=16, progress=False, threads=1):
        assert torch.get_num_threads() == CALLER
    for _ in iter_predictions(Recording(pooled=True), [image(30, 30)] * 5, batch_size=2, num_workers=1, threads=1):
        assert torch.get_num_threads() == CALLER
    assert Recording.seen


def test_training_datasets_read_items_on_one_thread_and_give_the_callers_back(tmp_path):
    import polars as pl

    from kagglekit.data import ImageDataset

    for k in range(2):
        write_png(tmp_path / f"{k}.png", image(20, 24, seed=k))
    data = ImageDataset(pl.DataFrame({"id": ["0", "1"], "y": [0, 1]}), str(tmp_path / "{id}.png"), label="y",
                        target="class", normalize="imagenet")
    x, _ = data[1]
    assert torch.get_num_threads() == CALLER
    mean, std = (np.array(v, np.float32)[:, None, None] for v in ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    assert np.allclose(x.numpy(), (image(20, 24, seed=1).transpose(2, 0, 1) / np.float32(255) - mean) / std, atol=1e-6)


# -- bad values -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_a_bad_threads_value_is_refused(bad):
    with pytest.raises(InvalidArgumentError, match="threads"):
        sliding_window(Recording(), image(), tile=64, progress=False, threads=bad)
    with pytest.raises(InvalidArgumentError, match="threads"):
        predict(Recording(pooled=True), [image(20, 20)], progress=False, threads=bad)


# -- the pipelines' threads key ------------------------------------------------------------------------------------


def test_the_threads_key_reaches_the_segment_and_classify_models(tmp_path, at_once):
    competition(tmp_path, [(70, 90), (40, 50)])
    model = save_checkpoint(create("kagglekit/test_threads_recording", out_channels=1), tmp_path / "m.safetensors")
    segment(config([(model, 1.0)], threads=4), tmp_path, tmp_path / "out")
    assert at_once and set(at_once) == {4} and set(Recording.seen) == {1}
    assert load_config(config([(model, 1.0)])).threads == "auto"

    at_once.clear()
    classes = ["a", "b"]
    save_checkpoint(create("kagglekit/test_threads_recording", pooled=True), tmp_path / "c.safetensors", classes=classes)
    (tmp_path / "sample_submission.csv").write_text("id,label\nimg0,a\nimg1,a\n")
    classify({"kind": "classify", "models": [{"path": "c.safetensors"}], "preprocess": {"size": 32}, "threads": 1,
              "num_workers": 1}, tmp_path, tmp_path / "out2", base_dir=tmp_path)
    assert at_once and set(at_once) == {1}


@pytest.mark.parametrize("bad", [0, "all", 2.0, True])
def test_a_bad_threads_key_names_the_key(tmp_path, bad):
    with pytest.raises(PipelineConfigError, match="threads"):
        load_config(config([(tmp_path / "m.safetensors", 1.0)], threads=bad))


# -- the free-core estimate ------------------------------------------------------------------------------------------


class FakeTime:
    """monotonic / process_time / thread_time that the test moves by hand."""

    def __init__(self):
        self.wall, self.cpu, self.thread = 100.0, 0.0, 0.0

    def monotonic(self):
        return self.wall

    def process_time(self):
        return self.cpu

    def thread_time(self):
        return self.thread


def test_free_cores_are_the_usable_cores_less_what_others_and_the_readers_use(monkeypatch):
    clock, ticks = FakeTime(), {"busy": 0}
    monkeypatch.setattr(_threads, "time", clock)
    monkeypatch.setattr(_threads, "_cpus", lambda: (frozenset({0, 1}), 2, True))
    monkeypatch.setattr(_threads, "_busy_ticks", lambda cpus: ticks["busy"])
    monkeypatch.setattr(_threads, "_running_others", lambda: 1.0)  # the first guess: one other task running
    monkeypatch.setattr(_threads, "_MONITOR", _threads._Monitor())
    monkeypatch.setattr(_threads, "_TICK", 100)
    assert _threads.free_cores() == 1  # first guess: 2 cores - 1 running elsewhere

    def window(seconds, busy_cores, own_cores, reader_cores=0.0):
        """``seconds`` pass; the cores are busy ``busy_cores`` on average, this process ``own_cores`` of it."""
        clock.wall += seconds
        ticks["busy"] += round(busy_cores * seconds * 100)
        clock.cpu += own_cores * seconds
        if reader_cores:
            clock.thread = 0.0
            task = _threads.reader_task(lambda: setattr(clock, "thread", reader_cores * seconds))
            task()

    window(0.5, busy_cores=1.9, own_cores=1.9)  # only this process: both cores free
    assert _threads.free_cores() == 2
    window(0.1, busy_cores=2.0, own_cores=1.0)  # less than MIN_WINDOW later: the last estimate stands
    assert _threads.free_cores() == 2
    window(0.5, busy_cores=2.0, own_cores=1.0)  # another process takes one core
    assert _threads.free_cores() == 1 and _threads.free_cores(readers=False) == 1
    window(0.5, busy_cores=1.4, own_cores=1.0)  # others take 0.4 of a core: less than half, still free
    assert _threads.free_cores() == 2
    window(0.5, busy_cores=2.0, own_cores=2.0, reader_cores=1.2)  # this process's own readers decode 1.2 cores
    assert _threads.free_cores() == 1
    assert _threads.free_cores(readers=False) == 2  # the forward's slices share the cores with the readers
    window(0.5, busy_cores=2.0, own_cores=0.2)  # two other processes: still one thread, never zero
    assert _threads.free_cores() == 1
    clock.wall += _threads.STALE + 1  # an old estimate is not used: the first guess again
    assert _threads.free_cores() == 1


def test_without_proc_stat_the_free_cores_are_the_usable_cores_less_the_readers(monkeypatch):
    monkeypatch.setattr(_threads, "_cpus", lambda: (frozenset({0, 1, 2, 3}), 4, False))
    monkeypatch.setattr(_threads, "_MONITOR", _threads._Monitor())
    assert _threads.free_cores() == 4
    with _threads.readers(2):
        assert _threads.free_cores() == 2 and _threads.free_cores(readers=False) == 4
        with _threads.readers(3):
            assert _threads.free_cores() == 1
    assert _threads.free_cores() == 4


def test_a_cpu_quota_caps_the_usable_cores(monkeypatch):
    monkeypatch.setattr(_threads, "_quota", lambda: 1.5)
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    _threads._cpus.cache_clear()
    try:
        cpus, cores, measurable = _threads._cpus()
        assert (len(cpus), cores, measurable) == (4, 2, False)  # the quota's 1.5 cores: two threads, not measured
    finally:
        _threads._cpus.cache_clear()


def test_importing_kagglekit_does_not_import_torch_for_the_policy():
    from helpers import modules_loaded_by

    assert modules_loaded_by("import kagglekit._threads", ["torch"]) == []
