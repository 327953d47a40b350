"""2.5D segmentation of slice stacks (B, Z, H, W): a 2D CNN per slice group, 3D blocks, pooling over depth.

This is the ink-detection design: the volume's Z slices are cut into groups of ``group_size`` slices,
each group is one multi-channel image for any timm ``features_only`` backbone, the per-group feature
maps are stacked along depth, refined by residual 3D convolutions, pooled over depth (mean and max)
and turned into logits by a pointwise head at the backbone's stride (1/32 for most CNNs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.models.factory import timm_name

NORMALIZE = ("none", "per_input")
ZPOOL_MODES = ("mean_max", "mean", "max")


def _check_volume(x: torch.Tensor, stride: int, who: str, size: tuple[int, int] | None = None) -> None:
    """Refuse anything but (B, Z, H, W) with H and W multiples of ``stride`` (and equal to ``size`` when given)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{who} expects a (B, Z, H, W) float tensor of slices, got {shape}")
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        raise ShapeError(f"{who}: H and W must be multiples of the output stride {stride}, got {h}x{w}; pad or crop tiles")
    if size is not None and (h, w) != size:
        raise ShapeError(f"{who}: the backbone takes {size[0]}x{size[1]} tiles only, got {h}x{w}; build it with "
                         "img_size=<your tile side> or strict_img_size=False (timm's keywords)")


def _normalize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-input standardisation: each sample to zero mean and unit std over all its voxels."""
    if mode == "none":
        return x
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + 1e-6)


class ZPool(nn.Module):
    """Pool a feature volume over depth: (B, C, D, H, W) -> (B, k*C, H, W), k = 2 for ``mean_max``
    (mean and max concatenated), 1 for ``mean`` or ``max``."""

    def __init__(self, mode: str = "mean_max"):
        super().__init__()
        self.mode = one_of("zpool mode", mode, ZPOOL_MODES)

    @property
    def factor(self) -> int:
        return 2 if self.mode == "mean_max" else 1

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim != 5:
            raise ShapeError(f"ZPool expects (B, C, D, H, W), got {tuple(v.shape)}")
        if self.mode == "mean":
            return v.mean(dim=2)
        if self.mode == "max":
            return v.amax(dim=2)
        return torch.cat([v.mean(dim=2), v.amax(dim=2)], dim=1)


class ResidualBlock3d(nn.Module):
    """Two 3x3x3 conv + BatchNorm3d layers with an identity shortcut; keeps (B, C, D, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels), nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels),
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return F.relu(v + self.body(v))


def _features_backbone(name: str, in_chans: int, feature_index: int, **kwargs) -> tuple[nn.Module, int, int, int]:
    """A timm ``features_only`` backbone and, for its ``feature_index``-th feature map (negative counts
    from the deepest), the index made non-negative, its channels and its output stride."""
    import timm

    with timm_name(name):
        backbone = timm.create_model(name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
    info = backbone.feature_info
    index = _level_index(feature_index, len(info.channels()), f"backbone {name!r}")
    return backbone, index, info.channels()[index], info.reduction()[index]


def _level_index(feature_index: int, n: int, who: str) -> int:
    """``feature_index`` (negative counts from the deepest) as an index into ``who``'s ``n`` feature levels."""
    if isinstance(feature_index, bool) or not hasattr(feature_index, "__index__"):
        raise InvalidArgumentError(f"feature_index must be an integer (-1 is the deepest level), got {feature_index!r}")
    if not -n <= feature_index < n:
        raise InvalidArgumentError(f"feature_index {feature_index} is out of range: {who} has {n} "
                                   f"feature levels, so use -{n}..{n - 1} (-1 is the deepest)")
    return feature_index % n


def _feature_map(backbone: nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    """The timm backbone's ``index``-th feature map of (N, C_in, H, W) as (N, C, h, w): backbones whose timm
    ``output_fmt`` is NHWC (Swin, Swin V2) return (N, h, w, C), permuted here."""
    f = backbone(x)[index]
    return f.permute(0, 3, 1, 2) if getattr(backbone, "output_fmt", "NCHW") == "NHWC" else f


def _fixed_size(backbone: nn.Module) -> tuple[int, int] | None:
    """The one (H, W) a timm backbone takes (its patch embedding's ``img_size`` under ``strict_img_size``, as
    Swin builds by default), or None when any size works."""
    for module in backbone.modules():
        if getattr(module, "strict_img_size", False):
            return tuple(module.img_size)
    return None


def _upsample(y: torch.Tensor, size, enabled: bool) -> torch.Tensor:
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False) if enabled else y


class VolumeSegmenter(nn.Module):
    """2.5D segmenter: (B, Z, H, W) float slices -> (B, num_classes, H/s, W/s) logits, s = ``output_stride``
    (32 for most timm CNNs), or (B, num_classes, H, W) with ``upsample=True``.

    Z must equal ``group_size + k * group_stride``; groups of ``group_size`` consecutive slices (stride
    ``group_stride``, default non-overlapping) go through the timm backbone ``backbone`` in one batch of
    B * n_groups images, so activations for all groups are held at once. ``normalize="per_input"``
    standardises each input volume. ``feature_index`` picks the backbone level (default the deepest).
    Channels-last backbones (timm's Swin / Swin V2 features are NHWC) are permuted to NCHW. A backbone built for
    one input size (Swin: ``img_size``, 256 for ``swinv2_tiny_window8_256``) takes H x W = ``input_size`` only:
    pass ``img_size=<tile>``, or ``strict_img_size=False`` for any multiple of the stride.
    """

    def __init__(self, backbone: str = "resnet18", group_size: int = 3, group_stride: int | None = None,
                 num_classes: int = 1, neck_channels: int = 64, num_blocks: int = 1, normalize: str = "none",
                 zpool: str = "mean_max", feature_index: int = -1, upsample: bool = False, **backbone_kwargs):
        super().__init__()
        self.group_size = positive_int("group_size", group_size)
        self.group_stride = positive_int("group_stride", group_stride or group_size)
        self.normalize = one_of("normalize", normalize, NORMALIZE)
        self.upsample = bool(upsample)
        self.backbone, self.feature_index, channels, self.output_stride = _features_backbone(
            backbone, self.group_size, feature_index, **backbone_kwargs)
        self.input_size = _fixed_size(self.backbone)
        neck_channels = positive_int("neck_channels", neck_channels)
        self.neck = nn.Sequential(nn.Conv2d(channels, neck_channels, 1, bias=False),
                                  nn.BatchNorm2d(neck_channels), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResidualBlock3d(neck_channels) for _ in range(positive_int("num_blocks", num_blocks, 0))])
        self.zpool = ZPool(zpool)
        self.head = nn.Conv2d(neck_channels * self.zpool.factor, positive_int("num_classes", num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_volume(x, self.output_stride, "VolumeSegmenter", self.input_size)
        b, z, h, w = x.shape
        g, s = self.group_size, self.group_stride
        if z < g or (z - g) % s:
            raise ShapeError(f"VolumeSegmenter: {z} slices cannot be cut into groups of {g} with stride {s}; "
                             f"use Z = {g} + k * {s} slices (e.g. read a middle range of the volume)")
        x = _normalize(x, self.normalize)
        groups = x.unfold(1, g, s)  # (B, G, H, W, g)
        n_groups = groups.shape[1]
        f = self.neck(_feature_map(self.backbone, groups.permute(0, 1, 4, 2, 3).reshape(b * n_groups, g, h, w),
                                   self.feature_index))
        v = f.reshape(b, n_groups, *f.shape[1:]).transpose(1, 2)  # (B, C, G, h, w)
        y = self.head(self.zpool(self.blocks(v)))
        return _upsample(y, (h, w), self.upsample)


class ZPoolSegmenter(nn.Module):
    """3D-first variant: (B, Z, H, W) -> 3D CNN stem over the full volume (B, C, Z, H, W) -> ``ZPool`` over
    depth -> timm 2D backbone -> pointwise head: (B, num_classes, H/s, W/s), or (H, W) with ``upsample``.

    Holds the stem's feature volume (B * stem_channels * Z * H * W floats): keep ``stem_channels`` small.
    Channels-last and fixed-size backbones as in :class:`VolumeSegmenter`.
    """

    def __init__(self, backbone: str = "resnet18", num_classes: int = 1, stem_channels: int = 8,
                 num_blocks: int = 1, normalize: str = "none", zpool: str = "mean_max",
                 feature_index: int = -1, upsample: bool = False, **backbone_kwargs):
        super().__init__()
        c = positive_int("stem_channels", stem_channels)
        self.normalize = one_of("normalize", normalize, NORMALIZE)
        self.upsample = bool(upsample)
        self.stem = nn.Sequential(nn.Conv3d(1, c, 3, padding=1, bias=False), nn.BatchNorm3d(c), nn.ReLU(inplace=True),
                                  *[ResidualBlock3d(c) for _ in range(positive_int("num_blocks", num_blocks, 0))])
        self.zpool = ZPool(zpool)
        self.backbone, self.feature_index, channels, self.output_stride = _features_backbone(
            backbone, c * self.zpool.factor, feature_index, **backbone_kwargs)
        self.input_size = _fixed_size(self.backbone)
        self.head = nn.Conv2d(channels, positive_int("num_classes", num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_volume(x, self.output_stride, "ZPoolSegmenter", self.input_size)
        h, w = x.shape[-2:]
        pooled = self.zpool(self.stem(_normalize(x, self.normalize).unsqueeze(1)))
        y = self.head(_feature_map(self.backbone, pooled, self.feature_index))
        return _upsample(y, (h, w), self.upsample)
