"""Multiple-instance heads for whole-slide classification: bags of tile embeddings -> bag logits.

Both heads take ``x`` (B, N, D) float tile features and an optional ``mask`` (B, N) bool, True for real
tiles and False for padding, so bags of different sizes batch together. Outputs do not depend on the
order of the tiles nor on padding (padded rows are never read, even if they hold NaN).
"""

from __future__ import annotations

import torch
from torch import nn

from kagglekit._checks import positive_int
from kagglekit.errors import ShapeError


def _check_bag(x: torch.Tensor, mask, in_dim: int, min_tiles: int, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (B, N, D) + mask; return x with padded rows set to 0 (so that NaN padding never reaches
    a value or a gradient; x itself when nothing is padded) and the mask as bool (B, N)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != in_dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{who} expects tile features (B, N, {in_dim}), got {shape}")
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    elif tuple(mask.shape) != tuple(x.shape[:2]):
        raise ShapeError(f"{who}: mask must be (B, N) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    mask = mask.bool()
    fewest = int(mask.sum(dim=1).min()) if mask.numel() else 0
    if fewest < min_tiles:
        raise ShapeError(f"{who}: a bag has {fewest} real tiles but at least {min_tiles} are needed; "
                         "drop empty bags or lower r")
    return (x if fewest == x.shape[1] else x.masked_fill(~mask.unsqueeze(-1), 0.0)), mask


class Chowder(nn.Module):
    """CHOWDER (Courtiol et al. 2018) with one tile score per class (as in Owkin's multi-class version): a
    linear score of each tile for each class, the ``r`` highest and ``r`` lowest scores of each bag and
    class (sorted), then one MLP with sigmoid hidden layers of sizes ``hidden`` shared by the classes,
    mapping a class's 2r extremes to its logit: (B, N, in_dim) + mask (B, N) -> (B, num_classes) logits.
    Every bag needs at least ``r`` real tiles."""

    def __init__(self, in_dim: int, r: int = 5, hidden=(200, 100), num_classes: int = 1, dropout: float = 0.0):
        super().__init__()
        self.in_dim = positive_int("in_dim", in_dim)
        self.r = positive_int("r", r)
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        self.score = nn.Linear(self.in_dim, positive_int("num_classes", num_classes))
        layers, width = [], 2 * self.r
        for h in hidden:
            layers += [nn.Linear(width, positive_int("hidden size", h)), nn.Sigmoid(), nn.Dropout(dropout)]
            width = h
        # a bias shared by every class's logit changes no softmax: its gradient is rounding noise, which
        # Adam would scale up into steps of the learning rate, so it exists only for one (sigmoid) output
        layers.append(nn.Linear(width, 1, bias=num_classes == 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = _check_bag(x, mask, self.in_dim, self.r, "Chowder")
        scores = self.score(x).transpose(1, 2)  # (B, C, N)
        padding = ~mask.unsqueeze(1)
        top = scores.masked_fill(padding, float("-inf")).topk(self.r, dim=2).values
        bottom = scores.masked_fill(padding, float("inf")).topk(self.r, dim=2, largest=False).values
        return self.mlp(torch.cat([top, bottom], dim=2)).squeeze(-1)


class GatedAttentionMIL(nn.Module):
    """Gated attention pooling (Ilse et al. 2018): weights ``softmax(w . (tanh(V h) * sigmoid(U h)))`` over
    the real tiles, the weighted sum of tile features, then a linear classifier:
    (B, N, in_dim) + mask (B, N) -> (B, num_classes) logits (and (B, N) attention if asked)."""

    def __init__(self, in_dim: int, hidden: int = 128, num_classes: int = 1, dropout: float = 0.0):
        super().__init__()
        self.in_dim = positive_int("in_dim", in_dim)
        hidden = positive_int("hidden", hidden)
        self.attn_v = nn.Sequential(nn.Linear(self.in_dim, hidden), nn.Tanh())
        self.attn_u = nn.Sequential(nn.Linear(self.in_dim, hidden), nn.Sigmoid())
        self.attn_w = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.in_dim, positive_int("num_classes", num_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False):
        x, mask = _check_bag(x, mask, self.in_dim, 1, "GatedAttentionMIL")
        logits = self.attn_w(self.attn_v(x) * self.attn_u(x)).squeeze(-1)
        attention = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
        out = self.classifier(self.drop(torch.einsum("bn,bnd->bd", attention, x)))
        return (out, attention) if return_attention else out


# The one naming of the MIL heads: HeadEnsemble(head=<name>) and create("kagglekit/<name>") both read it.
MIL_HEADS = {"chowder": Chowder, "gated_attention": GatedAttentionMIL}


def _stacked_linear(h: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """``S`` linear layers at once: h (S, ..., in) with weight (S, out, in), bias (S, out) or None -> (S, ..., out)."""
    out = torch.matmul(h.flatten(1, -2), weight.transpose(1, 2)).view(*h.shape[:-1], weight.shape[1])
    return out if bias is None else out + bias.view(bias.shape[0], *([1] * (h.ndim - 2)), -1)


def _stacked_layers(h: torch.Tensor, skeleton: nn.Sequential, params: dict, prefix: str, training: bool) -> torch.Tensor:
    """``skeleton``'s layers (Linear, Sigmoid, Tanh, Dropout) applied with the stacked ``params`` of every head."""
    for k, layer in enumerate(skeleton):
        if isinstance(layer, nn.Linear):
            h = _stacked_linear(h, params[f"{prefix}.{k}.weight"], params.get(f"{prefix}.{k}.bias"))
        elif isinstance(layer, nn.Sigmoid):
            h = torch.sigmoid(h)
        elif isinstance(layer, nn.Tanh):
            h = torch.tanh(h)
        elif isinstance(layer, nn.Dropout):
            h = nn.functional.dropout(h, layer.p, training)
        else:  # the heads here are built from these layers only
            raise ShapeError(f"HeadEnsemble cannot stack a {type(layer).__name__} layer")
    return h


def _shared_input_scores(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Every head's first linear layer on the same tiles in one matrix product: x (B, N, D), weight (S, K, D),
    bias (S, K) -> (S, B, N, K), without a copy of x per head (vmap made one: S x B x N x D floats)."""
    S, K, D = weight.shape
    out = (x.reshape(-1, D) @ weight.reshape(S * K, D).T).view(*x.shape[:2], S, K)
    return out.permute(2, 0, 1, 3) + bias.view(S, 1, 1, K)


class HeadEnsemble(nn.Module):
    """``len(seeds)`` MIL heads of one architecture as one module: each parameter is stacked along a first
    axis (one slice per head) and one forward runs all of them as grouped matrix products (the tiles,
    shared by every head, are multiplied once by all heads' first layers together), so that 50 heads
    train in about the time of a few. Head ``i`` starts from the weights ``torch.manual_seed(seeds[i])``
    gives ``MIL_HEADS[head](**kwargs)``, and computes what that head computes alone (to float rounding).

    ``forward(x (B, N, D), mask (B, N)) -> (S, B, num_classes)`` logits, one slice per head. Parameter
    names are the single head's with ``.`` spelt ``__`` (a checkpoint stores the stacked tensors).
    """

    def __init__(self, head: str = "chowder", seeds=(0,), **kwargs):
        super().__init__()
        from torch.func import stack_module_state

        from kagglekit.models.registry import canonical_name

        head = canonical_name(head, warn=True)  # "gated_attention_mil", the registry's old name, too
        if head not in MIL_HEADS:
            raise ShapeError(f"head must be one of {sorted(MIL_HEADS)}, got {head!r}")
        self.head, self.seeds = head, [int(s) for s in seeds]
        if not self.seeds:
            raise ShapeError("a HeadEnsemble needs at least one seed")
        members = []
        for s in self.seeds:
            torch.manual_seed(s)
            members.append(MIL_HEADS[head](**kwargs))
        params, _ = stack_module_state(members)
        self.names = list(params)
        for name, value in params.items():
            self.register_parameter(name.replace(".", "__"), nn.Parameter(value.detach().clone()))
        object.__setattr__(self, "_skeleton", members[0])  # not a submodule: its sizes, not its weights, are used

    @property
    def num_heads(self) -> int:
        return len(self.seeds)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        p = {name: getattr(self, name.replace(".", "__")) for name in self.names}
        one = self._skeleton
        if self.head == "chowder":
            x, mask = _check_bag(x, mask, one.in_dim, one.r, "Chowder")
            scores = _shared_input_scores(x, p["score.weight"], p["score.bias"]).transpose(2, 3)  # (S, B, C, N)
            padding = ~mask[None, :, None, :]
            top = scores.masked_fill(padding, float("-inf")).topk(one.r, dim=3).values
            bottom = scores.masked_fill(padding, float("inf")).topk(one.r, dim=3, largest=False).values
            return _stacked_layers(torch.cat([top, bottom], dim=3), one.mlp, p, "mlp", self.training).squeeze(-1)
        x, mask = _check_bag(x, mask, one.in_dim, 1, "GatedAttentionMIL")
        S = self.num_heads
        both = torch.cat([p["attn_v.0.weight"], p["attn_u.0.weight"]], dim=1)  # one product for V and U
        hidden = _shared_input_scores(x, both, torch.cat([p["attn_v.0.bias"], p["attn_u.0.bias"]], dim=1))
        v, u = hidden.split(p["attn_v.0.weight"].shape[1], dim=3)
        logits = _stacked_linear(torch.tanh(v) * torch.sigmoid(u), p["attn_w.weight"], p["attn_w.bias"]).squeeze(-1)
        attention = torch.softmax(logits.masked_fill(~mask[None], float("-inf")), dim=2)  # (S, B, N)
        pooled = nn.functional.dropout(torch.einsum("sbn,bnd->sbd", attention, x), one.drop.p, self.training)
        return _stacked_linear(pooled, p["classifier.weight"], p["classifier.bias"]).view(S, len(x), -1)
