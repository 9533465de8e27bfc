"""Profiles and a notebook's effective settings: ``notebook_settings("03", globals())`` for a course
notebook (its profiles and parameters live in ``regkit/course/catalog/nb03.py``), or
``settings(profile, table, **overrides)`` for a table of one's own.

The ``parameters`` cell holds only literals (``profile = "quick"``, ``steps = None``, ...); the next
cell turns them into settings::

    cfg = regkit.course.settings(
        profile,
        {"quick": {"steps": 300, "lr": 1e-3}, "full": {"steps": 20_000, "lr": 1e-3}},
        steps=steps, lr=lr,
    )
    cfg.steps   # the profile's value unless the user passed -p steps N

The profile picks a row of ``table``; each override that is not None replaces that row's value
after a type check against it (an int is accepted where a float is expected).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# The profiles, the one place to add one: name -> (the row of each notebook's catalog it starts from,
# values replacing that row's in every notebook that has the setting). "quick" runs every notebook on
# a laptop CPU / in CI in minutes, "full" the paper-scale setting on a GPU, "cpu" the quick notebook plus
# its evidence experiments (evidence/DESIGN.md; a notebook without a "cpu" row runs its "quick" row).
PROFILE_ROWS: dict[str, tuple[str, dict[str, Any]]] = {"quick": ("quick", {}), "full": ("full", {}), "cpu": ("cpu", {})}
PROFILES = tuple(PROFILE_ROWS)


class Settings(Mapping):
    """Read-only settings with attribute access (``cfg.steps``) and mapping access (``dict(cfg)``)."""

    def __init__(self, profile: str, values: Mapping[str, Any], overridden: tuple[str, ...] = ()):
        object.__setattr__(self, "_profile", profile)
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_overridden", tuple(overridden))

    @property
    def profile(self) -> str:
        return self._profile

    @property
    def overridden(self) -> tuple[str, ...]:
        """The names whose profile value the user replaced."""
        return self._overridden

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"no setting {name!r}; the settings are: {', '.join(values)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are read-only (tried to set {name!r}); pass overrides to settings()")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Settings(profile={self._profile!r}, {items})"


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def accepted_types(default: Any) -> type | tuple[type, ...] | None:
    """The types a value may have to replace ``default`` (None: any type)."""
    if default is None:
        return None
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return (float, int)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return type(default)


def check_value(name: str, value: Any, default: Any, where: str) -> Any:
    """``value`` if it may replace ``default`` (ints become floats for float defaults), else TypeError."""
    kind = accepted_types(default)
    if kind is None:
        return value
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}; {where} expects {_type_name(kind)}")
    return float(value) if isinstance(default, float) else value


def settings(profile: str, table: Mapping[str, Mapping[str, Any]], **overrides: Any) -> Settings:
    """Pick ``table[profile]``, apply the non-None ``overrides`` after a type check, print and return them.

    Every profile row must define the same names; overrides must name one of them.
    Raises ValueError (unknown profile or name, inconsistent table) or TypeError (wrong type).
    """
    if not table:
        raise ValueError("settings: table must map at least one profile to its settings")
    if profile not in table:
        raise ValueError(f"profile={profile!r} is not one of: {', '.join(map(repr, table))}")
    names = list(table[profile])
    for other, row in table.items():
        if set(row) != set(names):
            diff = sorted(set(row) ^ set(names))
            raise ValueError(f"settings: profiles {profile!r} and {other!r} define different names: {diff}")
    unknown = [k for k in overrides if k not in table[profile]]
    if unknown:
        raise ValueError(f"settings: unknown setting {unknown[0]!r}; valid names are: {', '.join(names)}")

    def check(name: str, value: Any) -> Any:
        default = table[profile][name]
        return check_value(name, value, default, f"the {profile!r} profile (default {default!r})")

    return _apply(profile, table[profile], overrides, check)


def _apply(profile: str, row: Mapping[str, Any], overrides: Mapping[str, Any], check) -> Settings:
    """``row`` with each non-None override, checked by ``check(name, value)``; printed."""
    values = dict(row)
    changed = [name for name, value in overrides.items() if value is not None]
    for name in changed:
        values[name] = check(name, overrides[name])
    cfg = Settings(profile, values, changed)
    print(f"settings (profile {profile!r}):")
    for name, value in values.items():
        print(f"  {name} = {value!r}" + ("  (overridden)" if name in changed else ""))
    return cfg


def notebook_settings(number: str, namespace: Mapping[str, Any] | str, **overrides: Any) -> Settings:
    """Course notebook ``number``'s settings: its catalog's profile row with the user's parameters.

    ``namespace``: the notebook's ``globals()`` (``profile`` and every parameter of its catalog are
    read from it: the ``parameters`` cell defines them), or the profile's name with the parameters
    as ``overrides``. None means the profile's value. Raises ValueError (unknown profile or name,
    a value out of range, a parameter missing from the namespace) or TypeError (wrong type).
    """
    from regkit.course.catalog import load

    catalog = load(number)
    if isinstance(namespace, str):
        profile = namespace
    else:
        missing = [name for name in ("profile", *catalog.knobs) if name not in namespace]
        if missing:
            raise ValueError(f"notebook {number}: the parameters cell must define {', '.join(missing)} "
                             f"(see regkit.course.catalog.parameters_source({number!r}))")
        profile, overrides = namespace["profile"], {name: namespace[name] for name in catalog.knobs}
    unknown = [name for name in overrides if name not in catalog.knobs]
    if unknown:
        raise ValueError(f"notebook {number}: unknown parameter {unknown[0]!r}; its parameters are: "
                         f"{', '.join(catalog.knobs)}")
    row = catalog.row(profile)
    where = f"notebook {number}, profile {profile!r}"
    return _apply(profile, row, overrides, lambda name, value: catalog.knobs[name].check(value, where))
