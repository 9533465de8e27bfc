"""README's package map names real files and importable names, so that it cannot drift from the code."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_map() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Package map\n")
    return text[start: text.index("\n## ", start + 1)]


def test_every_path_in_the_package_map_exists():
    section = package_map()
    paths = re.findall(r"`(regkit/[\w/<>.]+)`", section)
    assert len(paths) > 30
    for path in paths:
        if "<" in path:  # a pattern such as regkit/widgets/<demo>.py: its folder
            path = path[: path.rindex("/", 0, path.index("<"))]
        assert (ROOT / path).exists(), f"README's package map names {path}, which does not exist"


def test_every_dotted_name_in_the_package_map_imports():
    for name in re.findall(r"`(regkit(?:\.\w+)+)`", package_map()):
        parts = name.split(".")
        for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:split]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
            break
        else:
            raise AssertionError(f"README's package map names {name}, which does not import")
