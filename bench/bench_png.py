"""Decoding one huge PNG (32768 x 16384 RGB uint8, 1536 MB decoded) with every Python PNG decoder at hand.

What ``open_image`` must do for a big PNG slide: turn the file into an (H, W, 3) RGB uint8 array, once,
for random tile access; and, for thumbnails, ideally read it at reduced resolution. Decoders: OpenCV
(imread from path, imdecode of the file's bytes, IMREAD_REDUCED_COLOR_8), Pillow (open from path or
bytes, reduce(16)), imagecodecs (png_decode: libpng; spng_decode: libspng), pyspng (libspng), pyvips
(sequential full decode from path or bytes, thumbnail, sequential crop of one 4096 x 4096 region).

Each (decoder, mode) runs in a fresh child process (this script with --child), twice, the rows taking
turns; seconds are the best of the 2, memory the larger peak. Peak memory: the child's VmHWM, reset
right before the call, less its RSS at that moment: what the call itself added. Rows "from bytes"
read the file inside the timed call, so its bytes count. Every row returns RGB: OpenCV's BGR is turned
in place (no second copy), inside the timed call. Equality: SHA-1 of the whole array (or the crop)
against OpenCV imread's. The PNG is made once from skimage's immunohistochemistry image (tiles in
random orientations on a white background with a black scanner margin), written by cv2.imwrite at its
default compression, and cached under /tmp.

Run: .venv/bin/python bench/bench_png.py
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
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


def _bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def _rgb(cv2, bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)


def _pillow(image_module, source):
    image_module.MAX_IMAGE_PIXELS = None  # else a DecompressionBombError above 179 Mpx
    return image_module.open(source)


# (decoder, module, version of the module, {mode: (kind, fn(module, path) -> RGB array)})
DECODERS = [
    ("OpenCV", "cv2", lambda m: m.__version__, {
        "imread from path": ("full", lambda cv2, p: _rgb(cv2, cv2.imread(p, cv2.IMREAD_COLOR))),
        "imdecode from bytes": ("full", lambda cv2, p: _rgb(cv2, cv2.imdecode(np.frombuffer(_bytes(p), np.uint8),
                                                                               cv2.IMREAD_COLOR))),
        "imread IMREAD_REDUCED_COLOR_8": ("reduced", lambda cv2, p: _rgb(cv2, cv2.imread(p, cv2.IMREAD_REDUCED_COLOR_8))),
    }),
    ("Pillow", "PIL.Image", lambda m: __import__("PIL").__version__, {
        "open from path, np.asarray": ("full", lambda m, p: np.asarray(_pillow(m, p))),
        "open from bytes, np.asarray": ("full", lambda m, p: np.asarray(_pillow(m, io.BytesIO(_bytes(p))))),
        "open, reduce(16)": ("reduced", lambda m, p: np.asarray(_pillow(m, p).reduce(16))),
    }),
    ("imagecodecs png_decode (libpng)", "imagecodecs", lambda m: f"{m.__version__} (libpng {m.png_version()})", {
        "from bytes": ("full", lambda m, p: m.png_decode(_bytes(p))),
    }),
    ("imagecodecs spng_decode (libspng)", "imagecodecs", lambda m: f"{m.__version__} (libspng {m.spng_version()})", {
        "from bytes": ("full", lambda m, p: m.spng_decode(_bytes(p))),
    }),
    ("pyspng", "pyspng", lambda m: f"{_distribution('pyspng')} {m.__version__}", {
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


def _distribution(module: str) -> str:
    from importlib.metadata import packages_distributions

    return "/".join(packages_distributions().get(module, [module]))


def _sha1(a: np.ndarray) -> str:
    return hashlib.sha1(memoryview(np.ascontiguousarray(a)).cast("B")).hexdigest()


def child(decoder: str, mode: str) -> dict:
    """Run one (decoder, mode) in this fresh process; return its seconds, memory, output shape and hashes."""
    import importlib

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
    proc = subprocess.run([sys.executable, __file__, "--child", decoder, mode], capture_output=True, text=True,
                          timeout=1200)
    if proc.returncode != 0:
        return {"error": f"child exited {proc.returncode}: {proc.stderr.strip()[-100:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(rounds: int = 2) -> None:
    make_png()
    size_mb = PNG.stat().st_size / 2**20
    print(f"{PNG}: {size_mb:.0f} MB on disk, {FULL_MB / size_mb:.1f}x compression", flush=True)
    jobs = [(d[0], mode, kind) for d in DECODERS for mode, (kind, _) in d[3].items()]
    best: dict = {}
    for _ in range(rounds):
        for decoder, mode, _kind in jobs:
            r = run_child(decoder, mode)
            print(decoder, mode, r, flush=True)
            old = best.get((decoder, mode))
            if old and "error" not in old and "error" not in r:
                r["seconds"], r["peak_mb"] = min(r["seconds"], old["seconds"]), max(r["peak_mb"], old["peak_mb"])
            best[(decoder, mode)] = r if "error" not in r or not old else old
    ref = best[("OpenCV", "imread from path")]
    rows = []
    for decoder, mode, kind in jobs:
        r = best[(decoder, mode)]
        if "error" in r:
            rows.append([decoder, r.get("version", "-"), mode, r["error"], "-", "-", "-"])
            continue
        h, w = r["shape"][:2]
        equal = {"full": r["sha1"] == ref.get("sha1"), "crop": r["sha1"] == ref.get("crop_sha1")}.get(
            kind, f"n/a (reduced, {w} x {h})")
        rows.append([decoder, r["version"], mode, r["seconds"], f"{r['peak_mb']:.0f}", r["peak_mb"] / FULL_MB,
                     {True: "yes", False: "NO"}.get(equal, equal)])
    headers = ["decoder", "version", "mode", "seconds", "peak RSS over baseline MB",
               f"x decoded size ({FULL_MB:.0f} MB)", "equal to OpenCV"]
    full = [(best[(d, m)], d, m) for d, m, k in jobs if k == "full" and "error" not in best[(d, m)]]
    fastest, leanest = min(full, key=lambda t: t[0]["seconds"]), min(full, key=lambda t: t[0]["peak_mb"])
    setup = (f"Test file: {PNG.name}, {size_mb:.0f} MB on disk ({FULL_MB / size_mb:.1f}x compression), made by "
             "cv2.imwrite from tiled skimage immunohistochemistry() on a flat background. Each row: a fresh child "
             f"process, best seconds and largest peak of {rounds} interleaved runs; memory is the child's peak RSS "
             "over its RSS right before the call. Every row returns RGB (OpenCV's BGR converted in place, timed).")
    summary = (f"Full decode, fastest: {fastest[1]} {fastest[2]} ({fastest[0]['seconds']:.1f} s); least memory: "
               f"{leanest[1]} {leanest[2]} ({leanest[0]['peak_mb']:.0f} MB, "
               f"{leanest[0]['peak_mb'] / FULL_MB:.2f}x the decoded size). A non-interlaced PNG has no "
               "reduced-resolution encoding: every decoder inflates every row. OpenCV's IMREAD_REDUCED_* and "
               "Pillow's reduce() decode the full image first (full-size peak); pyvips thumbnail and sequential "
               "crop stream rows through small buffers, so their peak memory is small, but their time is that of "
               "inflating the rows they pass (all rows for a thumbnail, rows down to the crop's bottom for a crop).")
    record(SECTION, f"{setup}\n\n{markdown_table(headers, rows)}\n\n{summary}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()
