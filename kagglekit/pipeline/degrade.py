"""What to give up when time runs short: TTA views first (halved down to one), then models (lightest first)."""

from __future__ import annotations


class Degrader:
    """The number of TTA views and models in use, and the next cheaper setting.

    ``views_cost`` is False for per-window view cycling, where views cost nothing and are never dropped;
    ``models_dropped`` False when every model is needed (a stacker's inputs). Models are assumed ordered
    heaviest-weighted first, so dropping keeps the first ``models``.
    """

    def __init__(self, n_views: int, n_models: int, views_cost: bool = True, models_dropped: bool = True):
        self.views = n_views
        self.models = n_models
        self._views_cost = views_cost
        self._models_dropped = models_dropped

    @property
    def key(self) -> str:
        """A name for the current setting (a separate rate is measured per setting)."""
        return f"views={self.views},models={self.models}"

    def step(self) -> str | None:
        """Move to the next cheaper setting and say what was dropped; None when nothing is left to drop."""
        if self._views_cost and self.views > 1:
            before, self.views = self.views, max(1, self.views // 2)
            return f"dropped TTA views {before} -> {self.views}"
        if self._models_dropped and self.models > 1:
            self.models -= 1
            return f"dropped a model: {self.models + 1} -> {self.models}"
        return None
