"""regkit.device.processor_name: the CPU model from /proc/cpuinfo, with fallbacks."""

import platform

from regkit.device import processor_name


def test_processor_name_reads_the_first_model_name(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.0GHz\n\n"
                       "processor\t: 1\nmodel name\t: Other\n")
    assert processor_name(cpuinfo) == "Example CPU @ 2.0GHz"


def test_processor_name_falls_back_without_cpuinfo_or_model_name(tmp_path):
    expected = platform.processor() or platform.machine()
    assert processor_name(tmp_path / "missing") == expected
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t:   \n")
    assert processor_name(tmp_path / "cpuinfo") == expected and expected
