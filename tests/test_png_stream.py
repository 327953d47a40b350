"""Streamed PNG slides (kagglekit.io.png) against OpenCV's whole decode: windows, thumbnails, tile plans and
tiles, odd PNG kinds, broken files, and a PNG above OpenCV's 2^30-pixel limit with no environment variable."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from kagglekit.errors import ImageReadError
from kagglekit.io import open_image
from kagglekit.io.png import StreamedPngSource, png_header, write_png_rows

pytest.importorskip("pyvips")

RNG = np.random.default_rng(7)


def slide_like(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Tissue-like blobs (textured) on black, as a UBC WSI: (h, w, channels) uint8 RGB."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.random((6, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    texture = rng.integers(60, 220, (h, w, channels), dtype=np.uint8)
    return np.where((field > np.quantile(field, 0.5))[:, :, None], texture, np.uint8(0))


def write(path, image: np.ndarray):
    rgb = image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), rgb)
    return path


def whole(path) -> np.ndarray:
    """The oracle: OpenCV's whole decode, RGB order."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image = image[:, :, None] if image.ndim == 2 else image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.shape[2] == 3 else (
        cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA) if image.shape[2] == 4 else image)


@pytest.mark.parametrize("shape", [(301, 517, 3), (1031, 257, 3), (97, 2003, 1), (700, 600, 4)])
def test_streamed_windows_equal_the_whole_decodes_crops_forward_overlapping_and_backward(tmp_path, shape, monkeypatch):
    import kagglekit.io.png as png

    monkeypatch.setattr(png, "_CHUNK_BYTES", 5 * shape[1] * shape[2])  # libvips fetches of 5 rows: edges inside windows
    image = slide_like(*shape)
    path = write(tmp_path / "s.png", image)
    src = open_image(path, whole_bytes=0)
    assert isinstance(src, StreamedPngSource) and src.shape == shape and src.dtype == np.uint8
    ref = whole(path)
    np.testing.assert_array_equal(ref, image)
    H, W = shape[:2]
    # windows of side 37 at a stride of 29: each band of rows overlaps the last (the kept rows are extended),
    # windows hang over the edges (zero-filled), and the last reads go back up (a new pass)
    windows = [(y, x, 37, 37) for y in range(-5, H, 29) for x in range(-3, W, 131)]
    windows += [(H // 2, 0, 5, W), (0, W // 3, H, 11), (-7, -7, H + 14, W + 14)]
    for y, x, h, w in windows:
        padded = np.zeros((h, w, shape[2]), np.uint8)
        y0, x0 = max(y, 0), max(x, 0)
        crop = ref[y0 : y + h, x0 : x + w]
        padded[y0 - y : y0 - y + crop.shape[0], x0 - x : x0 - x + crop.shape[1]] = crop
        np.testing.assert_array_equal(src.read(y, x, h, w), padded, err_msg=str((y, x, h, w)))
    assert src.passes == 3  # the row-major windows: one pass; the tall window and the whole image: one each


@pytest.mark.parametrize("shape,side", [((613, 947, 3), 64), ((1200, 333, 3), 100), ((257, 4099, 3), 90)])
def test_a_streamed_slides_plan_and_tiles_equal_the_decode_wholes_in_two_passes(tmp_path, shape, side, monkeypatch):
    """plan_tiles + tile_reader (the slide path of extract_bag and TileExportJob) on the streamed source:
    the same plan as on OpenCV's decode, each tile the whole decode's crop, and two passes (thumbnail, tiles)."""
    import kagglekit.io.png as png
    from kagglekit.tiling import plan_tiles, tile_reader

    monkeypatch.setattr(png, "_CHUNK_BYTES", 7 * shape[1] * 3)  # fetches of 7 rows: their edges fall inside tiles

    path = write(tmp_path / "s.png", slide_like(*shape, seed=side))
    streamed, decoded = open_image(path, whole_bytes=0), open_image(path)
    assert not isinstance(decoded, StreamedPngSource)
    options = dict(tile=side, min_tissue=0.3, thumbnail_side=256)
    plan, oracle = plan_tiles(streamed, **options), plan_tiles(decoded, **options)
    np.testing.assert_array_equal(plan.coords, oracle.coords)
    assert len(plan.coords) > 10 and (plan.kind, plan.threshold) == (oracle.kind, oracle.threshold)
    read = tile_reader(streamed, plan, swap=False, stain=None, batch_size=7)
    ref = whole(path)
    for i, (y, x) in enumerate(plan.coords):
        expected = np.zeros((side, side, 3), np.uint8)
        crop = ref[y : y + side, x : x + side]
        expected[: crop.shape[0], : crop.shape[1]] = crop
        np.testing.assert_array_equal(read(i), expected)
    assert streamed.passes == 2


def test_tiles_read_out_of_order_within_batches_stay_in_one_pass(tmp_path):
    """Reader threads take a batch's tiles in any order (and may start the next batch first)."""
    from kagglekit.tiling import plan_tiles, tile_reader

    path = write(tmp_path / "s.png", slide_like(900, 700))
    src = open_image(path, whole_bytes=0)
    plan = plan_tiles(src, tile=50, min_tissue=0.2, thumbnail_side=200)
    read = tile_reader(src, plan, swap=False, stain=None, batch_size=8)
    ref = whole(path)
    order = [i for b in range(0, len(plan.coords), 8) for i in reversed(range(b, min(b + 8, len(plan.coords))))]
    order[8:10] = order[8:10][::-1]
    for i in order:
        y, x = plan.coords[i]
        np.testing.assert_array_equal(read(i), ref[y : y + 50, x : x + 50])
    assert src.passes == 2


@pytest.mark.parametrize("shape", [(1000, 777, 3), (333, 2500, 1), (2049, 1500, 3)])
def test_the_streamed_thumbnail_equals_the_decode_whole_thumbnail(tmp_path, shape):
    """Both are Source.thumbnail's separable area average (INTER_AREA within 1) over strips of rows; the
    streamed one gets its strips from one pass. Tolerance: 1 grey level (the rounding of a sum in float32)."""
    path = write(tmp_path / "s.png", slide_like(*shape))
    streamed, decoded = open_image(path, whole_bytes=0), open_image(path)
    for side in (64, 200):
        a, b = streamed.thumbnail(side), decoded.thumbnail(side)
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.abs(a.astype(int) - b).max() <= 1
        area = cv2.resize(whole(path), (b.shape[1], b.shape[0]), interpolation=cv2.INTER_AREA).reshape(b.shape)
        assert np.abs(a.astype(int) - area).max() <= 1
    assert streamed.passes == 2 and streamed._rows is None  # one pass each, and no strip kept afterwards


def _odd_pngs(tmp_path):
    from PIL import Image

    rgb = RNG.integers(0, 255, (61, 45, 3), dtype=np.uint8)
    gray = Image.fromarray(rgb[:, :, 0])
    yield "palette", lambda p: Image.fromarray(rgb).quantize(16).save(p)
    yield "palette-transparent", lambda p: Image.fromarray(rgb).quantize(16).save(p, transparency=0)
    yield "gray-transparent", lambda p: gray.save(p, transparency=int(rgb[0, 0, 0]))
    yield "gray-alpha", lambda p: gray.convert("LA").save(p)
    yield "rgb-transparent", lambda p: Image.fromarray(rgb).save(p, transparency=tuple(int(v) for v in rgb[0, 0]))
    yield "1-bit", lambda p: Image.fromarray(rgb[:, :, 0] > 100).save(p)
    yield "16-bit", lambda p: cv2.imwrite(str(p), RNG.integers(0, 65535, (61, 45, 3), dtype=np.uint16))
    yield "16-bit-gray", lambda p: cv2.imwrite(str(p), RNG.integers(0, 65535, (61, 45), dtype=np.uint16))
    yield "interlaced", lambda p: __import__("pyvips").Image.new_from_array(rgb).pngsave(str(p), interlace=True)


@pytest.mark.parametrize("kind", [k for k, _ in _odd_pngs(None)])
def test_odd_pngs_stream_to_what_opencv_decodes(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    dict(_odd_pngs(tmp_path))[kind](path)
    src = open_image(path, whole_bytes=0)
    ref = whole(path)
    assert isinstance(src, StreamedPngSource) and src.shape == ref.shape and src.dtype == ref.dtype
    np.testing.assert_array_equal(src.read(0, 0, *ref.shape[:2]), ref)
    np.testing.assert_array_equal(src.read(20, 10, 9, 30), ref[20:29, 10:40])


def test_broken_pngs_are_image_read_errors_naming_the_file(tmp_path):
    path = write(tmp_path / "s.png", slide_like(300, 400))
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png.*truncated"):
        open_image(tmp_path / "cut.png", whole_bytes=0)
    corrupt = bytearray(data)
    start = data.index(b"IDAT") + 4 + 200
    corrupt[start : start + 2000] = bytes(2000)  # zeros in the compressed data, IEND intact
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    src = open_image(tmp_path / "corrupt.png", whole_bytes=0)
    with pytest.raises(ImageReadError, match="corrupt.png.*re-copy or re-export"):
        src.read(250, 0, 50, 400)
    bad = bytearray(data)
    bad[24] = 7  # bit depth 7
    (tmp_path / "header.png").write_bytes(bytes(bad))
    with pytest.raises(ImageReadError, match="header.png.*bit depth 7"):
        open_image(tmp_path / "header.png")


def test_the_header_says_what_opening_costs(tmp_path):
    path = write(tmp_path / "s.png", slide_like(64, 80))
    header = png_header(path)
    assert (header.height, header.width, header.channels, header.decoded_bytes) == (64, 80, 3, 64 * 80 * 3)
    assert png_header(__file__) is None
    assert isinstance(open_image(path, whole_bytes=64 * 80 * 3 - 1), StreamedPngSource)
    assert not isinstance(open_image(path, whole_bytes=64 * 80 * 3), StreamedPngSource)


def test_extract_bag_and_the_tile_export_job_on_a_streamed_png_equal_the_decode_whole(tmp_path, monkeypatch):
    import torch

    import kagglekit.io.png as png
    from kagglekit.jobs import TileExportJob
    from kagglekit.jobs.contract import Slide
    from kagglekit.mil import extract_bag

    path = write(tmp_path / "s.png", slide_like(700, 900))
    backbone = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    options = dict(name="pool", tile=64, min_tissue=0.3, batch_size=5, thumbnail_side=256, normalize="scale")
    oracle = extract_bag(backbone, path, **options)
    job = TileExportJob(tile=64, min_tissue=0.3, thumbnail_side=256)
    job.run(Slide("s", path), tmp_path / "whole")
    monkeypatch.setattr(png, "WHOLE_BYTES", 0)
    opened = []
    monkeypatch.setattr(png.StreamedPngSource, "close", lambda self: opened.append(self.passes))
    bag = extract_bag(backbone, path, **options)
    np.testing.assert_array_equal(bag.coords, oracle.coords)
    np.testing.assert_array_equal(bag.features, oracle.features)
    job.run(Slide("s", path), tmp_path / "streamed")
    assert opened == [2, 2]  # both streamed, in two passes
    names = sorted(p.name for p in (tmp_path / "whole").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "streamed").glob("*.png")) and len(names) > 10
    for name in names:
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "whole" / name)), cv2.imread(str(tmp_path / "streamed" / name)))


def test_a_png_above_opencvs_pixel_limit_reads_with_no_environment_variable(tmp_path, monkeypatch):
    """32768 x 32769 gray (2^30 + 32768 px): OpenCV refuses it by default; kagglekit streams it."""
    monkeypatch.delenv("OPENCV_IO_MAX_IMAGE_PIXELS", raising=False)
    H, W = 32769, 32768

    def rows(y0, y1):  # flat grey, a darker square near the bottom right, the last row white
        strip = np.full((y1 - y0, W, 1), 200, np.uint8)
        strip[max(y0, 30000) - y0 : max(min(y1, 32000), y0) - y0, 30000:32000] = 50
        if y1 == H:
            strip[-1] = 255
        return strip

    start = time.perf_counter()
    path = write_png_rows(tmp_path / "big.png", H, W, rows, channels=1)
    assert H * W > 2**30 and path.stat().st_size < 20 << 20
    src = open_image(path)
    assert isinstance(src, StreamedPngSource) and src.shape == (H, W, 1)
    thumb = src.thumbnail(1024)
    assert thumb.shape == (1024, 1024, 1) and thumb[0, 0, 0] == 200
    assert thumb[950, 950, 0] == 50  # rows 30400..30432, columns 30400..30432: inside the dark square
    np.testing.assert_array_equal(src.read(29990, 29990, 20, 20)[:, :, 0],
                                  np.pad(np.full((10, 10), 50), ((10, 0), (10, 0)), constant_values=200))
    np.testing.assert_array_equal(src.read(H - 2, W - 3, 2, 3)[:, :, 0], [[200] * 3, [255] * 3])
    assert time.perf_counter() - start < 60


def test_without_pyvips_a_streamed_png_says_what_to_install(tmp_path, monkeypatch):
    import sys

    path = write(tmp_path / "s.png", slide_like(50, 60))
    monkeypatch.setitem(sys.modules, "pyvips", None)  # import pyvips raises ImportError
    src = open_image(path, whole_bytes=0)
    with pytest.raises(ImageReadError, match="s.png.*pip install pyvips pyvips-binary"):
        src.read(0, 0, 10, 10)
    np.testing.assert_array_equal(open_image(path).read(0, 0, 50, 60), whole(path))  # small: OpenCV, no pyvips


def test_extract_bag_with_two_reader_threads_streams_in_two_passes(tmp_path):
    import torch

    from kagglekit.mil import extract_bag

    path = write(tmp_path / "s.png", slide_like(900, 800, seed=3))
    backbone = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    options = dict(name="pool", tile=48, min_tissue=0.3, batch_size=4, thumbnail_side=256, normalize="scale")
    streamed = open_image(path, whole_bytes=0)
    bag = extract_bag(backbone, streamed, num_workers=2, **options)
    oracle = extract_bag(backbone, path, num_workers=1, **options)
    assert len(bag.coords) > 20 and streamed.passes == 2
    np.testing.assert_array_equal(bag.coords, oracle.coords)
    np.testing.assert_array_equal(bag.features, oracle.features)
