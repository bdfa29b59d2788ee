"""The checker's two families of settings: SmolVLM2's ``longest_edge`` (messages and reports
byte-identical to before) and Qwen-VL's ``max_pixels`` (named instead, with a reproduce line
that passes the processor and the setting); arguments of the wrong family fail at once."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tokenguard.errors import TemplateError
from pytest_tokenguard.testing.qwen_oracle import is_qwen_processor, qwen_oracle
from pytest_tokenguard.testing.splitcheck import SplitterChecker, SplitterReport, _Failure

CONVERSATION = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def overflow() -> _Failure:
    return _Failure("", CONVERSATION, chunk=0, chunks=1, chunk_json=CONVERSATION, real=4097,
                    overflow=True)


def test_a_smolvlm_failure_reads_as_before() -> None:
    assert overflow().message(4096, 384).splitlines() == [
        "chunk 0 of 1 is 4097 tokens as the real processor counts the rendered chunk, over "
        "max_tokens 4096 by 1 (the splitter claimed no count; longest_edge 384)",
        "chunk 0: the whole conversation below",
        'conversation (shrunk): [{"role": "user", "content": [{"type": "text", "text": '
        '"hi"}]}]',
        "to reproduce, paste the conversation into a test: check_chunks(conversation, "
        "my_split(conversation), counter, 4096)",
    ]


def test_a_qwen_failure_names_max_pixels() -> None:
    lines = overflow().message(4096, "max_pixels 401408").splitlines()
    assert lines[0].endswith("(the splitter claimed no count; max_pixels 401408)")
    assert "longest_edge" not in "\n".join(lines)
    assert lines[-1] == ("to reproduce, paste the conversation into a test: check_chunks("
                         "conversation, my_split(conversation), processor, 4096, "
                         "max_pixels=401408)")


def report(**kwargs: Any) -> SplitterReport:
    values: dict[str, Any] = {"longest_edge": 384, "max_tokens": 4096, "examples": 60,
                              "chunks": 130, "refused": 0, "refusals": (), "fullest": 4096,
                              "confirmed": 3, "seconds": 1.25}
    values.update(kwargs)
    return SplitterReport(**values)


def test_reports_name_their_setting() -> None:
    assert str(report()) == (
        "splitter check at longest_edge 384, max_tokens 4096: 60 examples, 130 chunks "
        "(fullest 4096 tokens), none refused, 3 chunks recounted by the processor, 1.2 s")
    qwen = report(longest_edge=None, max_pixels=401408)
    assert qwen.setting == "max_pixels 401408"
    assert str(qwen).startswith("splitter check at max_pixels 401408, max_tokens 4096: ")


def test_settings_of_the_other_family_fail_at_once() -> None:
    check = SplitterChecker(lambda edge: pytest.fail("nothing is loaded"), resolutions=[384])
    with pytest.raises(ValueError, match="max_pixels/min_pixels are Qwen-VL settings"):
        check(lambda messages: [messages], 4096, max_pixels=[200704])
    with pytest.raises(ValueError, match=r"must be a Qwen2-VL, Qwen2\.5-VL or Qwen3-VL"):
        check(lambda messages: [messages], 4096, processor=object())


class Qwen2VLProcessor:  # the name is what is read: nothing is imported
    pass


class MyProcessor(Qwen2VLProcessor):
    pass


def test_qwen_processors_are_told_by_their_class_names() -> None:
    assert is_qwen_processor(MyProcessor())
    assert not is_qwen_processor(object())
    assert qwen_oracle(object()) is None
    assert qwen_oracle("Qwen/Qwen2.5-VL-7B-Instruct") is None


def test_qwen_settings_on_a_smolvlm_counter_are_refused() -> None:
    from pytest_tokenguard.testing.splitcheck import _oracle

    with pytest.raises(TemplateError, match="min_pixels/max_pixels are Qwen-VL settings"):
        _oracle(object(), max_pixels=200704)
