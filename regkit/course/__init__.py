"""The course: notebook-side helpers and the papermill runner.

In a notebook: ``settings(profile, table, **overrides)`` (the profile's settings with the user's
overrides, validated) and ``record(name, value, **meta)`` / ``results()`` (key results for the
summary). From a shell: ``python -m regkit.course run [--profile quick|full] [--only 03]
[-p name value ...] [--resume]`` and ``python -m regkit.course list`` (see ``regkit.course.runner``).
The runner lives in its own module so that notebooks importing ``regkit.course`` stay light.
"""

from regkit.course.profiles import Settings, settings
from regkit.course.recording import record, results

__all__ = ["Settings", "record", "results", "settings"]
