"""Random-augmentation views for image-level outputs: ``n`` fixed draws of an albumentations transform.

    random_views("light", n=8, seed=0)            a kagglekit.augment preset (size=: a random crop first)
    random_views(A.Compose([...]), n=8, seed=0)   any albumentations transform
    random_crops(512, n=4, seed=0)                random (h, w) windows

View ``k`` is the transform with its random parameters drawn from the key ``[seed, k]``: before each image
the transform is seeded with ``int(np.random.default_rng([seed, k]).integers(2**31))`` (albumentations'
``set_random_seed``), so every image of every batch gets view ``k``'s same draw (the same window, flip,
brightness factor, for images of one shape), whatever the batch size or order; another seed gives other
draws. Views apply to the (H, W, C) images before batching (uint8, or float32 in [0, 1]: albumentations'
convention); ``kagglekit.infer.predict`` stacks and normalises each view's batch in turn, holding one
view's batch besides the images. Not thread-safe: a view reseeds its shared transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.tta.crops import LabelView, crop_size, size_label


@dataclass(frozen=True, eq=False)
class RandomView(LabelView):
    """Draw ``index`` of ``transform`` under ``seed`` (see the module docstring); ``label`` names the transform."""

    transform: object
    seed: int
    index: int
    label: str

    @property
    def name(self) -> str:
        return f"{self.label}#{self.index}@seed{self.seed}"

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """One (H, W, C) uint8 / float32 image -> the transformed (h, w, C) image."""
        from kagglekit.augment._albu import seed_transform

        if image.dtype not in (np.uint8, np.float32):
            raise ShapeError(f"TTA view {self.name} takes uint8 images (or float32 in [0, 1]), got {image.dtype}; "
                             "convert the images (loader=) or use crops, scales and D4 views, which take any dtype")
        seed_transform(self.transform, [self.seed, self.index])
        try:
            return self.transform(image=image)["image"]
        except (ValueError, TypeError) as exc:
            raise ShapeError(f"TTA view {self.name} could not transform an image of shape {image.shape}: {exc}; "
                             "give it images it accepts (e.g. at least its crop size)") from None


def _draws(transform, n: int, seed: int, label: str) -> tuple[RandomView, ...]:
    n, seed = positive_int("random views n", n), positive_int("random views seed", seed, minimum=0)
    return tuple(RandomView(transform, seed, k, label) for k in range(n))


def random_views(transform, n: int, seed: int = 0, size=None) -> tuple[RandomView, ...]:
    """``n`` views of ``transform``: an albumentations transform called as ``transform(image=...)``, or a
    :func:`kagglekit.augment.preset` name (``size``: that preset's random (h, w) crop first)."""
    if isinstance(transform, str):
        from kagglekit.augment import preset

        label = transform if size is None else f"{transform}@{size_label(crop_size(size))}"
        return _draws(preset(transform, size), n, seed, label)
    if size is not None:
        raise InvalidArgumentError("random views: size= crops before a preset; with your own transform put "
                                   "A.RandomCrop in it instead")
    if not callable(transform):
        raise InvalidArgumentError(f"random views take an albumentations transform or a preset name, got "
                                   f"{type(transform).__name__}")
    return _draws(transform, n, seed, "random")


def random_crops(size, n: int, seed: int = 0) -> tuple[RandomView, ...]:
    """``n`` random (h, w) windows (albumentations ``RandomCrop``), each the same for every image of one shape."""
    import kagglekit.augment  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)
    import albumentations as A

    h, w = crop_size(size)
    return _draws(A.Compose([A.RandomCrop(height=h, width=w)]), n, seed, f"random_crop@{size_label((h, w))}")
