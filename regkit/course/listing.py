"""``python -m regkit.course list``: every notebook's parameters with type, doc and per-profile values."""

from __future__ import annotations

from regkit.course.catalog import for_stem
from regkit.course.notebook import CourseNotebook, discover, select
from regkit.course.profiles import PROFILES


def describe(nb: CourseNotebook) -> list[str]:
    """The lines that ``list`` prints for one notebook."""
    catalog = for_stem(nb.stem)
    if catalog is None:  # a notebook without a catalog: its parameters cell is all there is
        lines = []
        for p in nb.parameters().values():
            kind = p.kind.__name__ if p.kind else "profile's value"
            lines.append(f"    {p.name} = {p.default!r}  ({kind})" + (f"  # {p.help}" if p.help else ""))
        return lines
    lines = [f"    (profiles and parameters: regkit/course/catalog/nb{catalog.number}.py)",
             f"    profile = 'quick'  (str): one of {', '.join(PROFILES)}"]
    rows = {profile: catalog.row(profile) for profile in PROFILES}
    for knob in catalog.knobs.values():  # None in the notebook: the profile's value, shown per profile below
        lines.append(f"    {knob.name} = None  ({knob.kind.__name__}): {knob.doc}")
        lines.append("        " + "; ".join(f"{profile}: {rows[profile][knob.name]!r}" for profile in PROFILES))
        if knob.choices:
            lines.append(f"        one of: {', '.join(map(str, knob.choices))}")
    return lines


def list_notebooks(notebooks_dir: str, only: list[str] | None) -> None:
    """Print the selected notebooks and their parameters (all notebooks without ``only``)."""
    selected = select(discover(notebooks_dir), only)
    if not selected:
        print(f"no notebooks NN_topic.ipynb in {notebooks_dir}")
    for nb in selected:
        print(nb.name)
        print("\n".join(describe(nb)))
