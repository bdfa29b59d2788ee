"""The Qwen-VL audit's pure parts: the cut on Qwen's one-token wrapper, the ``max_pixels``
candidates, the processor line users paste, the pad positions, the report in Qwen's
terms, and the refusals of the other family's settings, by name."""

from __future__ import annotations

import io
import json

import pytest

from pytest_tokenguard.audit.fits import what_fits
from pytest_tokenguard.audit.measure import AuditSettings, SampleResult, pricer_for
from pytest_tokenguard.audit.qwen import TOKEN_STEPS, max_pixels_candidates
from pytest_tokenguard.audit.report import AuditReport
from pytest_tokenguard.audit.summary import Fit, Summary
from pytest_tokenguard.audit.trainer import Cut, TrainerRules, cut
from pytest_tokenguard.errors import InputError, TemplateError
from pytest_tokenguard.families.qwen_text import _media_span

QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"
SMOL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


def test_a_left_cut_through_qwens_one_wrapper_token() -> None:
    """Qwen's block starts with one wrapper token (``<|vision_start|>``): dropping it alone
    is a broken block, dropping one token less is a cut in text (SmolVLM2's two wrapper
    tokens make that one a broken block too), one more drops a pad."""
    tokens, first, after = 100, 10, 50
    assert cut(tokens, first, after, tokens - (first - 1), "left", 1) is Cut.TEXT
    assert cut(tokens, first, after, tokens - first, "left", 1) is Cut.WRAPPER
    assert cut(tokens, first, after, tokens - (first + 1), "left", 1) is Cut.MEDIA
    assert cut(tokens, first, after, tokens - (first - 1), "left", 2) is Cut.WRAPPER
    assert cut(tokens, first, after, tokens - (first - 1), "left") is Cut.WRAPPER
    # right: the pad at index 49 is the last; only <|vision_end|> lost at 50
    assert cut(tokens, first, after, 50, "right", 1) is Cut.WRAPPER
    assert cut(tokens, first, after, 49, "right", 1) is Cut.MEDIA
    assert cut(tokens, first, after, 11, "right", 1) is Cut.MEDIA


def test_max_pixels_candidates_are_whole_image_tokens_in_the_processors_bounds() -> None:
    values = max_pixels_candidates(12845056, 3136, 28)
    assert values[-1] == 12845056
    assert values[0] == 64 * 28 * 28
    assert all(v % (28 * 28) == 0 for v in values)
    assert list(values) == sorted(set(values))
    steps = [k * 1024 for k in TOKEN_STEPS if 65536 <= k * 1024 < 401408]
    assert max_pixels_candidates(401408, 65536, 32) == (*steps, 401408)
    # an audited value below every step: itself only
    assert max_pixels_candidates(40000, 3136, 28) == (40000,)


def test_the_processor_line_sets_both_bounds_of_size() -> None:
    """``size=`` replaces both of the Qwen processor's bounds: the line keeps its
    ``min_pixels`` beside the ``max_pixels`` that fits, and names it."""
    fit = Fit(401408, 2048, 2, 4, 1.0, None, "keep max_length 2048, lower max_pixels",
              "max_pixels", 3136)
    assert fit.processor_line("m") == (
        'processor = AutoProcessor.from_pretrained("m", size={"shortest_edge": 3136, '
        '"longest_edge": 401408})  # max_pixels=401408')
    smol = Fit(768, 2048, 1, 1, 1.0, None, "keep max_length 2048, lower longest_edge")
    assert smol.processor_line("m") == (
        'processor = AutoProcessor.from_pretrained("m", size={"longest_edge": 768})')


def test_pad_positions_shift_by_the_pads_added_before() -> None:
    pads = frozenset({7})
    # three one-pad blocks of 4, 1 and 3 pads in [1, 7, 2, 7, 7, 3]
    first, after = _media_span([1, 7, 2, 7, 7, 3], [4, 1, 3], 6 + 3 + 0 + 2, pads)
    assert first == 1
    # expanded: 1, 7x4, 2, 7, 7x3, 3 -> the last pad at index 9 of 11
    assert after == 1
    assert _media_span([1, 2], [], 2, pads) == (None, None)
    with pytest.raises(TemplateError, match="2 placeholder tokens for 1 image"):
        _media_span([7, 7], [5], 6, pads)


def test_the_report_speaks_qwen() -> None:
    rules = TrainerRules(1000, "right", (), 1)
    summary = Summary(rules, 401408, (200704, 401408), (), 1, (), "max_pixels", 3136,
                      "<|image_pad|>")
    summary.add(SampleResult("a", 1200, 512, 1, 0, 2048, 30, 600, (900, 1200),
                             (1024, 2048)))
    fits = tuple(what_fits(summary, 1.0, None))
    assert [(f.what, f.longest_edge, f.max_length) for f in fits] == [
        ("keep max_pixels 401408, raise max_length", 401408, 1200),
        ("keep max_length 1000, lower max_pixels", 200704, 1000)]
    report = AuditReport(summary, "ckpt", 1.0, None, fits, memory_refused="no config")
    text = "\n".join(report.lines())
    assert "at max_pixels=401408" in text
    assert "512 <|image_pad|> tokens" in text
    assert "worst batch: not predicted: no config" in text
    out = io.StringIO()
    report.write_json(out)
    data = json.loads(out.getvalue())
    assert data["max_pixels"] == 401408
    assert "longest_edge" not in data
    assert data["memory_refused"] == "no config"
    assert data["over_max_length"] == ["a"]
    assert data["cut_inside_media"] == []  # the last pad at 599: the cut is in text
    assert [f["max_pixels"] for f in data["fits"]] == [401408, 200704]
    assert '"shortest_edge": 3136, "longest_edge": 200704' in text


@pytest.mark.parametrize(("settings", "words"), [
    (AuditSettings(QWEN, longest_edge=768),
     ["longest_edge=768 is SmolVLM2's resolution", QWEN, "--max-pixels"]),
    (AuditSettings(QWEN, num_frames=8), ["num_frames=8", "images only", "--num-frames"]),
    (AuditSettings(QWEN, fps=2.0), ["fps=2.0", "--fps"]),
    (AuditSettings(SMOL, max_pixels=401408),
     ["max_pixels=401408 is a Qwen-VL setting", SMOL, "--longest-edge"]),
])
def test_the_other_familys_setting_is_refused_by_name(settings: AuditSettings,
                                                      words: list[str]) -> None:
    with pytest.raises(InputError) as caught:
        pricer_for(settings)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
