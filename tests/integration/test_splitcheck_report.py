"""What a user sees when the splitter check fails: the evidence, not the machinery.

A planted user test checks a splitter that budgets 81 tokens per image (the bug this
project was born from) at a realistic limit. Its failure report must be short and hold
the shrunk conversation as JSON that reproduces the failure when pasted into a test,
the offending chunk, and the claimed and real token counts; no internal frames and no
chained private exception (it was 233 lines).
"""

from __future__ import annotations

import json
import re

import pytest

from pytest_tokenguard.testing.splitcheck import SplitterCheckError, check_chunks
from tests.helpers import budget_split, budget_split_source, counter, model_ref

PLANTED = '''
from hypothesis import given, settings, strategies as st
from pytest_tokenguard.processor.loading import load_processor
from pytest_tokenguard.testing import strategies as tgst
from pytest_tokenguard.testing.splitcheck import check_chunks, check_splitter
from pytest_tokenguard.splitting import split

MODEL = {model!r}


{budget_split}def test_my_splitter():
    check_splitter(budget_split, load_processor(MODEL, 384), max_tokens=4096)


def test_my_splitter_with_the_fixture(tokenguard_check_splitter):
    tokenguard_check_splitter(budget_split, max_tokens=4096)


@settings(max_examples=10)
@given(data=st.data())
def test_inside_given_with_a_session_counter(shared_counter, data):
    conversation = data.draw(tgst.boundary_conversation_dicts(shared_counter, 4096))
    try:
        chunks = split(conversation, 4096, counter=shared_counter)
    except Exception:
        return
    check_chunks(conversation, chunks, shared_counter, 4096)
'''

CONFTEST = '''
import pytest
from pytest_tokenguard.processor.loading import load_processor
from pytest_tokenguard.tokens import TokenCounter


@pytest.fixture(scope="session")
def shared_counter():
    loaded = load_processor({model!r}, 384)
    return TokenCounter(loaded.processor, loaded.spec, loaded.longest_edge)
'''


def section(output: str, name: str) -> list[str]:
    """The lines of one test's failure report."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"_+ {re.escape(name)} _+$", line))
    end = next(i for i in range(start + 1, len(lines))
               if re.match(r"_{3,} .* _{3,}$|=+ short test summary", lines[i]))
    return lines[start:end]


@pytest.mark.tokenguard_no_baseline("the inner runs draw hypothesis examples")
def test_a_failure_report_is_the_evidence(pytester: pytest.Pytester) -> None:
    model = model_ref("2.2B")
    pytester.makepyfile(
        test_user=PLANTED.format(model=model, budget_split=budget_split_source()))
    pytester.makeconftest(CONFTEST.format(model=model))
    result = pytester.runpytest_subprocess(
        "--hypothesis-profile=tokenguard-ci", f"--tokenguard-model={model}",
        "--tokenguard-resolutions=384", "-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=2, passed=1)  # inside @given: no health-check failure
    output = result.stdout.str()
    for name in ("test_my_splitter", "test_my_splitter_with_the_fixture"):
        lines = section(output, name)
        text = "\n".join(lines)
        assert len(lines) <= 40, text  # was 233 lines
        for machinery in ("Traceback", "hypothesis/", "splitcheck.py", "_Found",
                          "During handling", "direct cause", "Falsifying example"):
            assert machinery not in text, (machinery, text)
        headline = re.search(r"E +pytest_tokenguard\.errors\.SplitterCheckError: chunk (\d+) of "
                             r"\d+ is (\d+) tokens as the real processor counts the rendered "
                             r"chunk, over max_tokens 4096 by (\d+) \(the splitter claimed no "
                             r"count; longest_edge 384\)", text)
        assert headline, text
        real = int(headline.group(2))
        assert real - 4096 == int(headline.group(3)) > 0
        pasted = next(line.split("conversation (shrunk): ", 1)[1] for line in lines
                      if "conversation (shrunk): " in line)
        conversation = json.loads(pasted)
        assert any(line.startswith(f"E       chunk {headline.group(1)}: ") for line in lines)
        # pasted into a test, the conversation reproduces the failure with the same count
        with pytest.raises(SplitterCheckError, match=f"is {real} tokens as the real processor"):
            check_chunks(conversation, budget_split(conversation), counter("2.2B", 384), 4096)
