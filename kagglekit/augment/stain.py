"""H&E stain tools on RGB uint8 HWC tiles: Macenko and Reinhard normalisation, stain-concentration jitter.

Beer-Lambert: optical density ``OD = -log((I + 1) / Io)`` is a non-negative mix of stain vectors,
``OD = C @ S.T`` with ``S`` (3, 2) the unit H and E vectors and ``C`` (pixels, 2) concentrations.
Macenko et al. (2009) estimate ``S`` from the plane of the two main OD directions, taking the
``alpha`` and ``100 - alpha`` percentile angles of pixels whose OD exceeds ``beta`` in every channel.

Tiles with too little tissue (background only, or a handful of pixels) cannot be normalised: they
are returned unchanged and the tool's ``last_skipped`` flag is set, with ``last_reason`` saying why.
Each call holds a few float32 copies of the tile (tiles, not whole slides).
"""

from __future__ import annotations

import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError

MIN_TISSUE_PIXELS = 64
"""Fewer tissue pixels than this and a tile is returned unchanged (flagged)."""


class NotFittedError(InvalidArgumentError):
    """A normaliser's ``transform`` was called before ``fit``."""


def optical_density(rgb: np.ndarray, io: float = 240) -> np.ndarray:
    """(H*W, 3) float32 optical density of an RGB uint8 HWC image."""
    _check_rgb_uint8(rgb)
    od = -np.log((rgb.reshape(-1, 3).astype(np.float32) + 1) / np.float32(io))
    return od


def from_optical_density(od: np.ndarray, shape: tuple[int, ...], io: float = 240) -> np.ndarray:
    """Inverse of :func:`optical_density`: RGB uint8 of ``shape`` (rounded, clipped to 0..255)."""
    rgb = np.float32(io) * np.exp(-od) - 1
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(shape)


def _stained(od: np.ndarray, beta: float) -> np.ndarray:
    """(n,) bool: the rows of ``od`` whose optical density exceeds ``beta`` in every channel."""
    return (od > beta).all(axis=1)


def tissue_od(od: np.ndarray, beta: float = 0.15) -> np.ndarray:
    """Rows of ``od`` whose optical density exceeds ``beta`` in every channel (stained pixels)."""
    return od[_stained(od, beta)]


def macenko_stains(rgb: np.ndarray, io: float = 240, alpha: float = 1.0, beta: float = 0.15) -> np.ndarray | None:
    """(3, 2) float64 unit stain vectors (hematoxylin, eosin) of an RGB uint8 tile, or None when the
    tile has fewer than :data:`MIN_TISSUE_PIXELS` stained pixels or only one stain direction."""
    return _macenko(tissue_od(optical_density(rgb, io), beta), alpha)


def _enough_tissue(stained: np.ndarray) -> bool:
    """At least :data:`MIN_TISSUE_PIXELS` pixels in a :func:`_stained` mask (counted, not gathered as
    in :func:`tissue_od`)."""
    return np.count_nonzero(stained) >= MIN_TISSUE_PIXELS


def _macenko(tissue: np.ndarray, alpha: float) -> np.ndarray | None:
    if len(tissue) < MIN_TISSUE_PIXELS:
        return None
    _, vectors = np.linalg.eigh(np.cov(tissue.T.astype(np.float64)))
    plane = vectors[:, 1:]  # the two largest eigenvalues
    plane *= np.where(plane.sum(axis=0) < 0, -1, 1)  # point into the positive-OD octant
    projected = tissue @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(angle, [alpha, 100 - alpha])
    stains = np.stack([plane @ [np.cos(lo), np.sin(lo)], plane @ [np.cos(hi), np.sin(hi)]], axis=1)
    stains *= np.where(stains.sum(axis=0) < 0, -1, 1)
    stains /= np.linalg.norm(stains, axis=0)
    if stains[:, 0] @ stains[:, 1] > 0.999:
        return None
    if stains[0, 0] < stains[0, 1]:  # hematoxylin absorbs more red than eosin does
        stains = stains[:, ::-1]
    return stains


def concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """(N, 2) least-squares stain concentrations of (N, 3) optical densities."""
    return np.linalg.lstsq(stains, od.T.astype(np.float64), rcond=None)[0].T


class _SkipFlag:
    last_skipped: bool = False
    last_reason: str | None = None

    def _skip(self, image: np.ndarray, reason: str) -> np.ndarray:
        self.last_skipped, self.last_reason = True, reason
        return image

    def _done(self, image: np.ndarray) -> np.ndarray:
        self.last_skipped, self.last_reason = False, None
        return image


class MacenkoNormalizer(_SkipFlag):
    """Map a tile's H and E stains and their 99th-percentile concentrations onto a reference's.

    ``fit(reference)`` then ``transform(tile)``; both take RGB uint8 HWC and ``transform`` returns one.
    Attributes after fit: ``stains_`` (3, 2), ``max_concentrations_`` (2,).
    """

    def __init__(self, io: float = 240, alpha: float = 1.0, beta: float = 0.15):
        self.io, self.alpha, self.beta = io, alpha, beta

    def fit(self, reference: np.ndarray) -> MacenkoNormalizer:
        od = optical_density(reference, self.io)
        stains = _macenko(tissue_od(od, self.beta), self.alpha)
        if stains is None:
            raise InvalidArgumentError(
                f"the reference has fewer than {MIN_TISSUE_PIXELS} stained pixels or a single stain; "
                "fit on a tile with both hematoxylin and eosin tissue"
            )
        self.stains_ = stains
        self.max_concentrations_ = np.percentile(concentrations(od, stains), 99, axis=0)
        return self

    def transform(self, image: np.ndarray) -> np.ndarray:
        if not hasattr(self, "stains_"):
            raise NotFittedError("call fit(reference) before transform")
        od = optical_density(image, self.io)
        stains = _macenko(tissue_od(od, self.beta), self.alpha)
        if stains is None:
            return self._skip(image, "too little tissue, or a single stain, to estimate stain vectors")
        c = concentrations(od, stains)
        top = np.percentile(c, 99, axis=0)
        if (top <= 1e-6).any():
            return self._skip(image, "a stain has no positive concentration")
        c *= self.max_concentrations_ / top
        return self._done(from_optical_density(c @ self.stains_.T, image.shape, self.io))


class ReinhardNormalizer(_SkipFlag):
    """Match a tile's per-channel CIE Lab mean and standard deviation to a reference's (Reinhard et al. 2001).

    ``fit(reference)`` then ``transform(tile)``: RGB uint8 HWC in and out. Lab via OpenCV (float32,
    sRGB, D65). Attributes after fit: ``mean_``, ``std_`` (3,) in Lab units.
    """

    def __init__(self, io: float = 240, beta: float = 0.15):
        self.io, self.beta = io, beta

    def fit(self, reference: np.ndarray) -> ReinhardNormalizer:
        if not _enough_tissue(_stained(optical_density(reference, self.io), self.beta)):
            raise InvalidArgumentError(f"the reference has fewer than {MIN_TISSUE_PIXELS} stained pixels; fit on a tissue tile")
        lab = _to_lab(reference)
        self.mean_, self.std_ = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))
        return self

    def transform(self, image: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise NotFittedError("call fit(reference) before transform")
        if not _enough_tissue(_stained(optical_density(image, self.io), self.beta)):
            return self._skip(image, f"fewer than {MIN_TISSUE_PIXELS} stained pixels")
        lab = _to_lab(image)
        std = lab.std(axis=(0, 1))
        if (std < 1e-3).any():
            return self._skip(image, "a Lab channel is constant")
        lab = (lab - lab.mean(axis=(0, 1))) / std * self.std_ + self.mean_
        return self._done(_from_lab(lab))


NORMALIZERS = {"macenko": MacenkoNormalizer, "reinhard": ReinhardNormalizer}


def fitted_normalizer(method: str, reference):
    """A :class:`MacenkoNormalizer` (``method="macenko"``) or :class:`ReinhardNormalizer` (``"reinhard"``)
    fitted on ``reference``: a tissue image, an RGB(A) uint8 (H, W, C) array or an image path
    (:func:`kagglekit.io.load_image`; the method is checked before it is read, an alpha channel dropped)."""
    from kagglekit._checks import one_of
    from kagglekit.io import load_image

    normalizer = NORMALIZERS[one_of("stain method", method, tuple(NORMALIZERS))]()
    image = reference if isinstance(reference, np.ndarray) else load_image(reference)
    return normalizer.fit(image[:, :, :3])


class StainAugmenter(_SkipFlag):
    """Jitter H and E concentrations: ``C' = C * scale + shift`` per stain (Tellez et al. 2018).

    ``scale`` ~ U(1 - sigma_scale, 1 + sigma_scale), ``shift`` ~ U(-sigma_shift, sigma_shift) per stain.
    Stain vectors come from ``stains`` (3, 2) if given, else from each tile by Macenko. The part of the
    optical density the two stains do not explain is kept, so scale 1 and shift 0 give the tile back.
    """

    def __init__(self, sigma_scale: float = 0.2, sigma_shift: float = 0.05, stains: np.ndarray | None = None,
                 io: float = 240, alpha: float = 1.0, beta: float = 0.15):
        if sigma_scale < 0 or sigma_shift < 0:
            raise InvalidArgumentError(f"sigmas must be >= 0, got {sigma_scale}, {sigma_shift}")
        if stains is not None and np.shape(stains) != (3, 2):
            raise ShapeError(f"stains must be (3, 2), one unit OD vector per column, got {np.shape(stains)}")
        self.sigma_scale, self.sigma_shift, self.stains = sigma_scale, sigma_shift, stains
        self.io, self.alpha, self.beta = io, alpha, beta

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random (scale, shift), each (2,)."""
        scale = rng.uniform(1 - self.sigma_scale, 1 + self.sigma_scale, 2)
        shift = rng.uniform(-self.sigma_shift, self.sigma_shift, 2)
        return scale, shift

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.apply(image, *self.draw(np.random.default_rng(rng)))

    def apply(self, image: np.ndarray, scale, shift) -> np.ndarray:
        """``image`` (RGB uint8 HWC) with concentrations ``C * scale + shift``."""
        od = optical_density(image, self.io)
        stained = _stained(od, self.beta)  # one mask for the check and for Macenko
        if not _enough_tissue(stained):  # also with fixed stains: background is not jittered
            return self._skip(image, f"fewer than {MIN_TISSUE_PIXELS} stained pixels")
        stains = self.stains if self.stains is not None else _macenko(od[stained], self.alpha)
        if stains is None:
            return self._skip(image, "too little tissue, or a single stain, to estimate stain vectors")
        c = concentrations(od, stains)
        residual = od - c @ stains.T
        c = c * np.asarray(scale) + np.asarray(shift)
        return self._done(from_optical_density(c @ stains.T + residual, image.shape, self.io))


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    import cv2

    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _check_rgb_uint8(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ShapeError(f"stain tools take RGB uint8 HWC arrays, got {got}; convert with img.astype(np.uint8)")
