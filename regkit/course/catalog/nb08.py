"""Notebook 08 (classroom demos): the widgets, the same in every profile."""

STEM = "08_classroom_demos"
KNOBS = ()
PROFILES = {"quick": {}, "full": {}}
