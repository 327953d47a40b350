"""Route "tiles" of ``slides`` (:mod:`kagglekit.pipeline.slides`): tile classifiers (classify checkpoints)
probed on a zero tile, then per slide its tiles through them with the ``[tta]`` views
(:func:`kagglekit.mil.classify_tiles`) and their probabilities aggregated per class."""

from __future__ import annotations

import numpy as np

__all__ = ["TileModels"]


class TileModels:
    """Route "tiles" of one slide kind: the kept classifiers (a failing one skipped), their activation (the
    decision's: softmax for argmax), the ``[tta]`` views and merge. Called per slide: (probabilities (1, C)
    float64, what ran); the first ``degrader.views`` views and ``degrader.models`` models run."""

    def __init__(self, cfg, settings, loaded, report, activation):
        from kagglekit.pipeline.ensemble import probe_models

        _check_normalize(loaded, settings)
        self.kept = probe_models(loaded, (settings.tile, settings.tile), 3, report)
        self.activation, self.views, self.merge = activation, list(cfg.tta.views), cfg.tta.merge

    def __call__(self, source, options: dict, degrader, settings) -> tuple[np.ndarray, str]:
        from kagglekit.mil.tiles import classify_tiles

        used, views = self.kept[: degrader.models], self.views[: degrader.views]
        how, k = settings.aggregation()
        votes = classify_tiles([m.model for m in used], source, aggregate=how, k=k, activation=self.activation,
                               tta=views, merge=self.merge, weights=[m.weight for m in used], **options)
        return votes.probabilities[None], (f"{len(votes.tiles)} tiles ({votes.plan.kind}) x {len(used)} model(s) x "
                                           f"{len(views)} view(s), {how}")


def _check_normalize(loaded, settings) -> None:
    """Refuse classifiers whose checkpoint records another input normalisation than ``slides.normalize``
    (``kagglekit train`` writes the training's preprocessing into them)."""
    from types import SimpleNamespace

    from kagglekit.pipeline.classification import preprocess_mismatch
    from kagglekit.pipeline.sections import PipelineConfigError

    for m in loaded:
        trained = (getattr(m.model, "kagglekit_metadata", None) or {}).get("preprocess")
        if not trained:
            continue
        size = trained.get("size")
        ours = SimpleNamespace(size=tuple(size) if size else None, resize=trained.get("resize"), normalize=settings.normalize)
        fix = preprocess_mismatch(SimpleNamespace(preprocess=ours), trained)
        if fix:
            raise PipelineConfigError(f"slides.normalize: {m.path} was trained on tiles normalised otherwise ({fix}); "
                                      "set [slides] normalize as its training did")
