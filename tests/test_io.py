"""kagglekit.io against numpy slicing of the fully decoded file (tifffile / OpenCV / PIL as oracles)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from kagglekit.errors import ImageReadError, InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.io import ArraySource, open_image, open_volume

RNG = np.random.default_rng(0)


def window(array: np.ndarray, y: int, x: int, h: int, w: int) -> np.ndarray:
    """The oracle: pad the whole array with zeros, then slice."""
    if array.ndim == 2:
        array = array[:, :, None]
    pad = max(h, w)
    padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)))
    return padded[y + pad : y + pad + h, x + pad : x + pad + w]


WINDOWS = [(0, 0, 17, 23), (-5, -7, 20, 30), (40, 60, 64, 64), (95, 120, 30, 40), (-10, -10, 200, 260)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_reads_rgb_order_and_windows(tmp_path, dtype, channels):
    info = np.iinfo(dtype)
    image = RNG.integers(0, info.max, (101, 131, channels), dtype=dtype)
    path = tmp_path / "x.png"
    bgr = image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), bgr)
    src = open_image(path)
    assert src.shape == (101, 131, channels) and src.dtype == dtype
    for y, x, h, w in WINDOWS:
        np.testing.assert_array_equal(src.read(y, x, h, w), window(image, y, x, h, w))


def test_jpeg_matches_pil(tmp_path):
    from PIL import Image

    image = cv2.GaussianBlur(RNG.integers(0, 255, (64, 80, 3), dtype=np.uint8), (7, 7), 2)
    path = tmp_path / "x.jpg"
    Image.fromarray(image).save(path, quality=95)
    ours = open_image(path).read(0, 0, 64, 80).astype(int)
    pil = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(ours - pil).mean() < 1.5  # same file, two JPEG decoders: equal up to IDCT rounding
    assert np.abs(ours - image).mean() < 4  # and RGB order, not BGR


def assert_header_shape_is_the_decoded_one(path, decoded_on_open: bool) -> None:
    """Opening reads only the header unless ``decoded_on_open``; shape, dtype and pixels equal OpenCV's decoding."""
    from kagglekit.io.decoded import decode_image

    src = open_image(path)
    assert (src._array is not None) == decoded_on_open
    decoded = decode_image(path)
    assert src.shape == decoded.shape and src.dtype == decoded.dtype
    np.testing.assert_array_equal(src.read(0, 0, *decoded.shape[:2]), decoded)


@pytest.mark.parametrize("kind", ["rgb", "palette", "rgb-transparent", "palette-transparent", "gray-transparent"])
def test_png_shape_from_header_equals_decoded_shape(tmp_path, kind):
    """A tRNS chunk makes OpenCV add an alpha channel: such PNGs get no header shape and are decoded."""
    from PIL import Image

    rgb = RNG.integers(0, 255, (21, 34, 3), dtype=np.uint8)
    image = Image.fromarray(rgb[:, :, 0]) if kind.startswith("gray") else Image.fromarray(rgb)
    if kind.startswith("palette"):
        image = image.quantize(16)
    path = tmp_path / "x.png"
    transparency = {"rgb-transparent": tuple(int(v) for v in rgb[0, 0]), "palette-transparent": 0, "gray-transparent": int(rgb[0, 0, 0])}
    image.save(path, **({"transparency": transparency[kind]} if kind in transparency else {}))
    assert_header_shape_is_the_decoded_one(path, decoded_on_open=kind in transparency)


@pytest.mark.parametrize("kind", ["color", "gray", "progressive", "exif-rotated", "cmyk"])
def test_jpeg_shape_from_header_equals_decoded_shape(tmp_path, kind):
    """Opening a JPEG reads only its header; the shape must be what OpenCV decodes."""
    from PIL import Image

    image = RNG.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / "x.jpg"
    if kind in ("color", "gray", "progressive"):
        data = image[:, :, 0] if kind == "gray" else image
        cv2.imwrite(str(path), data, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(kind == "progressive")])
    elif kind == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        Image.fromarray(image).save(path, exif=exif)
    else:
        Image.fromarray(image).convert("CMYK").save(path)
    assert_header_shape_is_the_decoded_one(path, decoded_on_open=kind == "cmyk")  # CMYK: no header shape


@pytest.mark.parametrize(("layout", "channels"), [(lay, c) for lay in ("tiled", "striped", "uncompressed") for c in (1, 3)] + [("planar", 3)])
def test_tiff_windows(tmp_path, layout, channels):
    image = RNG.integers(0, 60000, (150, 170, channels), dtype=np.uint16)
    path = tmp_path / "x.tif"
    kwargs = {
        "tiled": dict(tile=(32, 48), compression="zlib"),
        "striped": dict(rowsperstrip=7, compression="zlib"),
        "planar": dict(rowsperstrip=16, planarconfig="separate", compression="zlib"),
        "uncompressed": dict(rowsperstrip=10),
    }[layout]
    data = image[:, :, 0] if channels == 1 else image
    if layout == "planar":
        data = np.moveaxis(image, 2, 0)
    tifffile.imwrite(path, data, photometric="rgb" if channels == 3 else "minisblack", **kwargs)
    src = open_image(path)
    assert src.shape == (150, 170, channels)
    for y, x, h, w in WINDOWS:
        np.testing.assert_array_equal(src.read(y, x, h, w), window(image, y, x, h, w))


@pytest.mark.parametrize(("layout", "segment", "planes"), [("tiled", (32, 48), 1), ("striped", (7, 170), 1), ("planar", (16, 170), 3)])
def test_tiff_prefetch_decodes_each_touched_segment_once(tmp_path, layout, segment, planes):
    image = RNG.integers(0, 255, (150, 170, 3), dtype=np.uint8)
    path = tmp_path / "x.tif"
    kwargs = {"tiled": dict(tile=segment), "striped": dict(rowsperstrip=7), "planar": dict(rowsperstrip=16, planarconfig="separate")}[layout]
    tifffile.imwrite(path, np.moveaxis(image, 2, 0) if layout == "planar" else image, photometric="rgb", compression="zlib", **kwargs)
    src = open_image(path)
    touched = set()  # brute force: every (plane, segment row, segment column) under a clipped window
    for y, x, h, w in WINDOWS:
        for yy in range(max(y, 0), min(y + h, 150)):
            for xx in range(max(x, 0), min(x + w, 170)):
                touched |= {(p, yy // segment[0], xx // segment[1]) for p in range(planes)}
    decoded = []  # segments requested while not cached, i.e. decoded
    reader, segment_of = src.reader, src.reader._segment

    def counting(index):
        if index not in reader.cache.items:
            decoded.append(index)
        return segment_of(index)

    reader._segment = counting
    src.prefetch(WINDOWS)
    assert len(decoded) == len(set(decoded)) == len(touched)
    for y, x, h, w in WINDOWS:
        np.testing.assert_array_equal(src.read(y, x, h, w), window(image, y, x, h, w))
    assert len(decoded) == len(touched)  # the reads found every segment decoded


def run_forked(target, args_list, timeout: float = 120) -> list:
    """Run ``target(*args, queue)`` in one forked child per ``args`` in ``args_list``, all at once;
    return what each put on the queue (in the order they finished)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=target, args=(*args, queue)) for args in args_list]
    for child in children:
        child.start()
    try:
        return [queue.get(timeout=timeout) for _ in children]
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()


def _prefetch_in_child(path, queue):
    open_image(path).prefetch([(0, 0, 64, 64), (64, 64, 64, 64)])
    queue.put("done")


def test_tiff_prefetch_works_in_a_forked_child(tmp_path):
    """The decode pool is per process: a child forked after the parent used it gets a fresh one."""
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, RNG.integers(0, 255, (128, 128, 3), dtype=np.uint8), tile=(32, 32), compression="zlib", photometric="rgb")
    open_image(path).prefetch([(0, 0, 128, 128)])  # the parent's pool is now running
    assert run_forked(_prefetch_in_child, [(path,)], timeout=60) == ["done"]


def test_tiff_prefetch_keeps_the_cached_segments_it_needs(tmp_path):
    """A cache of three segments: the second batch needs cached segment 0 plus two new ones; decoding
    those must not evict 0 (it is refreshed first), so reading finds all three cached."""
    path = tmp_path / "x.tif"
    image = RNG.integers(0, 255, (32, 160, 1), dtype=np.uint8)
    tifffile.imwrite(path, image[:, :, 0], tile=(32, 32), compression="zlib")
    src = open_image(path, cache_bytes=3 * 32 * 32)
    src.prefetch([(0, 0, 32, 64)])  # segments 0, 1
    src.read(0, 64, 32, 32)  # segment 2: cache order 0, 1, 2
    src.prefetch([(0, 0, 32, 32), (0, 96, 32, 64)])  # needs 0 (cached), 3 and 4 (new)
    assert sorted(src.reader.cache.items) == [0, 3, 4]
    assert src.reader.cache.bytes == 3 * 32 * 32


def test_tiff_pyramid_levels_and_thumbnail(tmp_path):
    base = cv2.resize(RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8), (512, 512), interpolation=cv2.INTER_CUBIC)
    levels = [base, cv2.resize(base, (256, 256), interpolation=cv2.INTER_AREA), cv2.resize(base, (128, 128), interpolation=cv2.INTER_AREA)]
    path = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(64, 64), subifds=2, photometric="rgb")
        for lv in levels[1:]:
            tw.write(lv, tile=(64, 64), subfiletype=1, photometric="rgb")
    for i, lv in enumerate(levels):
        src = open_image(path, level=i)
        assert src.shape == lv.shape
        np.testing.assert_array_equal(src.read(10, 20, 50, 40), window(lv, 10, 20, 50, 40))
    thumb = open_image(path).thumbnail(200)
    oracle = cv2.resize(levels[1], (200, 200), interpolation=cv2.INTER_AREA)
    assert thumb.shape == (200, 200, 3)
    assert np.abs(thumb.astype(int) - oracle).max() <= 1
    with pytest.raises(InvalidArgumentError, match="levels 0..2"):
        open_image(path, level=3)


class RecordingSource(ArraySource):
    """An array source that records the rows of every read it serves."""

    def __init__(self, array):
        super().__init__(array)
        self.rows_read = []

    def _read_inside(self, y0, x0, y1, x1):
        self.rows_read.append(y1 - y0)
        return super()._read_inside(y0, x0, y1, x1)


@pytest.mark.parametrize(("shape", "max_side", "strip_bytes"), [
    ((1000, 600, 3), 250, 64 << 20),  # one strip, integer factor
    ((1000, 600, 3), 250, 30_000),    # many strips
    ((997, 613, 1), 101, 20_000),     # non-integer factors: strips end inside thumbnail rows
    ((50, 3001, 4), 64, 5_000),       # wide and short
    ((7, 5, 5), 3, 1),                # one row per strip, five channels
])
def test_thumbnail_equals_area_resize_of_the_whole_image(monkeypatch, shape, max_side, strip_bytes):
    import kagglekit.io.source as source_module

    monkeypatch.setattr(source_module, "_STRIP_BYTES", strip_bytes)
    image = RNG.integers(0, 255, shape, dtype=np.uint8)
    src = RecordingSource(image)
    thumb = src.thumbnail(max_side)
    h, w = thumb.shape[:2]
    assert max(h, w) == max_side
    oracle = np.stack([cv2.resize(image[:, :, c].astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) for c in range(shape[2])], axis=2)
    assert np.abs(thumb - oracle).max() <= 1.0  # integers: rounded once after narrowing, once at the end
    assert max(src.rows_read) <= max(1, strip_bytes // (shape[1] * shape[2] * 4))  # never more than a strip


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int32, np.uint32, np.int64, np.float16, np.float64])
def test_thumbnail_of_every_dtype(dtype):
    top = 2.0**31 - 200 if np.dtype(dtype).itemsize >= 4 and np.dtype(dtype).kind in "iu" else 100  # float32 cannot hold these
    values = top - RNG.random((90, 60, 2)) * 100
    image = values > top - 50 if dtype == np.bool_ else values.astype(dtype)
    thumb = ArraySource(image).thumbnail(30)
    oracle = image.astype(np.float64).reshape(30, 3, 20, 3, 2).mean(axis=(1, 3))  # 3 x 3 block means
    assert thumb.dtype == dtype and thumb.shape == (30, 20, 2)
    if dtype == np.bool_:
        np.testing.assert_array_equal(thumb, oracle >= 0.5)
    else:
        assert np.abs(thumb.astype(np.float64) - oracle).max() <= (0.5 if np.issubdtype(dtype, np.integer) else 0.05)


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_small_window_of_huge_tiled_tiff_decodes_only_its_tiles(tmp_path):
    size, tile = 20000, 256
    path = tmp_path / "huge.tif"
    stamp = np.arange(tile * tile, dtype=np.uint32).reshape(tile, tile).astype(np.uint8)

    def tiles():
        for i in range(-(-size // tile)):
            for j in range(-(-size // tile)):
                yield (stamp + (i * 7 + j) % 251).astype(np.uint8)

    tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint8, tile=(tile, tile), compression="zlib")
    src = open_image(path)
    Path("/proc/self/clear_refs").write_text("5")
    before = _peak_rss_mb()
    got = src.read(10000, 12345, 256, 256)
    grew = _peak_rss_mb() - before
    assert grew < 50, f"reading a 256x256 window raised peak RSS by {grew:.0f} MB"
    i, j = 10000 // tile, 12345 // tile
    oracle = (stamp + (i * 7 + j) % 251).astype(np.uint8)[10000 - i * tile :, 12345 - j * tile :]
    np.testing.assert_array_equal(got[: oracle.shape[0], : oracle.shape[1], 0], oracle[:256, :256])


def test_multipage_tiff_volume(tmp_path):
    stack = RNG.integers(0, 65535, (12, 60, 70), dtype=np.uint16)
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, stack, tile=(32, 32))
    vol = open_volume(path, z=slice(3, 9))
    assert vol.shape == (60, 70, 6) and vol.dtype == np.uint16
    np.testing.assert_array_equal(vol.read(-3, 5, 40, 80), window(np.moveaxis(stack[3:9], 0, 2), -3, 5, 40, 80))
    np.testing.assert_array_equal(open_volume(path, z=[0, 11]).read(0, 0, 60, 70), np.moveaxis(stack[[0, 11]], 0, 2))


def test_folder_volume_natural_order(tmp_path):
    stack = RNG.integers(0, 255, (11, 40, 30), dtype=np.uint8)
    for i, s in enumerate(stack):
        assert cv2.imwrite(str(tmp_path / f"{i}.png"), s)
    (tmp_path / "notes.txt").write_text("not a slice")
    vol = open_volume(tmp_path, z=slice(1, None, 2))
    assert vol.shape == (40, 30, 5)
    np.testing.assert_array_equal(vol.read(0, 0, 40, 30), np.moveaxis(stack[1::2], 0, 2))
    with pytest.raises(InvalidArgumentError, match="11 slices"):
        open_volume(tmp_path, z=slice(20, 30))


def test_volume_slices_must_match(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((10, 12), np.uint8))
    with pytest.raises(ShapeError, match="share one size"):
        open_volume(tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_truncated_or_corrupt_files_name_the_file(tmp_path, suffix):
    image = RNG.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    path = tmp_path / f"broken{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    else:
        cv2.imwrite(str(path), image)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="broken"):
        open_image(path).read(200, 200, 100, 100)
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageReadError, match="broken"):
        open_image(path).read(0, 0, 10, 10)


def test_thumbnail_of_a_level_is_not_taken_from_a_larger_level(tmp_path):
    path = tmp_path / "pyr.tif"
    base = RNG.integers(0, 255, (256, 256), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, tile=(64, 64), subifds=2)
        tw.write(base[::2, ::2], tile=(64, 64), subfiletype=1)
        tw.write(base[::4, ::4], tile=(64, 64), subfiletype=1)
    smallest = open_image(path, level=2)
    np.testing.assert_array_equal(smallest.thumbnail(100)[:, :, 0], base[::4, ::4])  # 64 x 64: itself, not level 1
    thumb = open_image(path, level=1).thumbnail(32)  # from level 2, the smallest level still >= 32
    assert np.abs(thumb[:, :, 0].astype(int) - cv2.resize(base[::4, ::4], (32, 32), interpolation=cv2.INTER_AREA)).max() <= 1


def test_big_endian_uncompressed_tiff_reads_in_native_byte_order(tmp_path):
    image = RNG.integers(0, 65535, (40, 50), dtype=np.uint16)
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, image, byteorder=">")
    src = open_image(path)
    assert src.reader.memmap is not None  # the memory-mapped path
    inside = src.read(5, 5, 20, 20)
    assert inside.dtype == np.uint16 and inside.dtype.isnative
    np.testing.assert_array_equal(inside[:, :, 0], image[5:25, 5:25])
    assert np.abs(src.thumbnail(25)[:, :, 0].astype(int) - cv2.resize(image, (25, 20), interpolation=cv2.INTER_AREA)).max() <= 1


def _read_windows_in_child(src, image, seed, queue):
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(200):
        y, x = (int(v) for v in rng.integers(0, 96, 2))
        wrong += not np.array_equal(src.read(y, x, 32, 32), window(image, y, x, 32, 32))
    queue.put(wrong)


def test_forked_workers_sharing_one_open_tiff_read_the_right_pixels(tmp_path):
    """DataLoader workers fork after the parent opened the file: their descriptors share one file
    position, so a seek in one and a read in the other would mix up tiles."""
    path = tmp_path / "x.tif"
    image = RNG.integers(0, 255, (128, 128, 1), dtype=np.uint8)
    tifffile.imwrite(path, image[:, :, 0], tile=(16, 16), compression="zlib")
    src = open_image(path, cache_bytes=1)  # a cache of one tile: every read goes to the file
    # forked children inherit the open source as it is (fork does not pickle a Process's arguments)
    assert run_forked(_read_windows_in_child, [(src, image, seed) for seed in range(3)]) == [0, 0, 0]


def test_threads_reading_pages_of_one_volume_read_the_right_pixels(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    stack = RNG.integers(0, 255, (6, 96, 96), dtype=np.uint8)
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, stack, tile=(16, 16), compression="zlib")
    vol = open_volume(path, cache_bytes=1)
    truth = np.moveaxis(stack, 0, 2)

    def check(seed):
        rng = np.random.default_rng(seed)
        return sum(not np.array_equal(vol.slices[s].read(y, x, 24, 24)[:, :, 0], window(truth[:, :, s], y, x, 24, 24)[:, :, 0])
                   for s, y, x in zip(rng.integers(0, 6, 150), rng.integers(0, 80, 150), rng.integers(0, 80, 150)))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(check, range(4))) == [0, 0, 0, 0]


def _patched_tiff(tmp_path, name, tag, value, **write):
    """A small TIFF written by tifffile with one header tag's value overwritten in place."""
    path = tmp_path / name
    tifffile.imwrite(path, RNG.integers(0, 255, (64, 64), dtype=np.uint8), compression="zlib", **write)
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[0].tags[tag]
        offset, dtype = entry.valueoffset, {3: "<u2", 4: "<u4"}[entry.dtype]
    data = bytearray(path.read_bytes())
    data[offset : offset + np.dtype(dtype).itemsize] = np.array(value, dtype).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("tag", "value", "write"), [
    ("TileLength", 0, {"tile": (16, 16)}),
    ("ImageLength", 200, {"tile": (16, 16)}),  # taller than its tiles cover
    ("ImageLength", 200, {"rowsperstrip": 16}),  # taller than its strips cover
])
def test_corrupt_tiff_headers_name_the_file(tmp_path, tag, value, write):
    path = _patched_tiff(tmp_path, "bad_header.tif", tag, value, **write)
    with pytest.raises(ImageReadError, match="bad_header"):
        open_image(path).read(0, 0, 200, 64)


def test_decoded_images_are_read_only_and_coordinates_must_be_integers(tmp_path):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), RNG.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    src = open_image(path)
    tile = src.read(0, 0, 10, 10)
    with pytest.raises(ValueError, match="read-only"):
        tile //= 2
    with pytest.raises(InvalidArgumentError, match="integers"):
        src.read(1.5, 0, 10, 10)
    for bad in (0, 20.0):
        with pytest.raises(InvalidArgumentError, match="max_side must be an integer >= 1"):
            src.thumbnail(bad)


def test_missing_file_and_bad_arrays():
    with pytest.raises(ImageReadError, match="no such file"):
        open_image("/nonexistent/slide.tif")
    with pytest.raises(KagglekitError, match="empty"):
        ArraySource(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ShapeError):
        ArraySource(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(InvalidArgumentError):
        ArraySource(np.zeros((5, 5), np.uint8)).read(0, 0, 0, 3)


def test_an_rgb_png_decoded_into_its_array_equals_opencvs_general_decode_and_a_cut_one_is_named(tmp_path):
    import cv2

    from kagglekit.errors import ImageReadError
    from kagglekit.io.decoded import decode_image

    image = np.random.default_rng(0).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), image[:, :, ::-1])
    general = cv2.imdecode(np.frombuffer((tmp_path / "rgb.png").read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    decoded = decode_image(tmp_path / "rgb.png")
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, general) and np.array_equal(decoded, image)
    (tmp_path / "cut.png").write_bytes((tmp_path / "rgb.png").read_bytes()[:-200])
    with pytest.raises(ImageReadError, match="cut.png"):
        decode_image(tmp_path / "cut.png")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_masked_statistics_of_a_volume_equal_numpys_over_the_masked_voxels(tmp_path, dtype, monkeypatch):
    import tifffile

    import kagglekit.io.stats as stats
    from kagglekit.io import masked_mean_std, open_volume

    rng = np.random.default_rng(1)
    high = 255 if dtype == np.uint8 else 60000
    volume = (rng.random((6, 90, 70)) * high).astype(dtype)
    tifffile.imwrite(tmp_path / "v.tif", volume, tile=(32, 32), compression="zlib")
    mask = np.zeros((90, 70), np.uint8)
    mask[10:80, 5:40] = 1
    monkeypatch.setattr(stats, "_STRIP_BYTES", 7 * 70 * 6 * np.dtype(dtype).itemsize)  # 7-row strips: many of them
    source = open_volume(tmp_path / "v.tif")
    inside = volume[:, mask != 0].astype(np.float64)  # (Z, n)
    mean, std = masked_mean_std(source, mask)
    np.testing.assert_allclose([mean, std], [inside.mean(), inside.std()], rtol=1e-12)
    means, stds = masked_mean_std(source, mask, per_channel=True)
    np.testing.assert_allclose(means, inside.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stds, inside.std(axis=1), rtol=1e-10)
    everything = masked_mean_std(volume.transpose(1, 2, 0))
    np.testing.assert_allclose(everything, [volume.astype(np.float64).mean(), volume.astype(np.float64).std()], rtol=1e-12)


def test_masked_statistics_refuse_a_mask_of_another_size_or_an_empty_one():
    from kagglekit.errors import InvalidArgumentError, ShapeError
    from kagglekit.io import masked_mean_std

    with pytest.raises(ShapeError, match="full-resolution"):
        masked_mean_std(np.zeros((10, 12, 3), np.uint8), np.ones((5, 6)))
    with pytest.raises(InvalidArgumentError, match="mask is empty"):
        masked_mean_std(np.zeros((10, 12, 3), np.uint8), np.zeros((10, 12)))


def test_open_volume_middle_slices_are_the_centred_range(tmp_path):
    import tifffile

    from kagglekit.io import open_volume

    stack = np.arange(7 * 4 * 5, dtype=np.uint8).reshape(7, 4, 5)
    tifffile.imwrite(tmp_path / "v.tif", stack)
    got = open_volume(tmp_path / "v.tif", z="middle:3").read(0, 0, 4, 5)
    np.testing.assert_array_equal(got, np.moveaxis(stack[2:5], 0, -1))  # (7 - 3) // 2 = 2: slices 2, 3, 4
    with pytest.raises(InvalidArgumentError, match="middle:N"):
        open_volume(tmp_path / "v.tif", z="centre:3")
    with pytest.raises(InvalidArgumentError, match="1..7"):
        open_volume(tmp_path / "v.tif", z="middle:9")


def test_standardization_is_numpys_mean_and_std_inside_the_mask_with_the_dtypes_top():
    from kagglekit.io import standardization

    image = np.random.default_rng(4).integers(0, 4096, (30, 40, 3), dtype=np.uint16)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:35] = True
    mean, std, top = standardization(image, mask)
    assert (mean, std) == pytest.approx((image[mask].astype(np.float64).mean(), image[mask].astype(np.float64).std()), rel=1e-12)
    assert top == 65535.0 and standardization(image.astype(np.float32))[2] == 1.0
    with pytest.raises(InvalidArgumentError, match="every value inside its mask is 5"):
        standardization(np.full((30, 40), 5, np.uint8), mask)
