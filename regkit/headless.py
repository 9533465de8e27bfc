"""Headless execution: notebooks run by the course runner (papermill) open no live widgets.

Executing a notebook whose cells open ipywidgets comms can deadlock nbclient at random
(jupyter/nbclient#312, jupyter/nbconvert#1921 and #2029, all open). The runner therefore sets
``REGKIT_HEADLESS=1`` for its kernels; progress bars then print text and classroom demos show
a static picture of their first state (``regkit.widgets.show``). In JupyterLab nothing changes.
"""

import os

HEADLESS_ENV = "REGKIT_HEADLESS"


def is_headless() -> bool:
    """True when ``REGKIT_HEADLESS`` is set to anything but "" or "0"."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")
