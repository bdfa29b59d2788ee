"""The one channel between the process that ran a test and the one that gates it."""

from __future__ import annotations

from pytest_tokenguard.figures import GpuFigure, ImageFigure, ResolutionFigures, TestFigures
from pytest_tokenguard.plugin import wire

LE384 = ResolutionFigures(384, 1, 81, 84, 84, (ImageFigure(384, 384, 81, 84),), patches=1)


def test_published_figures_read_back_equal_with_patches() -> None:
    properties: list[tuple[str, object]] = []
    figures = TestFigures((LE384,), GpuFigure(7, "torch_reserved"))
    check = wire.GpuCheck("torch reserved", 7, 9, ((0, 7), (1, 5)))
    wire.publish(properties, figures, excluded=None, gpu_checks=[check])
    record = wire.read(properties)
    assert record.present
    assert record.figures == figures
    assert record.figures.resolutions[0].patches == 1  # carried on the wire, not compared
    assert record.gpu_checks == (check,)
    assert record.excluded is None


def test_other_plugins_report_gpu_peaks_through_the_same_name() -> None:
    properties: list[tuple[str, object]] = [
        ("other", {"gpu_peak_bytes": 1}),
        ("tokenguard", {"gpu_peak_bytes": 7, "gpu_measure": "torch_reserved"}),
    ]
    wire.publish(properties, TestFigures((LE384,)), excluded="random crops")
    record = wire.read(properties)
    assert record.figures == TestFigures((LE384,), GpuFigure(7, "torch_reserved"))
    assert record.excluded == "random crops"


def test_measured_gpu_peak_wins_over_prediction_in_either_order() -> None:
    predicted = ("tokenguard", {"gpu_peak_bytes": 9, "gpu_measure": "predicted_+_10%_margin"})
    measured = ("tokenguard", {"gpu_peak_bytes": 7, "gpu_measure": "torch_reserved"})
    for properties in ([predicted, measured], [measured, predicted]):
        assert wire.read(properties).figures.gpu == GpuFigure(7, "torch_reserved")
    assert wire.read([predicted]).figures.gpu == GpuFigure(9, "predicted_+_10%_margin")


def test_nothing_published_is_not_present() -> None:
    assert not wire.read([("other", 1)]).present


def test_the_record_is_json_text() -> None:
    """``--junitxml`` wrote the property as a Python repr (``{'figures': ...}``, None)."""
    import json

    properties: list[tuple[str, object]] = []
    wire.publish(properties, TestFigures((LE384,)), excluded=None)
    ((name, value),) = properties
    assert name == "tokenguard"
    assert isinstance(value, str)
    assert json.loads(value)["figures"]["resolutions"][0]["image_tokens"] == 81
    assert json.loads(value)["excluded"] is None


def test_other_plugins_may_send_json_text_too() -> None:
    properties: list[tuple[str, object]] = [
        ("tokenguard", '{"gpu_peak_bytes": 7, "gpu_measure": "torch_reserved"}'),
        ("tokenguard", "not json"),
    ]
    assert wire.read(properties).figures.gpu == GpuFigure(7, "torch_reserved")
