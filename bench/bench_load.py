"""kagglekit on a busy machine: its thread policy against its own one-thread and all-threads runs, the
policy as it was before the model's forward was cut into slices (each forward whole on the free cores'
intra-op threads), and the peers, idle and with busy processes beside it.

Each run is a fresh child process (``--child PART METHOD``): it builds its inputs, runs the method
``CALLS`` times and prints the best wall seconds (and, for kagglekit's rows, how its model's forwards
ran: K slices of the batch at once x T torch threads each). The parent starts the neighbours, then the children one after another:

    idle              nothing beside the run
    1 CPU loop        one process spinning ``while True: pass``
    1 DataLoader      one process iterating a torch DataLoader (1 worker process) that decodes 1500 x 1000
                      JPEGs with OpenCV, batch after batch, for ever (the worker decodes, the main process waits)
    loop + DataLoader both of the above (two busy processes)

Parts:
  (a) sliding_window, 8192² RGB uint8 in memory, 1x1 conv to 1 channel, tile 512, stride 384, batch 8,
      gaussian (bench_sliding.py (a)) against pytorch-toolbelt and MONAI (torch's default threads)
  (b) predict, the classify bench's decode-bound case on 64 of its JPEGs (3000 x 2000 -> 128,
      mobilenetv3_small_050, 5 folds x D4, batch 32, 2 decoding threads) against the usual kernel loop
      (DataLoader per fold with 2 worker processes, ttach D4; bench_classify.py)
  (c) extract_bag, the MIL bench's 20000² JPEG-in-TIFF (resnet10t, 224 px tiles, the 256 most tissue-filled,
      defaults: batches of 16, one reader thread) against the plain loop (one tile at a time; bench_mil.py)
  (d) not a target: a model whose forward dominates, where threads matter for the model itself:
      sliding_window of an smp Unet-r18 (random weights) over 1024² RGB, tile 256, stride 192, batch 8
      (bench_sliding.py (c) at a quarter of the area), idle and beside one CPU loop only

Paired: .venv/bin/python bench/bench_load.py --paired [b c] runs (b) and (c) in one process per load, call by
call in turns: idle the policy and threads=all cores, beside each load the policy and threads=1 (the targets'
few percent are below the fresh children's spread).

Run: .venv/bin/python bench/bench_load.py [a b c d] [--rounds=N] [--resume]   (peers: the bench extra's
pytorch-toolbelt and monai). The machine may be shared: each run waits until no other process keeps a core
busy and is measured again (up to 4 tries) when another user's load came during it. --resume keeps the rows
already measured (bench/_data/load_rows.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / "_data"
CALLS = {"a": 3, "b": 1, "c": 1, "d": 2}  # calls per child, the best kept: (a)'s first call also page-faults its
# 256 MB output, which costs 0.02 to 1.5 s on this VM depending on how the host backs the memory (a first-call column shows it)
ONE_CALL = ("MONAI sliding_window_inference",)  # up to 16 s a call, not in a target: one call
LOADS = ("idle", "1 CPU loop", "1 DataLoader", "loop + DataLoader")
POLICY, ONE, ALL = "kagglekit, thread policy (default)", "kagglekit, threads=1", "kagglekit, threads=all cores"
SPLIT = "kagglekit, per-tile ops on 1 thread, batch and model on the usable cores less readers (no load measured)"
WHOLE = "kagglekit, the policy before slicing: each forward whole on the free cores' intra-op threads"
OURS = (POLICY, ONE, ALL, SPLIT, WHOLE)


# -- the neighbours ------------------------------------------------------------------------------------------

LOOP = "while True: pass"

DATALOADER = r"""
import sys, cv2, torch
cv2.setNumThreads(1)
paths = sys.argv[1:]
class Jpegs(torch.utils.data.Dataset):
    def __len__(self): return len(paths)
    def __getitem__(self, k): return torch.from_numpy(cv2.resize(cv2.imread(paths[k]), (256, 256)))
loader = torch.utils.data.DataLoader(Jpegs(), batch_size=4, num_workers=1, persistent_workers=True)
while True:
    for batch in loader: pass
"""


def neighbour_jpegs() -> list[str]:
    sys.path.insert(0, str(HERE))
    from bench_classify import jpegs

    return [str(p) for p in jpegs(16, (1000, 1500), DATA / "load_neighbour")]


def _die_with_parent() -> None:
    """In a neighbour: be killed when the bench dies (Linux prctl PR_SET_PDEATHSIG), even if it is killed."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def start_load(load: str) -> list[subprocess.Popen]:
    procs = []
    if "loop" in load:
        procs.append(subprocess.Popen([sys.executable, "-c", LOOP], preexec_fn=_die_with_parent, start_new_session=True))
    if "DataLoader" in load:
        procs.append(subprocess.Popen([sys.executable, "-c", DATALOADER, *neighbour_jpegs()], preexec_fn=_die_with_parent,
                                      start_new_session=True))
    time.sleep(3.0 if procs else 0.5)  # the DataLoader's imports and first batches
    return procs


def stop_load(procs) -> None:
    """Kill each neighbour's process group (the DataLoader's worker with it) and reap it."""
    import signal

    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


# -- the children: one method, one part, a fresh process --------------------------------------------------------


class Recording:
    """Records each forward of a model as "K x T": K slices of the batch at once (kagglekit._slices; 1 for a
    forward run whole), each on T torch threads (torch.get_num_threads() in the forward) — what the thread
    policy chose."""

    def __init__(self):
        self.seen: dict[str, int] = {}
        self.at_once = 1

    def hook(self, module, args):
        import torch

        key = f"{self.at_once} x {torch.get_num_threads()}"
        self.seen[key] = self.seen.get(key, 0) + 1

    def watch_slices(self):
        from kagglekit import _slices

        run = _slices.run_in_slices

        def recorded(model, x, cores, workers, join=True):
            self.at_once = min(cores, workers, len(x))
            return run(model, x, cores, workers, join)

        _slices.run_in_slices = recorded


def _threads_arg(method: str, rec: Recording):
    """``threads=`` for a kagglekit row; SPLIT is the policy with its load measurement switched off (the
    cores are then the usable ones less kagglekit's reader threads, whatever else runs); WHOLE is the policy
    before the forward was sliced: each forward whole, on the free cores' intra-op threads."""
    from kagglekit import _threads

    if method == SPLIT:
        cpus, cores, _ = _threads._cpus()
        _threads._cpus = lambda: (cpus, cores, False)
    if method == WHOLE:
        _threads.CpuThreads.forward = lambda self, model, join=True: model if join else lambda x: [model(x)]
    rec.watch_slices()
    return {POLICY: None, SPLIT: None, WHOLE: None, ONE: 1, ALL: len(os.sched_getaffinity(0))}[method]


def child_a(method: str):
    from bench_sliding import conv1x1, make_image, monai, toolbelt

    from kagglekit.infer import sliding_window

    image, model, rec = make_image(8192), conv1x1(), Recording()
    args = (512, 384, 8)
    if method == "pytorch-toolbelt ImageSlicer+TileMerger":
        return lambda: toolbelt(model, image, *args), rec
    if method == "MONAI sliding_window_inference":
        return lambda: monai(model, image, *args), rec
    model.register_forward_pre_hook(rec.hook)
    threads = _threads_arg(method, rec)
    return lambda: sliding_window(model, image, *args, window="gaussian", progress=False, threads=threads), rec


def child_d(method: str):
    import segmentation_models_pytorch as smp
    import torch

    from bench_sliding import make_image

    from kagglekit.infer import sliding_window

    torch.manual_seed(0)
    model, rec = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1).eval(), Recording()
    image = make_image(1024, seed=1)
    model.register_forward_pre_hook(rec.hook)
    threads = _threads_arg(method, rec)
    return lambda: sliding_window(model, image, 256, 192, 8, window="gaussian", progress=False, threads=threads), rec


def classify_models():
    import torch

    from kagglekit.models import create

    torch.manual_seed(0)
    return [create("timm/mobilenetv3_small_050", num_classes=8).eval() for _ in range(5)]


def child_b(method: str):
    from bench_classify import jpegs, usual_loop

    from kagglekit.infer import predict

    paths = jpegs(64, (2000, 3000), DATA / "classify" / "a")
    models, rec = classify_models(), Recording()
    if method == "usual loop: DataLoader per fold, ttach D4":
        return lambda: usual_loop(models, paths, 128), rec
    for m in models:
        m.register_forward_pre_hook(rec.hook)
    threads = _threads_arg(method, rec)
    return lambda: predict(models, paths, size=128, tta="d4", batch_size=32, num_workers=2, progress=False,
                           threads=threads), rec


def tiff_slide() -> Path:
    import tifffile

    from bench_mil import DATA as MIL, tissue_slide

    MIL.mkdir(parents=True, exist_ok=True)
    path = MIL / "slide_20000.tif"
    if not path.is_file():
        tifffile.imwrite(path, tissue_slide(20000), tile=(256, 256), compression="jpeg", photometric="rgb")
    return path


def child_c(method: str):
    import torch

    import bench_mil
    from bench_mil import plain_loop

    from kagglekit.mil import extract_bag
    from kagglekit.models import create

    bench_mil.TOP_K = 256
    torch.manual_seed(0)
    model, rec, path = create("timm/resnet10t", num_classes=0).eval(), Recording(), tiff_slide()
    if method == "plain loop, one tile at a time":
        return lambda: plain_loop(model, path, 1), rec
    model.register_forward_pre_hook(rec.hook)
    threads = _threads_arg(method, rec)
    return lambda: extract_bag(model, path, name="resnet10t", tile=224, top_k=256, threads=threads), rec


PARTS = {
    "a": ("(a) sliding_window 8192² 1x1 conv", child_a,
          [POLICY, ONE, ALL, SPLIT, WHOLE, "pytorch-toolbelt ImageSlicer+TileMerger", "MONAI sliding_window_inference"]),
    "b": ("(b) predict, 64 JPEGs 3000x2000 -> 128, 5 folds x D4", child_b,
          [POLICY, ONE, ALL, WHOLE, "usual loop: DataLoader per fold, ttach D4"]),
    "c": ("(c) extract_bag, 20000² JPEG-in-TIFF, 256 tiles", child_c,
          [POLICY, ONE, ALL, WHOLE, "plain loop, one tile at a time"]),
    "d": ("(d) sliding_window 1024² smp Unet-r18", child_d, [POLICY, ONE, ALL, SPLIT, WHOLE]),
}
PART_LOADS = {"d": LOADS[:2]}
SKIP = {("a", "MONAI sliding_window_inference"): ("1 DataLoader", "loop + DataLoader")}  # 7 s idle: not in every load


def child(part: str, method: str) -> None:
    sys.path.insert(0, str(HERE))
    fn, rec = PARTS[part][1](method)
    times = []
    for _ in range(1 if method in ONE_CALL else CALLS[part]):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": min(times), "first": times[0], "threads": rec.seen}))


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_of(procs) -> float:
    """CPU seconds used so far by ``procs`` and their descendants, living (the DataLoader's worker) or ended
    and waited for (each process's ``children_*`` times)."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            ps = psutil.Process(p.pid)
            for q in [ps, *ps.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


QUIET, RETRIES, PATIENCE = 0.15, 4, 900.0  # foreign cores below which a row counts as clean; tries; seconds to wait


def foreign_now(seconds: float = 1.0) -> float:
    """Cores kept busy over the next ``seconds`` (this bench runs nothing meanwhile)."""
    before = (time.monotonic(), _busy_seconds())
    time.sleep(seconds)
    return max(0.0, (_busy_seconds() - before[1]) / (time.monotonic() - before[0]))


def wait_quiet() -> None:
    """Wait (at most PATIENCE seconds) until no other user's process keeps a core busy: the machine is shared,
    and this bench's neighbours are not running while it waits (they would slow the other user's work too)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and foreign_now() > QUIET:
        time.sleep(4.0)


def clean_child(part: str, method: str, load: str) -> dict:
    """:func:`run_child` beside a fresh set of ``load``'s neighbours, on an otherwise quiet machine; again (up to
    RETRIES tries) while another user's load was measured during it; the last try is kept whatever its foreign
    load (the table shows it)."""
    for _ in range(RETRIES):
        wait_quiet()
        neighbours = start_load(load)
        try:
            result = run_child(part, method, neighbours)
        finally:
            stop_load(neighbours)
        if result["foreign"] <= QUIET:
            break
        print(f"  ({method}: {result['foreign']:.2f} foreign cores during the run; measuring it again)", flush=True)
    return result


def run_child(part: str, method: str, neighbours) -> dict:
    """The child's result, and ``foreign``: the cores kept busy during it by anything but the child and the
    neighbours this bench started (another user's processes: should be near 0 for a clean figure)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    before = (time.monotonic(), _busy_seconds(), _cpu_of(neighbours), os.times())
    done = subprocess.run([sys.executable, __file__, "--child", part, method], capture_output=True, text=True, env=env)
    after = (time.monotonic(), _busy_seconds(), _cpu_of(neighbours), os.times())
    if done.returncode:
        raise RuntimeError(f"{part} {method}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    child_cpu = (after[3].children_user + after[3].children_system) - (before[3].children_user + before[3].children_system)
    foreign = (after[1] - before[1]) - child_cpu - (after[2] - before[2])
    result["foreign"] = max(0.0, foreign / (after[0] - before[0]))
    return result


# -- the parent ----------------------------------------------------------------------------------------------


def prepare(part: str) -> None:
    """Inputs written once (bench/_data), so that no child's time includes making them."""
    sys.path.insert(0, str(HERE))
    neighbour_jpegs()
    if part == "b":
        from bench_classify import jpegs

        jpegs(64, (2000, 3000), DATA / "classify" / "a")
    if part == "c":
        tiff_slide()


def threads_note(seen: dict) -> str:
    total = sum(seen.values())
    return ", ".join(f"{n}: {100 * c / total:.0f} %" for n, c in sorted(seen.items())) if total else ""


def rounds_for(load: str, method: str, rounds: int) -> int:
    """``rounds`` for kagglekit's rows idle (the best idle figure is a target's yardstick) and for the policy
    and threads=1 under load (the rows a target compares); one for the rest (peers and all-cores runs under
    load take up to minutes each, and no target compares them to a few percent)."""
    ours = OURS if load == "idle" else (POLICY, ONE)
    return rounds if method in ours else 1


CACHE = DATA / "load_rows.json"  # each row's result as measured, so that --resume goes on after an interruption


def measure_part(part: str, rounds: int, resume: bool = False) -> tuple[list[list], dict]:
    name, _, methods = PARTS[part]
    prepare(part)
    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    best: dict = {}
    for load in PART_LOADS.get(part, LOADS):
        for n in range(rounds):
            ours = [m for m in methods if m in OURS]
            turn = ours[n % len(ours):] + ours[: n % len(ours)]  # kagglekit's rows take turns going first
            for method in turn + [m for m in methods if m not in ours]:
                if load in SKIP.get((part, method), ()) or n >= rounds_for(load, method, rounds):
                    continue
                key = f"{part} | {load} | {method} | {n}"
                if resume and key in cache:
                    r = cache[key]
                else:
                    r = cache[key] = clean_child(part, method, load)
                    CACHE.write_text(json.dumps(cache, indent=1))
                key = (load, method)
                every = best.get(key, {}).get("every", []) + [r["seconds"]]
                if key not in best or r["seconds"] < best[key]["seconds"]:
                    best[key] = dict(r)
                best[key]["every"] = every
                print(f"{name} | {load} | {method}: {r['seconds']:.2f} s (first call {r['first']:.2f} s) "
                      f"{threads_note(r['threads'])}; foreign load {r['foreign']:.2f} cores", flush=True)
    rows = []
    for load in PART_LOADS.get(part, LOADS):
        idle_policy = best[("idle", POLICY)]["seconds"]
        for method in methods:
            r = best.get((load, method))
            if r is None:
                continue
            spread = f"{min(r['every']):.3g}–{max(r['every']):.3g} ({len(r['every'])})" if len(r["every"]) > 1 else ""
            rows.append([name, load, method, r["seconds"], spread, r["first"], r["seconds"] / idle_policy,
                         r["seconds"] / best[(load, POLICY)]["seconds"], threads_note(r["threads"]), r["foreign"]])
    return rows, best


def verdicts(part: str, best: dict) -> list[str]:
    def s(load, method):
        return best[(load, method)]["seconds"]

    ok = lambda c: "met" if c else "NOT met"  # noqa: E731
    lines = []
    if part == "a":
        tb = "pytorch-toolbelt ImageSlicer+TileMerger"
        ratio, lead = s("1 CPU loop", POLICY) / s("idle", POLICY), s("1 CPU loop", tb) / s("1 CPU loop", POLICY)
        lines += [f"- (a) one busy core (1 CPU loop) at most 1.2x its idle time: {ratio:.2f}x — {ok(ratio <= 1.2)}",
                  f"- (a) at least 3x faster than pytorch-toolbelt under the same load: {lead:.2f}x — {ok(lead >= 3)}"]
        for load in LOADS[2:]:
            lines.append(f"- (a) {load} (not a target): {s(load, POLICY) / s('idle', POLICY):.2f}x its idle time, "
                         f"{s(load, tb) / s(load, POLICY):.2f}x faster than toolbelt")
        return lines
    if part == "d":
        return [f"- (d) not a target: idle, the policy takes {s('idle', POLICY) / s('idle', ALL):.2f}x the all-cores "
                f"time, {s('idle', POLICY) / s('idle', ONE):.2f}x the one-thread time and {s('idle', POLICY) / s('idle', WHOLE):.2f}x "
                f"the unsliced policy's; beside one CPU loop {s('1 CPU loop', POLICY) / s('1 CPU loop', ALL):.2f}x, "
                f"{s('1 CPU loop', POLICY) / s('1 CPU loop', ONE):.2f}x and {s('1 CPU loop', POLICY) / s('1 CPU loop', WHOLE):.2f}x"]
    def rounds(load, method):
        every = best[(load, method)]["every"]
        return f"{min(every):.2f}–{max(every):.2f} s over {len(every)} rounds"

    def same_threads(load, a, b):
        return best[(load, a)]["threads"].keys() == best[(load, b)]["threads"].keys()

    best_idle = min([m for m in OURS if ("idle", m) in best], key=lambda m: s("idle", m))
    within = s("idle", POLICY) / s("idle", best_idle)
    lines.append(f"- ({part}) idle: within 5 % of the best idle kagglekit figure ({best_idle}, {s('idle', best_idle):.2f} s): "
                 f"{within:.3f}x — {ok(within <= 1.05)} (policy {rounds('idle', POLICY)}; {best_idle} "
                 f"{rounds('idle', best_idle)})")
    for load in LOADS[1:]:
        r = s(load, POLICY) / s(load, ONE)
        note = ""
        if r > 1.0:
            note = (f" by {100 * (r - 1):.1f} %: the policy {rounds(load, POLICY)}, threads=1 {rounds(load, ONE)}"
                    + ("; both ran every forward on the same thread count, so the gap is run-to-run noise"
                       if same_threads(load, POLICY, ONE) else ""))
        lines.append(f"- ({part}) {load}: not slower than threads=1: {r:.3f}x its time — {ok(r <= 1.0)}{note}")
    return lines


HEADERS = ["workload", "load beside it", "method", "best s", "rounds' range s (n)", "first call s", "x the idle policy run",
           "x the policy under this load", "model forwards: K slices at once x T threads each", "foreign load (cores)"]
SECTIONS = {"a": "Thread policy under load (a): sliding_window (bench_load.py)",
            "b": "Thread policy under load (b): predict, decode-bound (bench_load.py)",
            "c": "Thread policy under load (c): extract_bag on a TIFF (bench_load.py)",
            "d": "Thread policy under load (d): sliding_window of a Unet, the model's own threads (bench_load.py)"}


PAIRED_CALLS = {"b": 8, "c": 6}


def _in_turns(runs: dict, calls: int) -> dict:
    """Each of ``runs``' callables ``calls`` times, in turns (the first to go alternates), after a warm-up call each."""
    for fn in runs.values():
        fn()
    times: dict = {m: [] for m in runs}
    order = list(runs)
    for n in range(calls):
        for m in order if n % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            runs[m]()
            times[m].append(time.perf_counter() - t)
    return times


def paired(part: str) -> None:
    """Part (b) or (c) in one process, call by call in turns: idle, the policy against ``threads=all cores``
    (the idle target's yardstick); beside each load, the policy against ``threads=1``. The fresh-child rows'
    spread (start-up, page cache, the host) is larger than the few percent these targets are about; here it
    cancels. Recorded as its own section."""
    import statistics

    from _common import machine, markdown_table, record

    prepare(part)
    rows, lines = [], []
    for load in LOADS:
        other = ALL if load == "idle" else ONE
        wait_quiet()
        neighbours = start_load(load) if load != "idle" else []
        try:
            recs = {m: PARTS[part][1](m) for m in (POLICY, other)}
            times = _in_turns({m: fn for m, (fn, _) in recs.items()}, PAIRED_CALLS[part])
        finally:
            stop_load(neighbours)
        for m in (POLICY, other):
            rows.append([PARTS[part][0], load, m, min(times[m]), statistics.median(times[m]), max(times[m]),
                         threads_note(recs[m][1].seen)])
        best = min(times[POLICY]) / min(times[other])
        median = statistics.median(times[POLICY]) / statistics.median(times[other])
        if load == "idle":
            lines.append(f"- ({part}) idle, the policy within 5 % of threads=all cores: {best:.3f}x (best calls), "
                         f"{median:.3f}x (medians) — {'met' if best <= 1.05 else 'NOT met'}")
        else:
            lines.append(f"- ({part}) {load}, the policy not slower than threads=1: {best:.3f}x (best calls), "
                         f"{median:.3f}x (medians) — {'met' if min(best, median) <= 1.0 else 'NOT met'}")
    body = (f"One process per load; {PAIRED_CALLS[part]} calls of each method in turns after one warm-up call each; "
            "the neighbours as in the fresh-child runs, started before the warm-up calls. "
            f"Command: `.venv/bin/python bench/bench_load.py --paired {part}`.\n\n"
            + markdown_table(["workload", "load beside it", "method", "best s", "median s", "worst s",
                              "model forwards: K slices at once x T threads each"], rows) + "\n\n" + "\n".join(lines))
    record(f"Thread policy under load ({part}, paired): in one process (bench_load.py --paired)", body,
           machine().rsplit(", load average", 1)[0])


def main(parts, rounds: int = 1, resume: bool = False) -> None:
    from _common import machine, markdown_table, record

    for part in parts:
        load = os.getloadavg()[0]
        line = machine().rsplit(", load average", 1)[0] + f", load average {load:.2f} when the part started"
        start = time.perf_counter()
        rows, best = measure_part(part, rounds, resume)
        body = (f"Each figure: a fresh child process, the best of its calls ({CALLS[part]}; MONAI 1) and of {rounds} "
                "rounds for kagglekit's rows idle and for the policy and threads=1 under load (one for the others); "
                f"its neighbours are started for it (and stopped after it) once the machine is quiet. Loads: {', '.join(LOADS)} (see the script's "
                f"docstring). `threads=all cores`: {len(os.sched_getaffinity(0))}, torch's default here; the peers run "
                "with torch's default. Foreign load: cores kept busy during the row by processes other than the run "
                "and its neighbours (another user's; /proc/stat less their CPU time), so a figure far from 0 is not "
                f"clean. Command: `.venv/bin/python bench/bench_load.py {part}`, {time.perf_counter() - start:.0f} s.\n\n"
                + markdown_table(HEADERS, rows) + "\n\n" + "\n".join(verdicts(part, best)))
        record(SECTIONS[part], body, line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--paired"]:
        sys.path.insert(0, str(HERE))
        for part in sys.argv[2:] or ["b", "c"]:
            paired(part)
    else:
        sys.path.insert(0, str(HERE))
        rounds = next((int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--rounds=")), 1)
        main([a for a in sys.argv[1:] if not a.startswith("--")] or ["a", "b", "c", "d"], rounds, "--resume" in sys.argv)
