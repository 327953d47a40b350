"""Decoding one huge PNG (32768 x 16384 RGB uint8, 1536 MB decoded) with every Python PNG decoder at hand.

What ``open_image`` must do for a big PNG slide: turn the file into an (H, W, 3) RGB uint8 array, once,
for random tile access; and, for thumbnails, ideally read it at reduced resolution. Decoders: OpenCV
(imread from path, imread into a preallocated dst, imdecode of the file's bytes, IMREAD_REDUCED_COLOR_8),
Pillow (open from path or bytes, reduce(16)), imagecodecs (png_decode: libpng; spng_decode: libspng),
pyspng (libspng), pyvips (sequential full decode from path or bytes, thumbnail, sequential crop of one
4096 x 4096 region). A decoder that does not import gets a "not installed" row.

Each (decoder, mode) runs in a fresh child process (this script with --child), twice, the rows taking
turns; seconds are the best of the 2, memory the larger peak. Peak memory: the child's VmHWM, reset
right before the call, less its RSS at that moment: what the call itself added. Rows "from bytes"
read the file inside the timed call, so its bytes count. Every row returns RGB (OpenCV: IMREAD_COLOR_RGB
where it has it, else a timed cvtColor). Equality: SHA-1 of the whole array (or the crop)
against OpenCV imread's. The PNG is made once from skimage's immunohistochemistry image (tiles in
random orientations on a white background with a black scanner margin), written by cv2.imwrite at its
default compression, and cached under /tmp.

Run: .venv/bin/python bench/bench_png.py
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import struct
import subprocess
import sys
import time
from importlib.metadata import packages_distributions
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, peak_rss_mb, record, reset_peak_rss, rss_mb

W, H = 32768, 16384
FULL_MB = W * H * 3 / 2**20
PNG = Path("/tmp/kagglekit_bench/slide_32768x16384.png")
CROP = (14336, 6144, 4096, 4096)  # x, y, w, h: a region in the middle
THUMB = 2048  # width of pyvips' thumbnail (Pillow reduce(16) and OpenCV REDUCED_8 give 2048 and 4096)
SECTION = "PNG decoders (32768 x 16384 RGB)"


def make_png(path: Path = PNG) -> Path:
    """A slide-like PNG: 512 x 512 tiles of a real IHC image in random flips/rotations where a smooth blob
    mask says tissue (about 45 %), flat light background elsewhere, a black 1024-px scanner margin."""
    if path.is_file():
        return path
    import cv2
    from skimage.data import immunohistochemistry

    base = immunohistochemistry()[..., ::-1]  # BGR, for cv2.imwrite
    tiles = [np.ascontiguousarray(np.rot90(base[:, ::-1] if f else base, k)) for f in (0, 1) for k in range(4)]
    rng = np.random.default_rng(0)
    field = cv2.resize(rng.random((9, 17)).astype(np.float32), (W // 16, H // 16), interpolation=cv2.INTER_CUBIC)
    threshold = np.quantile(field, 0.55)
    image = np.empty((H, W, 3), np.uint8)
    for y in range(0, H, 512):
        tissue = np.concatenate([tiles[k] for k in rng.integers(0, 8, W // 512)], axis=1)
        mask = cv2.resize(field[y // 16:(y + 512) // 16], (W, 512), interpolation=cv2.INTER_LINEAR) > threshold
        background = np.uint8(236 + 8 * y // H)
        image[y:y + 512] = np.where(mask[..., None], tissue, background)
    image[:, :1024] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.png")
    if not cv2.imwrite(str(partial), image):
        raise OSError(f"cv2.imwrite failed for {partial}")
    partial.rename(path)
    return path


def _bytes(path: str) -> bytes:  # inside the timed call: the "from bytes" rows count reading the file
    return Path(path).read_bytes()


def _cv2(cv2, decode, *args):
    """``decode(*args, flags)`` to RGB: OpenCV >= 4.11 decodes to RGB itself (IMREAD_COLOR_RGB); older
    releases return BGR, converted here (cvtColor copies, even given dst=src)."""
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    out = decode(*args, rgb or cv2.IMREAD_COLOR)
    return out if rgb else cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def _empty(path: str) -> np.ndarray:
    """An uninitialised (H, W, 3) uint8 array, H and W from the PNG's IHDR chunk (bytes 16-24)."""
    with open(path, "rb") as f:
        width, height = struct.unpack(">II", f.read(24)[16:24])
    return np.empty((height, width, 3), np.uint8)


def _pillow(image_module, source):
    image_module.MAX_IMAGE_PIXELS = None  # else a DecompressionBombError above 179 Mpx
    return image_module.open(source)


# (decoder, module, version of the module, {mode: (kind, fn(module, path) -> RGB array)})
DECODERS = [
    ("OpenCV", "cv2", lambda m: m.__version__, {
        "imread from path": ("full", lambda cv2, p: _cv2(cv2, cv2.imread, p)),
        "imread from path into a preallocated dst": ("full", lambda cv2, p: _cv2(cv2, cv2.imread, p, _empty(p))),
        "imdecode from bytes": ("full", lambda cv2, p: _cv2(cv2, cv2.imdecode, np.frombuffer(_bytes(p), np.uint8))),
        "imread IMREAD_REDUCED_COLOR_8": ("reduced", lambda cv2, p: cv2.cvtColor(
            cv2.imread(p, cv2.IMREAD_REDUCED_COLOR_8), cv2.COLOR_BGR2RGB)),
    }),
    ("Pillow", "PIL.Image", lambda m: __import__("PIL").__version__, {
        "open from path, np.asarray": ("full", lambda m, p: np.asarray(_pillow(m, p))),
        "open from bytes, np.asarray": ("full", lambda m, p: np.asarray(_pillow(m, io.BytesIO(_bytes(p))))),
        "open, reduce(16)": ("reduced", lambda m, p: np.asarray(_pillow(m, p).reduce(16))),
    }),
    ("imagecodecs png_decode (libpng)", "imagecodecs", lambda m: f"{m.__version__} ({m.png_version()})", {
        "from bytes": ("full", lambda m, p: m.png_decode(_bytes(p))),
    }),
    ("imagecodecs spng_decode (libspng)", "imagecodecs", lambda m: f"{m.__version__} ({m.spng_version()})", {
        "from bytes": ("full", lambda m, p: m.spng_decode(_bytes(p))),
    }),
    ("pyspng", "pyspng", lambda m: f"{packages_distributions()['pyspng'][0]} {m.__version__}", {
        "load from bytes": ("full", lambda m, p: m.load(_bytes(p))),
    }),
    ("pyvips", "pyvips", lambda m: f"{m.__version__} (libvips {m.version(0)}.{m.version(1)}.{m.version(2)})", {
        "from path, sequential, .numpy()": ("full", lambda m, p: m.Image.new_from_file(p, access="sequential").numpy()),
        "from bytes, sequential, .numpy()": ("full", lambda m, p: m.Image.new_from_buffer(
            _bytes(p), "", access="sequential").numpy()),
        f"Image.thumbnail(path, {THUMB})": ("reduced", lambda m, p: m.Image.thumbnail(p, THUMB).numpy()),
        "sequential crop 4096 x 4096 at (14336, 6144)": ("crop", lambda m, p: m.Image.new_from_file(
            p, access="sequential").crop(*CROP).numpy()),
    }),
]


def _sha1(a: np.ndarray) -> str:
    return hashlib.sha1(memoryview(np.ascontiguousarray(a)).cast("B")).hexdigest()


def child(decoder: str, mode: str) -> dict:
    """Run one (decoder, mode) in this fresh process; return its seconds, memory, output shape and hashes."""
    _, module, version, modes = next(d for d in DECODERS if d[0] == decoder)
    kind, fn = modes[mode]
    try:
        mod = importlib.import_module(module)
        ver = version(mod)
    except Exception as exc:  # noqa: BLE001 - any failure to import or to name a version means "not installed"
        return {"error": f"not installed ({type(exc).__name__})"}
    reset_peak_rss()
    base = rss_mb()
    start = time.perf_counter()
    try:
        out = fn(mod, str(PNG))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return {"version": ver, "error": f"failed: {type(exc).__name__}: {exc}"[:120]}
    seconds = time.perf_counter() - start
    result = {"version": ver, "seconds": seconds, "peak_mb": peak_rss_mb() - base, "shape": list(out.shape),
              "dtype": str(out.dtype), "sha1": _sha1(out)}
    if kind == "full" and out.shape == (H, W, 3):
        x, y, w, h = CROP
        result["crop_sha1"] = _sha1(out[y:y + h, x:x + w])
    return result


def run_child(decoder: str, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", decoder, mode], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"child exited {proc.returncode}: {proc.stderr.strip()[-100:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(rounds: int = 2) -> None:
    make_png()
    size_mb = PNG.stat().st_size / 2**20
    print(f"{PNG}: {size_mb:.0f} MB on disk, {FULL_MB / size_mb:.1f}x compression", flush=True)
    jobs = [(d[0], mode, kind) for d in DECODERS for mode, (kind, _) in d[3].items()]
    runs: dict = {job: [] for job in jobs}
    for _ in range(rounds):  # the rows take turns, as in _common.interleaved
        for job in jobs:
            runs[job].append(run_child(*job[:2]))
            print(*job[:2], runs[job][-1], flush=True)
    best = {}
    for job, results in runs.items():
        ok = [r for r in results if "error" not in r]
        best[job] = dict(ok[-1], seconds=min(r["seconds"] for r in ok), peak_mb=max(r["peak_mb"] for r in ok)) \
            if ok else results[-1]
    ref = best[("OpenCV", "imread from path", "full")]
    rows = []
    for decoder, mode, kind in jobs:
        r = best[(decoder, mode, kind)]
        if "error" in r:
            rows.append([decoder, r.get("version", "-"), mode, r["error"], "-", "-", "-"])
            continue
        h, w = r["shape"][:2]
        equal = {"full": r["sha1"] == ref.get("sha1"), "crop": r["sha1"] == ref.get("crop_sha1")}.get(
            kind, f"n/a (reduced, {w} x {h})") if "sha1" in ref else "no OpenCV reference"
        rows.append([decoder, r["version"], mode, r["seconds"], f"{r['peak_mb']:.0f}", r["peak_mb"] / FULL_MB,
                     {True: "yes", False: "NO"}.get(equal, equal)])
    headers = ["decoder", "version", "mode", "seconds", "peak RSS over baseline MB",
               f"x decoded size ({FULL_MB:.0f} MB)", "equal to OpenCV"]
    full = [(best[(d, m, k)], d, m) for d, m, k in jobs if k == "full" and "error" not in best[(d, m, k)]]
    fastest, leanest = min(full, key=lambda t: t[0]["seconds"]), min(full, key=lambda t: t[0]["peak_mb"])
    setup = (f"Test file: {PNG.name}, {size_mb:.0f} MB on disk ({FULL_MB / size_mb:.1f}x compression), made by "
             "cv2.imwrite from tiled skimage immunohistochemistry() on a flat background. Each row: a fresh child "
             f"process, best seconds and largest peak of {rounds} interleaved runs; memory is the child's peak RSS "
             "over its RSS right before the call. Every row returns RGB; x decoded size is the peak over the full "
             "decoded size, for every row.")
    reduced = [(best[(d, m, k)], f"{d} {m}") for d, m, k in jobs if k != "full" and "error" not in best[(d, m, k)]]
    summary = (f"Full decode, fastest: {fastest[1]} {fastest[2]} ({fastest[0]['seconds']:.1f} s); least memory: "
               f"{leanest[1]} {leanest[2]} ({leanest[0]['peak_mb'] / FULL_MB:.2f}x the decoded size). A "
               "non-interlaced PNG has no reduced-resolution encoding: a decoder must inflate every row above the "
               "last one it needs. " + "; ".join(f"{m}: {r['seconds']:.1f} s, {r['peak_mb'] / FULL_MB:.2f}x"
                                                  for r, m in reduced) +
               ". OpenCV's IMREAD_REDUCED_* and Pillow's reduce() decode the whole image first, then shrink it; "
               "pyvips' thumbnail and sequential crop stream the rows through small buffers: little memory, but "
               "about the time of its full decode (the crop stops early, at its last row).")
    record(SECTION, f"{setup}\n\n{markdown_table(headers, rows)}\n\n{summary}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()
