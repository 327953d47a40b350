"""TileDataset: tiles equal plain slicing, labels equal average pooling, the positive fraction holds, a seed
repeats, forked DataLoader workers read the same tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kagglekit.data import TileDataset
from kagglekit.errors import InvalidArgumentError, ShapeError


def images_and_masks():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 420, 3), dtype=np.uint8), rng.integers(0, 256, (260, 260, 3), dtype=np.uint8)]
    masks = [np.zeros((300, 420), np.uint8), np.zeros((260, 260), np.uint8)]
    masks[0][40:70, 300:360] = 1  # small positive regions: random tiles rarely meet them
    masks[1][200:230, 20:50] = 255
    return images, masks


def test_grid_tiles_equal_plain_slicing_and_labels_equal_average_pooling():
    images, masks = images_and_masks()
    dataset = TileDataset(images, masks, tile=64, stride=64, label_scale=8)
    assert len(dataset) == 5 * 7 + 5 * 5  # snapped grids: 300 -> 5 rows, 420 -> 7 columns, 260 -> 5
    for i in range(len(dataset)):
        k, y, x = dataset.window(i)
        image, label = dataset[i]
        expected = torch.from_numpy(images[k][y : y + 64, x : x + 64].transpose(2, 0, 1).astype(np.float32) / 255)
        assert torch.equal(image, expected)
        pooled = torch.nn.functional.avg_pool2d(torch.from_numpy((masks[k][y : y + 64, x : x + 64] != 0).astype(np.float32))[None], 8)
        assert label.shape == (1, 8, 8) and torch.allclose(label, pooled)


def test_random_tiles_have_the_asked_positive_fraction_and_repeat_for_a_seed():
    images, masks = images_and_masks()
    dataset = TileDataset(images, masks, tile=32, samples_per_epoch=600, positive_fraction=0.4, seed=3)
    positive = np.mean([float(dataset[i][1].max() > 0) for i in range(len(dataset))])
    background = np.mean([(m != 0).mean() for m in masks])  # random tiles meet a positive now and then too
    assert 0.4 - 0.06 <= positive <= 0.4 + background + 0.1
    again = TileDataset(images, masks, tile=32, samples_per_epoch=600, positive_fraction=0.4, seed=3)
    assert [again.window(i) for i in range(50)] == [dataset.window(i) for i in range(50)]
    other = TileDataset(images, masks, tile=32, samples_per_epoch=600, positive_fraction=0.4, seed=4)
    assert [other.window(i) for i in range(50)] != [dataset.window(i) for i in range(50)]
    dataset.set_epoch(1)
    assert [dataset.window(i) for i in range(50)] != [again.window(i) for i in range(50)]
    for i in range(100):  # every tile lies inside its image
        k, y, x = dataset.window(i)
        assert 0 <= y <= masks[k].shape[0] - 32 and 0 <= x <= masks[k].shape[1] - 32


def test_forked_workers_read_the_same_tiles_from_a_tiff(tmp_path):
    import tifffile

    images, masks = images_and_masks()
    paths = []
    for k, image in enumerate(images):
        tifffile.imwrite(tmp_path / f"{k}.tif", image, tile=(64, 64), compression="zlib")
        paths.append(tmp_path / f"{k}.tif")
    dataset = TileDataset(paths, masks, tile=48, samples_per_epoch=40, positive_fraction=0.5, label_scale=4, seed=1)
    context = torch.multiprocessing.get_context("fork")
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context=context)
    xs, ys = zip(*loader)
    expected = [dataset[i] for i in range(len(dataset))]
    assert torch.equal(torch.cat(xs), torch.stack([e[0] for e in expected]))
    assert torch.equal(torch.cat(ys), torch.stack([e[1] for e in expected]))
    k, y, x = dataset.window(0)
    assert torch.equal(expected[0][0], torch.from_numpy(images[k][y : y + 48, x : x + 48].transpose(2, 0, 1).astype(np.float32) / 255))


def test_a_transform_moves_image_and_mask_together_and_mistakes_are_named():
    import albumentations as A

    images, masks = images_and_masks()
    flipped = TileDataset(images, masks, tile=64, stride=64, transform=A.HorizontalFlip(p=1.0))
    plain = TileDataset(images, masks, tile=64, stride=64)
    for i in (3, 40):
        assert torch.equal(flipped[i][0], plain[i][0].flip(-1)) and torch.equal(flipped[i][1], plain[i][1].flip(-1))
    with pytest.raises(InvalidArgumentError, match="stride .* or samples_per_epoch"):
        TileDataset(images, masks, tile=64)
    with pytest.raises(InvalidArgumentError, match="positive_fraction goes with random tiles"):
        TileDataset(images, masks, tile=64, stride=64, positive_fraction=0.5)
    with pytest.raises(InvalidArgumentError, match="must divide the tile"):
        TileDataset(images, masks, tile=64, stride=64, label_scale=5)
    with pytest.raises(ShapeError, match="mask 1 is"):
        TileDataset(images, [masks[0], masks[0]], tile=64, stride=64)
    with pytest.raises(InvalidArgumentError, match="no mask has a positive"):
        TileDataset(images, [np.zeros_like(m) for m in masks], tile=64, samples_per_epoch=4, positive_fraction=0.5)


def test_the_tile_cache_gives_the_volumes_tiles_and_is_written_once(tmp_path):
    import tifffile

    from kagglekit.io import open_volume

    rng = np.random.default_rng(5)
    volume = rng.integers(0, 256, (7, 150, 170), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack", tile=(64, 64), compression="zlib")
    mask = np.zeros((150, 170), np.uint8)
    mask[60:90, 40:120] = 1
    kwargs = dict(tile=64, samples_per_epoch=30, positive_fraction=0.5, label_scale=16, seed=2)
    cached = TileDataset([open_volume(tmp_path / "v.tif", z="middle:3")], [mask], cache_dir=tmp_path / "cache", **kwargs)
    (file,) = (tmp_path / "cache").iterdir()
    written = file.stat().st_mtime_ns
    for i in range(len(cached)):
        _, y, x = cached.window(i)
        expected = volume[2:5, y : y + 64, x : x + 64].astype(np.float32) / 255  # the 3 middle of 7 slices
        assert torch.equal(cached[i][0], torch.from_numpy(expected))
    again = TileDataset([open_volume(tmp_path / "v.tif", z="middle:3")], [mask], cache_dir=tmp_path / "cache", **kwargs)
    assert again[0][0].equal(cached[0][0]) and file.stat().st_mtime_ns == written  # read, not written again
    TileDataset([open_volume(tmp_path / "v.tif", z=[0, 3])], [mask], cache_dir=tmp_path / "cache", **kwargs)
    assert len(list((tmp_path / "cache").iterdir())) == 2  # other slices: another file
    context = torch.multiprocessing.get_context("fork")
    loader = torch.utils.data.DataLoader(cached, batch_size=10, num_workers=2, multiprocessing_context=context)
    assert torch.equal(torch.cat([x for x, _ in loader]), torch.stack([cached[i][0] for i in range(len(cached))]))


def test_random_tiles_are_centred_in_their_region():
    images, masks = images_and_masks()
    regions = [np.zeros(m.shape, bool) for m in masks]
    regions[0][:, :100] = True  # the left of the first image only; nothing of the second
    dataset = TileDataset(images, masks, tile=32, samples_per_epoch=300, regions=regions, seed=0)
    for i in range(len(dataset)):
        k, y, x = dataset.window(i)
        assert k == 0 and x + 16 < 100 + dataset.step
    with pytest.raises(InvalidArgumentError, match="every region is empty"):
        TileDataset(images, masks, tile=32, samples_per_epoch=3, regions=[np.zeros(m.shape) for m in masks])
    with pytest.raises(InvalidArgumentError, match="regions go with random tiles"):
        TileDataset(images, masks, tile=32, stride=32, regions=regions)


def test_a_random_transform_repeats_per_item_whatever_the_workers():
    import albumentations as A

    images, masks = images_and_masks()
    make = lambda: TileDataset(images, masks, tile=32, samples_per_epoch=24, seed=1,  # noqa: E731
                               transform=A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5)]))
    dataset = make()
    first = [dataset[i][0] for i in range(len(dataset))]
    assert all(torch.equal(dataset[i][0], first[i]) for i in reversed(range(len(dataset))))
    assert all(torch.equal(a, b) for a, b in zip(first, (make()[i][0] for i in range(len(dataset)))))
    plain = TileDataset(images, masks, tile=32, samples_per_epoch=24, seed=1)
    assert sum(not torch.equal(a, plain[i][0]) for i, a in enumerate(first)) >= 6  # the transform did act
    context = torch.multiprocessing.get_context("fork")
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2, multiprocessing_context=context)
    assert torch.equal(torch.cat([x for x, _ in loader]), torch.stack(first))


def test_volume_normalisation_uses_the_sources_own_statistics_inside_its_region():
    images, masks = images_and_masks()
    regions = [np.zeros(m.shape, bool) for m in masks]
    regions[0][50:200, 100:300] = regions[1][:, :130] = True
    dataset = TileDataset(images, masks, tile=32, samples_per_epoch=20, regions=regions, normalize="volume", seed=0)
    for i in range(len(dataset)):
        k, y, x = dataset.window(i)
        inside = images[k][regions[k]].astype(np.float64)
        tile = images[k][y : y + 32, x : x + 32].transpose(2, 0, 1).astype(np.float64)
        np.testing.assert_allclose(dataset[i][0].numpy(), (tile - inside.mean()) / inside.std(), rtol=1e-4, atol=1e-4)
