"""The course: notebook-side helpers and the papermill runner.

In a notebook: ``settings(profile, table, **overrides)`` (the profile's settings with the user's
overrides, validated) and ``record(name, value, **meta)`` / ``results()`` (key results for the
summary). From a shell: ``python -m regkit.course run [--profile quick|full] [--only 03]
[-p name value ...] [--resume]`` (see ``regkit.course.runner``), ``python -m regkit.course sweep NB
--grid lr=1e-3,3e-3 --seeds 3`` (see ``regkit.course.sweep``) and ``python -m regkit.course list``.
The runner lives in its own module so that notebooks importing ``regkit.course`` stay light.
"""

from regkit.course.profiles import Settings, settings
from regkit.course.recording import record, results

__all__ = ["Settings", "record", "results", "settings"]
