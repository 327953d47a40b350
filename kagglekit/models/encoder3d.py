"""3D-encoder segmentation of slice stacks (B, Z, H, W): a torchvision video ResNet over the whole volume,
its depth pooled, a pointwise 2D head at the encoder level's stride (the Vesuvius write-ups' ResNet-3D route)."""

from __future__ import annotations

import torch
from torch import nn

from kagglekit._checks import one_of, positive_int
from kagglekit.models.volume import NORMALIZE, ZPool, _check_volume, _level_index, _normalize, _upsample

ENCODERS_3D = ("r3d_18", "mc3_18", "r2plus1d_18")
LEVELS = ("stem", "layer1", "layer2", "layer3", "layer4")  # the video ResNets' stages, shallowest first
LEVEL_CHANNELS = (64, 64, 128, 256, 512)
LEVEL_STRIDES = (2, 2, 4, 8, 16)  # in H and W (depth strides differ by encoder; depth is pooled)


def _one_channel(conv: nn.Conv3d) -> nn.Conv3d:
    """``conv`` rebuilt (random init) to take one input channel: the volume's voxels."""
    return nn.Conv3d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)


def _video_encoder(name: str, feature_index: int) -> tuple[nn.Sequential, int]:
    """torchvision's video ResNet ``name`` (random init) up to level ``feature_index`` (later stages dropped),
    its first convolution taking one channel, and the level's index made non-negative."""
    from torchvision.models import video

    one_of("encoder", name, ENCODERS_3D)
    index = _level_index(feature_index, len(LEVELS), f"encoder {name!r}")
    net = getattr(video, name)(weights=None)
    net.stem[0] = _one_channel(net.stem[0])
    return nn.Sequential(*(getattr(net, level) for level in LEVELS[:index + 1])), index


class Encoder3dSegmenter(nn.Module):
    """3D-encoder segmenter: (B, Z, H, W) float slices -> (B, num_classes, H/s, W/s) logits, or (B,
    num_classes, H, W) with ``upsample=True``.

    The volume, as (B, 1, Z, H, W), goes through torchvision's video ResNet ``encoder`` (``ENCODERS_3D``:
    r3d_18, mc3_18, r2plus1d_18; random init, kagglekit never downloads) up to level ``feature_index``
    (``LEVELS``, -1 the deepest; deeper stages are not built), whose (B, C, Z', H/s, W/s) features are
    pooled over depth (``zpool``) into a pointwise head. s = ``output_stride`` = ``LEVEL_STRIDES[level]``
    (2, 2, 4, 8, 16), C = ``LEVEL_CHANNELS[level]``. Any Z >= 1; H and W multiples of s. Holds the encoder's
    activations for the whole volume (the stem's alone are B * 64 * Z * H/2 * W/2 floats).
    """

    def __init__(self, encoder: str = "r3d_18", num_classes: int = 1, feature_index: int = -1,
                 normalize: str = "none", zpool: str = "mean_max", upsample: bool = False):
        super().__init__()
        self.normalize = one_of("normalize", normalize, NORMALIZE)
        self.upsample = bool(upsample)
        self.encoder, self.feature_index = _video_encoder(encoder, feature_index)
        self.output_stride = LEVEL_STRIDES[self.feature_index]
        self.zpool = ZPool(zpool)
        channels = LEVEL_CHANNELS[self.feature_index] * self.zpool.factor
        self.head = nn.Conv2d(channels, positive_int("num_classes", num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_volume(x, self.output_stride, "Encoder3dSegmenter")
        h, w = x.shape[-2:]
        y = self.head(self.zpool(self.encoder(_normalize(x, self.normalize).unsqueeze(1))))
        return _upsample(y, (h, w), self.upsample)
