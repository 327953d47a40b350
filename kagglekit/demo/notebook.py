"""Moved: :mod:`kagglekit.delivery.notebook` (the headless notebook runner is delivery). This path, and
``python -m kagglekit.demo.notebook``, give that module, with a DeprecationWarning, until the next release."""

from kagglekit._lazy import moved_module

if __name__ == "__main__":  # attributed to __main__, so Python's default filters show it
    import sys
    import warnings

    from kagglekit.delivery.notebook import main

    warnings.warn("python -m kagglekit.demo.notebook moved to python -m kagglekit.delivery.notebook (the old one "
                  "works until the next release)", DeprecationWarning, stacklevel=1)
    sys.exit(main())
moved_module(__name__, "kagglekit.delivery.notebook")
