"""The course: notebook-side helpers and the papermill runner.

In a notebook: ``notebook_settings("03", globals())`` (its profile's settings from
``regkit/course/catalog/nb03.py`` with the user's parameters, validated), ``settings(profile, table,
**overrides)`` (the same for a table of one's own) and ``record(name, value, **meta)`` / ``results()`` (key results for the
summary; ``recorded()`` shows them as a table at the end of a notebook). From a shell: ``python -m regkit.course run [--profile quick|full] [--only 03]
[-p name value ...] [--resume]`` (see ``regkit.course.runner``), ``python -m regkit.course sweep NB
--grid lr=1e-3,3e-3 --seeds 3`` (see ``regkit.course.sweep``) and ``python -m regkit.course list``.
The runner lives in its own module so that notebooks importing ``regkit.course`` stay light.
"""

from regkit.course.profiles import Settings, notebook_settings, settings
from regkit.course.recording import record, recorded, results

__all__ = ["Settings", "notebook_settings", "record", "recorded", "results", "settings"]
