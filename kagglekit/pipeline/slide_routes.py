"""Which models classify which slides in ``slides`` (:mod:`kagglekit.pipeline.slides`): per slide kind (one
for every slide without ``[slides.tma]`` / ``[slides.wsi]``) its settings and its route's models, loaded once
per distinct (models, route, backbone); and the per-slide predictor that picks a slide's kind and route."""

from __future__ import annotations

import numpy as np

from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["load_routes", "slide_predictor"]


def load_routes(cfg, report) -> tuple[list, dict]:
    """(every kind's kept models, ``{kind: (settings, models) or None}``): ``models`` a
    :class:`~kagglekit.pipeline.slide_heads.MilModels` or :class:`~kagglekit.pipeline.slide_tiles.TileModels`;
    None for a kind none of whose models loaded and ran (its slides fall back). Models of two kinds that
    return different output counts are refused."""
    from kagglekit.pipeline.classification import _decision
    from kagglekit.pipeline.classify_images import activation_of
    from kagglekit.pipeline.ensemble import load_models
    from kagglekit.pipeline.slide_heads import MilModels
    from kagglekit.pipeline.slide_tiles import TileModels

    slides, routes, engines = cfg.slides, {}, {}
    tiles = any(slides.branch(kind).route == "tiles" for kind in slides.kinds())
    activation = activation_of(cfg, _decision(cfg)) if tiles else None  # the decision file read once
    for kind in slides.kinds():
        settings, models = slides.branch(kind), slides.models_of(kind, cfg.models)
        key = (models, settings.route, settings.backbone, settings.weights)
        if key not in engines:
            loaded = load_models(models, report)
            engines[key] = (MilModels(settings, loaded, report) if settings.route == "mil"
                            else TileModels(cfg, settings, loaded, report, activation))
        routes[kind] = (settings, engines[key]) if engines[key].kept else None
    kept = [m for engine in engines.values() for m in engine.kept]
    counts = {f"{kind or 'every slide'}": route[1].kept[0].out_shape[1] for kind, route in routes.items() if route}
    if len(set(counts.values())) > 1:
        raise PipelineConfigError(f"models: the slide kinds' models return different numbers of classes ({counts}); "
                                  "every kind's models must score the same classes in the same order")
    return kept, routes


def slide_predictor(reader, routes: dict, temperature: float, degrader, store):
    """``predict(ids, paths)`` for :func:`~kagglekit.pipeline.loop.run_items`, one slide per unit: the slide
    opened once, its kind (``reader.kind_of``), that kind's route over its tiles with the current
    ``degrader`` setting, the temperature on the log of the probabilities, and the row handed to
    ``store(ids, probabilities (1, C))``. Holds what the route holds for one slide (see
    :func:`kagglekit.mil.extract_bag`)."""
    from kagglekit.io import open_image
    from kagglekit.mil.extract import NoTissueError

    def predict(ids: list[str], paths: list) -> tuple[dict, str]:
        (slide_id,), (path,) = ids, paths
        source = open_image(path)
        try:
            kind = reader.kind_of(source, slide_id)
            route = routes.get(kind if kind in routes else None)
            if route is None:
                return {slide_id: f"no model of the {kind or 'slides'} branch loaded and ran (see the notes above)"}, ""
            settings, models = route
            p, detail = models(source, reader.options(settings, source, slide_id, kind), degrader, settings)
        except NoTissueError as exc:
            return {slide_id: f"no tissue: {exc}"}, ""
        finally:
            if hasattr(source, "close"):
                source.close()
        if temperature != 1.0:
            with np.errstate(divide="ignore"):  # a class no tile gave any probability: log 0, then 0 again
                z = np.log(p) / temperature
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p = p / p.sum(axis=1, keepdims=True)
        if not np.isfinite(p).all():
            return {slide_id: "NonFiniteOutputError: the models returned NaN or infinite scores"}, ""
        store([slide_id], p)
        return {}, detail

    return predict
