"""Moved: :mod:`kagglekit.delivery.kernel` (delivery has its own package beside the runtime ``kagglekit.kaggle``).
This path gives that module, with a DeprecationWarning, until the next release."""

from kagglekit._lazy import moved_module

moved_module(__name__, "kagglekit.delivery.kernel")
