"""The plugin seen from a user's test suite, through pytester."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import model_folder

# pytester's in-process runs drop modules first imported inside them; numpy cannot be
# imported twice in one process, so the heavy modules are imported here, once.
pytest.importorskip("transformers.models.smolvlm.processing_smolvlm")
pytest.importorskip("PIL.Image")

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"

PLANTED = """
import pytest
from PIL import Image
from transformers import AutoProcessor

MODEL = {model!r}

@pytest.mark.image_tokens(81)
def test_frames_cost_81_each():
    # the code under test builds its own processor with the checkpoint's default (1536)
    processor = AutoProcessor.from_pretrained(MODEL)
    processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
"""


@pytest.fixture
def model_path() -> str:
    return str(model_folder(MODEL))


def test_marker_catches_processor_built_by_code_under_test(pytester: pytest.Pytester,
                                                            model_path: str) -> None:
    pytester.makepyfile(PLANTED.format(model=model_path))
    result = pytester.runpytest("--tokenguard", f"--tokenguard-model={model_path}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "Image 384×384 cost 1377 <image> tokens (4×4 grid, 17 patches at longest_edge=1536) "
        "but the test declared 81; size={\"longest_edge\": 384} gives 1 patch (81 tokens)",
        "*384×384*1536*4×4*17*1377*1416*",
    ])


def test_marker_is_inert_without_tokenguard(pytester: pytest.Pytester, model_path: str) -> None:
    pytester.makepyfile(PLANTED.format(model=model_path))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= tokenguard =*")
    result.stdout.no_fnmatch_line("tokenguard: *")


def test_marker_passes_when_declared_count_is_right(pytester: pytest.Pytester,
                                                    model_path: str) -> None:
    pytester.makepyfile(PLANTED.format(model=model_path).replace(
        "from_pretrained(MODEL)", 'from_pretrained(MODEL, size={"longest_edge": 384})'))
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(passed=1)


def test_marker_fails_when_no_image_was_processed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.image_tokens(81)
        def test_nothing():
            pass
    """)
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*declared 81 image tokens per image but no SmolVLM processor*"])


def test_sequence_ceiling_names_sequence_and_length(pytester: pytest.Pytester,
                                                     model_path: str) -> None:
    pytester.makepyfile("""
        import pytest
        from PIL import Image

        @pytest.mark.max_sequence_tokens(4096)
        def test_four_frames(tokenguard_processor):
            frames = [Image.new("RGB", (384, 384))] * 4
            tokenguard_processor(text=["<image>" * 4 + "Describe."], images=[frames])
    """)
    result = pytester.runpytest("--tokenguard", f"--tokenguard-model={model_path}",
                                "--tokenguard-resolutions=384,1536")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Sequence 'test_sequence_ceiling_names_sequence_and_length.py::"
        "test_four_frames[[]le1536[]] call 1 sample 0' is * tokens, over the limit of 4096 by *",
    ])


def test_summary_table_and_header(pytester: pytest.Pytester, model_path: str) -> None:
    pytester.makepyfile("""
        from PIL import Image

        def test_frame(tokenguard_processor):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
    """)
    result = pytester.runpytest("--tokenguard", f"--tokenguard-model={model_path}", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([
        f"tokenguard: {model_path} from local folder *: all tokens exact; resolutions 384, 512, "
        "768, 1024, 1536",
        "*test_frame[[]le384[]]*384*1*1*81*84*84",
        "*test_frame[[]le512[]]*512*1*5*405*418*418",
        "*test_frame[[]le768[]]*768*1*5*405*418*418",
        "*test_frame[[]le1024[]]*1024*1*10*810*834*834",
        "*test_frame[[]le1536[]]*1536*1*17*1377*1416*1416",
    ])


def test_ini_values_mirror_options(pytester: pytest.Pytester, model_path: str) -> None:
    pytester.makeini(f"""
        [pytest]
        tokenguard = true
        tokenguard_model = {model_path}
        tokenguard_resolutions = 384
    """)
    pytester.makepyfile("""
        def test_res(tokenguard_longest_edge, tokenguard_counter):
            assert tokenguard_longest_edge == 384
            assert tokenguard_counter.image(384, 384).image_tokens == 81
    """)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_res[[]le384[]] PASSED*", "*= tokenguard =*"])


def test_markers_are_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.image_tokens: image_tokens(n)*",
                                 "@pytest.mark.max_sequence_tokens: max_sequence_tokens(n)*"])


@pytest.mark.parametrize("value", ["'81'", "0", "-3", ""])
def test_bad_marker_argument_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.image_tokens({value})
        def test_x():
            pass
    """)
    result = pytester.runpytest("--tokenguard")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.image_tokens(*): expected a positive number of "
                                 "tokens, e.g. @pytest.mark.image_tokens(81)"])


@pytest.mark.parametrize("value", ["0", "-384", "abc", ","])
def test_bad_resolutions_are_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_x(tokenguard_longest_edge): pass")
    result = pytester.runpytest(f"--tokenguard-resolutions={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tokenguard-resolutions*"])


def test_explicit_zero_longest_edge_in_fixture_is_clear(pytester: pytest.Pytester,
                                                         model_path: str) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.parametrize("tokenguard_longest_edge", [0])
        def test_x(tokenguard_processor):
            pass
    """)
    result = pytester.runpytest(f"--tokenguard-model={model_path}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*tokenguard: longest_edge must be a positive integer, got 0*"])


def test_missing_model_folder_is_clear(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(tokenguard_processor): pass")
    result = pytester.runpytest("--tokenguard-model=./no/such/folder",
                                "--tokenguard-resolutions=384")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*model folder './no/such/folder' does not exist: fix the path*"])


def test_unknown_model_offline_is_clear(pytester: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(pytester.path / "empty-cache"))
    pytester.makepyfile("def test_x(tokenguard_processor): pass")
    result = pytester.runpytest("--tokenguard-model=someorg/not-a-model",
                                "--tokenguard-resolutions=384")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown model 'someorg/not-a-model': HF_HUB_OFFLINE is set*"])


def test_embedded_default_when_offline(pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(pytester.path / "empty-cache"))
    monkeypatch.delenv("TOKENGUARD_MODEL", raising=False)
    pytester.makepyfile("""
        from PIL import Image
        def test_frame(tokenguard_processor):
            ids = tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
            assert ids["input_ids"][0].count(49190) == 81
    """)
    result = pytester.runpytest("--tokenguard", "--tokenguard-resolutions=384")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "tokenguard: embedded default for HuggingFaceTB/SmolVLM2-2.2B-Instruct (HF_HUB_OFFLINE "
        "is set and the model is not in the local cache): image and special tokens exact, text "
        "tokens an upper bound*",
    ])


def test_works_under_xdist(pytester: pytest.Pytester, model_path: str) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(PLANTED.format(model=model_path) + """
from PIL import Image as _I
def test_frame(tokenguard_processor):
    tokenguard_processor(text=["<image>"], images=[[_I.new("RGB", (384, 384))]])
""")
    result = pytester.runpytest_subprocess("-n", "2", "--tokenguard",
                                           f"--tokenguard-model={model_path}",
                                           "--tokenguard-resolutions=384,1536")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*but the test declared 81*",
        "*test_frame[[]le384[]]*384*1*1*81*84*84",
        "*test_frame[[]le1536[]]*1536*1*17*1377*1416*1416",
    ])


def test_loading_the_plugin_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import sys
        def test_modules():
            heavy = [m for m in ("torch", "transformers", "PIL", "tokenizers") if m in sys.modules]
            assert heavy == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest", "-p", "no:benchmark")
    result.assert_outcomes(passed=1)


def test_tokenguard_collect_only_stays_light(pytester: pytest.Pytester) -> None:
    """--tokenguard alone does not import transformers until a test records."""
    pytester.makepyfile("""
        import sys, json
        def test_x():
            pass
        def pytest_sessionfinish(session):
            pass
    """)
    pytester.makeconftest("""
        import sys, json
        def pytest_collection_finish(session):
            print("HEAVY", json.dumps(sorted(m for m in ("torch", "transformers")
                                             if m in sys.modules)))
    """)
    result = pytester.runpytest_subprocess("--tokenguard", "--collect-only", "-s",
                                           "--tokenguard-model=" + sys.prefix,
                                           "-p", "no:hypothesispytest", "-p", "no:benchmark")
    result.stdout.fnmatch_lines(['HEAVY []'])
    assert json is not None


@pytest.mark.tokenguard_no_baseline("the inner run draws hypothesis examples")
def test_check_splitter_fixture_catches_a_naive_splitter(pytester: pytest.Pytester,
                                                         model_path: str) -> None:
    """The user's one-liner: a splitter that packs by "81 tokens per image" is caught with
    the shrunk conversation and the real count; the exact splitter passes."""
    pytester.makepyfile("""
        from pytest_tokenguard.splitting import split
        from pytest_tokenguard.testing.strategies import conversation_dicts

        DIALOGUES = conversation_dicts(min_turns=8, max_turns=12, min_images_per_turn=2,
                                       max_images_per_turn=3, frames=False, max_text=50)

        def naive_split(messages, budget=1024):
            chunks, current, used = [], [], 0
            for message in messages:
                cost = sum(81 if item["type"] == "image" else len(item["text"]) // 4
                           for item in message["content"])
                if current and used + cost > budget:
                    chunks.append(current)
                    current, used = [], 0
                current.append(message)
                used += cost
            return chunks + ([current] if current else [])

        def test_naive(tokenguard_check_splitter):
            tokenguard_check_splitter(naive_split, max_tokens=1024, conversations=DIALOGUES,
                                      max_examples=20)

        def test_exact(tokenguard_check_splitter, tokenguard_counter):
            tokenguard_check_splitter(
                lambda messages: split(messages, 1024, counter=tokenguard_counter),
                max_tokens=1024, conversations=DIALOGUES, max_examples=10)
    """)
    result = pytester.runpytest(f"--tokenguard-model={model_path}",
                                "--tokenguard-resolutions=384", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*SplitterCheckError: chunk * is * tokens as the real processor counts the rendered "
        "chunk, over max_tokens 1024 by *",
        "*conversation (shrunk): *",
    ])
    result.stdout.fnmatch_lines(["FAILED *::test_naive[[]le384[]]*"])


def test_hypothesis_profiles_are_available_to_users(pytester: pytest.Pytester) -> None:
    """`--hypothesis-profile tokenguard-long` works in a project with no conftest of ours."""
    pytester.makepyfile("""
        from hypothesis import given, settings, strategies as st

        @given(st.integers())
        def test_profile(value):
            assert settings.default.max_examples == 3000
            assert settings.default.deadline is None
    """)
    result = pytester.runpytest_subprocess("--hypothesis-profile", "tokenguard-long",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
