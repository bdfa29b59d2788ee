"""A user's Qwen-VL splitter checked through the ``tokenguard_check_splitter`` fixture, with
pytester: one that forgets the two wrapper tokens of every image fails on the first examples
with a short report naming ``max_pixels`` (the evidence, no machinery); the right one passes.

The user's suite builds the real transformers Qwen2.5-VL processor offline (the published
settings, ChatML template, a BPE stand-in tokenizer: tests/qwen_helpers.py, planted next to
it with the planted splitters of tests/qwen_planted.py) and hands it to the fixture with
``processor=``, the settings its training calls use as ``max_pixels=[...]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_tokenguard.testing.splitcheck import SplitterCheckError, check_chunks
from tests.integration.test_splitcheck_report import section

HERE = Path(__file__).resolve().parents[1]
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

SUITE = '''
from pytest_tokenguard.families.qwen_text import QwenTokenCounter
from qwen_helpers import chat_processor
from qwen_planted import QwenPlantedSplitter

PROCESSOR = chat_processor({model!r}, "bpe")
COUNTER = QwenTokenCounter.from_processor(PROCESSOR)


def test_my_splitter_forgets_the_wrappers(tokenguard_check_splitter):
    my_split = QwenPlantedSplitter(COUNTER, 4096, "image pads only")
    tokenguard_check_splitter(my_split, max_tokens=4096, processor=PROCESSOR,
                              max_pixels=[401408])


def test_my_splitter_is_right(tokenguard_check_splitter):
    my_split = QwenPlantedSplitter(COUNTER, 4096)
    reports = tokenguard_check_splitter(my_split, max_tokens=4096, processor=PROCESSOR,
                                        max_pixels=[200704, 401408], max_examples=10)
    assert [r.max_pixels for r in reports] == [200704, 401408]
    assert all(r.confirmed for r in reports)
'''


@pytest.mark.tokenguard_no_baseline("the inner runs draw hypothesis examples")
def test_a_wrong_qwen_splitter_fails_fast_and_a_right_one_passes(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        qwen_helpers=(HERE / "qwen_helpers.py").read_text(encoding="utf-8"),
        qwen_planted=(HERE / "qwen_planted.py").read_text(encoding="utf-8"),
        test_user=SUITE.format(model=MODEL))
    result = pytester.runpytest_subprocess(
        "--hypothesis-profile=tokenguard-ci", "-p", "no:cacheprovider", "-p", "no:randomly",
        "--durations=2", "test_user.py")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    lines = section(output, "test_my_splitter_forgets_the_wrappers")
    text = "\n".join(lines)
    assert len(lines) <= 40, text
    for machinery in ("Traceback", "hypothesis/", "splitcheck.py", "_Found", "During handling",
                      "direct cause", "Falsifying example"):
        assert machinery not in text, (machinery, text)
    headline = re.search(r"E +pytest_tokenguard\.errors\.SplitterCheckError: chunk (\d+) of "
                         r"\d+ is (\d+) tokens as the real processor counts the rendered "
                         r"chunk, over max_tokens 4096 by (\d+) \(the splitter claimed no "
                         r"count; max_pixels 401408\)", text)
    assert headline, text
    assert "longest_edge" not in text
    real = int(headline.group(2))
    assert real - 4096 == int(headline.group(3)) > 0
    pasted = next(line.split("conversation (shrunk): ", 1)[1] for line in lines
                  if "conversation (shrunk): " in line)
    conversation = json.loads(pasted)
    # pasted into a test, the conversation reproduces the failure with the same count
    from pytest_tokenguard.families.qwen_text import QwenTokenCounter
    from tests.qwen_helpers import chat_processor
    from tests.qwen_planted import QwenPlantedSplitter

    processor = chat_processor(MODEL, "bpe")
    wrong = QwenPlantedSplitter(QwenTokenCounter.from_processor(processor), 4096,
                                "image pads only")
    with pytest.raises(SplitterCheckError, match=f"is {real} tokens as the real processor"):
        check_chunks(conversation, wrong(conversation, 401408), processor, 4096,
                     max_pixels=401408)
