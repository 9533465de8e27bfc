"""regkit.widgets.show: live widget interactively, static picture without widget comms when headless."""

import comm
import pytest

from regkit.headless import HEADLESS_ENV, is_headless
from regkit.widgets import show
from regkit.widgets.weight_decay import weight_decay_widget


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True), ("yes", True)])
def test_is_headless_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(HEADLESS_ENV, value)
    assert is_headless() is expected


def test_headless_show_displays_pngs_and_opens_no_comm(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    opened, shown = [], []

    def record_comm(*args, **kwargs):
        opened.append(kwargs.get("target_name"))
        return comm.DummyComm(*args, **kwargs)

    monkeypatch.setattr(comm, "create_comm", record_comm)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    assert show(weight_decay_widget, steps=20) is None
    assert opened == [], "a headless demo must not open widget comms"
    assert len(shown) == 1 and shown[0].data.startswith(b"\x89PNG")


def test_interactive_show_returns_the_widget(monkeypatch):
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    box = show(weight_decay_widget, steps=20)
    assert box.controls["lr"].value == pytest.approx(0.1)


def test_headless_show_rejects_a_demo_without_a_picture(monkeypatch):
    import ipywidgets

    monkeypatch.setenv(HEADLESS_ENV, "1")
    with pytest.raises(ValueError, match="drew no Image"):
        show(lambda: ipywidgets.VBox([ipywidgets.IntSlider()]))
