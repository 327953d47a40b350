"""Delivery: what gets a solution onto Kaggle, beside the kernel's runtime (:mod:`kagglekit.kaggle`).

    kagglekit.delivery.wheels    build_wheels, check_wheels, kaggle_image, Target: the offline wheel dataset
                                 for the Kaggle image's Python (what the image has: kagglekit/kaggle/kaggle_image.toml)
    kagglekit.delivery.kernel    check_kernel_metadata, check_dataset_metadata: kernel-metadata.json and
                                 dataset-metadata.json as Kaggle checks them, internet off
    kagglekit.delivery.bundle    bundle, push, push_commands: dist/kaggle/ (wheels, models, kernel) and its upload
                                 (``bundle`` the function is imported from the submodule: it shares its name)
    kagglekit.delivery.notebook  execute_notebook, inject_parameters, run_kernel: a notebook run headless with
                                 papermill-style parameters (``python -m kagglekit.delivery.notebook``)

The ``kagglekit wheels | kernel | bundle | push`` commands call these. Until the next release the old
paths ``kagglekit.kaggle.wheels``, ``kagglekit.kaggle.kernel``, ``kagglekit.kaggle.bundle`` and
``kagglekit.demo.notebook`` give these modules with a DeprecationWarning.

Importing this package is cheap: each name is loaded from its submodule on first use.
"""

from __future__ import annotations

from kagglekit._lazy import lazy_exports

_NAMES = {  # submodule -> the names it exports
    "wheels": ("build_wheels", "check_wheels", "kaggle_image", "KaggleImage", "Target", "WheelError", "NoWheelError"),
    "kernel": ("check_kernel_metadata", "check_dataset_metadata", "dataset_metadata", "KernelMetadataError"),
    "bundle": ("push", "push_commands", "Bundle", "PushError"),
    "notebook": ("execute_notebook", "inject_parameters", "run_kernel", "NotebookError"),
}
_EXPORTS = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
