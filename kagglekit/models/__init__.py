"""Models: one factory over timm / segmentation-models-pytorch / kagglekit, offline weights, checkpoints.

    create(name, weights=None, pretrained=False, strict=True, **kwargs)   "timm/..", "smp/<arch>/<enc>", "kagglekit/.."
    load_weights(model, path_or_state, strict, pretrained)                 local files only, with a LoadReport
    save_checkpoint(model, path, metadata) / load_checkpoint(path)         safetensors + build config + checksum
    verify_checkpoint(path) / input_channels(config)                       the checksum; a model's input channels
    as_module(model_or_path)                                               a module as is, or the one a checkpoint path holds
    average_checkpoints(paths) / create_ema(model)                         weight averaging, EMA (timm ModelEmaV3)
    VolumeSegmenter, ZPoolSegmenter, ZPool                                 2.5D models for (B, Z, H, W) volumes
    Encoder3dSegmenter, ENCODERS_3D                                        a torchvision video ResNet over the volume
    Chowder, GatedAttentionMIL                                             MIL heads for (B, N, D) bags, named in MIL_HEADS:
                                                                           "chowder", "gated_attention" (kagglekit/<name>)
    HeadEnsemble(head, seeds, **kwargs)                                    many MIL heads stacked, one forward (vmap)
"""

from kagglekit.models.averaging import average_checkpoints, average_state_dicts, create_ema
from kagglekit.models.checkpoint import as_module, checkpoint_info, load_checkpoint, save_checkpoint, verify_checkpoint
from kagglekit.models.encoder3d import ENCODERS_3D, Encoder3dSegmenter
from kagglekit.models.factory import create, input_channels
from kagglekit.models.heads import BackboneWithHead, ConcatPoolHead
from kagglekit.models.mil import MIL_HEADS, Chowder, GatedAttentionMIL, HeadEnsemble
from kagglekit.models.registry import list_models, register_alias, register_model
from kagglekit.models.volume import VolumeSegmenter, ZPool, ZPoolSegmenter
from kagglekit.models.weights import (
    CheckpointError,
    LoadReport,
    UnsafeCheckpointError,
    WeightsMismatchError,
    load_weights,
    read_state_dict,
    remap_state_dict,
    unwrap_model,
)

register_model("volume_segmenter", VolumeSegmenter)
register_model("zpool_segmenter", ZPoolSegmenter)
register_model("encoder3d_segmenter", Encoder3dSegmenter)
for _name, _head in MIL_HEADS.items():  # one naming of the MIL heads: create("kagglekit/<name>") = HeadEnsemble(head=<name>)
    register_model(_name, _head)
register_alias("gated_attention_mil", "gated_attention")  # the registry's name before 0.2; checkpoints store it
register_model("head_ensemble", HeadEnsemble)

__all__ = [
    "create", "as_module", "load_weights", "read_state_dict", "remap_state_dict", "unwrap_model", "LoadReport",
    "save_checkpoint", "load_checkpoint", "checkpoint_info", "verify_checkpoint", "input_channels", "average_checkpoints", "average_state_dicts",
    "create_ema", "register_model", "register_alias", "list_models", "ConcatPoolHead", "BackboneWithHead", "VolumeSegmenter",
    "ZPoolSegmenter", "ZPool", "Encoder3dSegmenter", "ENCODERS_3D", "Chowder", "GatedAttentionMIL", "HeadEnsemble", "MIL_HEADS", "CheckpointError", "UnsafeCheckpointError",
    "WeightsMismatchError",
]
