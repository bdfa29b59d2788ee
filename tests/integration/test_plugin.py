"""The plugin seen from a user's test suite, through pytester.

The planted suites load the processor by its hub id with ``HF_HUB_OFFLINE=1`` (set by
the suite's conftest), so they run on the embedded default, exactly as on a user's
machine without a model cache.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.helpers import budget_split_source

# pytester's in-process runs drop modules first imported inside them; numpy cannot be
# imported twice in one process, so the heavy modules are imported here, once.
pytest.importorskip("transformers.models.smolvlm.processing_smolvlm")
pytest.importorskip("PIL.Image")

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
ARGS = ("--tokenguard", f"--tokenguard-model={MODEL}")

PLANTED = """
import pytest
from PIL import Image

MODEL = {model!r}

def build():
    # the code under test builds its own processor with the checkpoint's default (1536)
    from pytest_tokenguard.processor.loading import load_processor
    return load_processor(MODEL).processor

@pytest.mark.image_tokens(81)
def test_frames_cost_81_each():
    build()(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
"""


def test_marker_catches_processor_built_by_code_under_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLANTED.format(model=MODEL))
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "Image 384×384 cost 1377 <image> tokens (4×4 grid, 17 patches at longest_edge=1536) "
        "but the test declared 81; size={\"longest_edge\": 384} gives 1 patch (81 tokens)",
        "*384×384*1536*4×4*17*1377*1416*",
    ])


def test_marker_is_inert_without_tokenguard_and_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLANTED.format(model=MODEL))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*PytestWarning: tokenguard markers (image_tokens) on 1 test "
                                 "are inert without --tokenguard*"])
    result.stdout.no_fnmatch_line("*= tokenguard =*")
    result.stdout.no_fnmatch_line("tokenguard: *")


def test_marker_passes_when_declared_count_is_right(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLANTED.format(model=MODEL).replace(
        "load_processor(MODEL)", "load_processor(MODEL, 384)"))
    pytester.runpytest(*ARGS).assert_outcomes(passed=1)


@pytest.mark.parametrize("marker", ["image_tokens(81)", "max_sequence_tokens(4096)"])
def test_a_marker_that_checks_nothing_fails(pytester: pytest.Pytester, marker: str) -> None:
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.{marker}
        def test_nothing():
            pass
    """)
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*but no SmolVLM or Qwen-VL processor call * while it ran*"])


def test_marker_failure_is_the_test_failing_for_xfail_too(pytester: pytest.Pytester) -> None:
    """A marker verdict is decided inside the call phase: xfail sees it like any failure."""
    pytester.makepyfile(PLANTED.format(model=MODEL) + """
@pytest.mark.xfail(strict=True, reason="known: the default resolution")
@pytest.mark.image_tokens(81)
def test_strict():
    build()(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])

@pytest.mark.xfail(reason="known")
@pytest.mark.image_tokens(81)
def test_loose():
    build()(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])

@pytest.mark.xfail(strict=True, reason="fixed now")
@pytest.mark.image_tokens(1377)
def test_strict_but_passing():
    build()(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
""")
    result = pytester.runpytest(*ARGS, "-rfxX")
    result.assert_outcomes(failed=2, xfailed=2)
    for line in ("XFAIL *::test_strict - known: the default resolution",
                 "XFAIL *::test_loose - known", "FAILED *::test_strict_but_passing*"):
        result.stdout.fnmatch_lines([line])


def test_calls_made_by_the_tests_fixtures_belong_to_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLANTED.format(model=MODEL) + """
@pytest.fixture
def sample():
    return build()(text=["<image>" * 4], images=[[Image.new("RGB", (384, 384))] * 4])

@pytest.mark.max_sequence_tokens(100)
def test_uses_a_fixture_sample(sample):
    assert sample is not None

@pytest.mark.image_tokens(1377)
def test_fixture_image_is_seen(sample):
    pass
""")
    result = pytester.runpytest(*ARGS, "-k", "sample or seen")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*test_uses_a_fixture_sample* call 1 sample 0' is * tokens, "
                                 "over the limit of 100 by *"])


def test_sequence_ceiling_names_sequence_and_length(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from PIL import Image

        @pytest.mark.max_sequence_tokens(4096)
        def test_four_frames(tokenguard_processor):
            frames = [Image.new("RGB", (384, 384))] * 4
            tokenguard_processor(text=["<image>" * 4 + "Describe."], images=[frames])
    """)
    result = pytester.runpytest(*ARGS, "--tokenguard-resolutions=384,1536")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Sequence 'test_sequence_ceiling_names_sequence_and_length.py::"
        "test_four_frames[[]le1536[]] call 1 sample 0' is * tokens, over the limit of 4096 by *",
    ])


def test_summary_table_and_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from PIL import Image

        def test_frame(tokenguard_processor):
            tokenguard_processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
    """)
    result = pytester.runpytest(*ARGS, "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([
        f"tokenguard: *{MODEL}*; resolutions 384, 512, 768, 1024, 1536",
        "*test_frame[[]le384[]]*384*1*1*81*84*84",
        "*test_frame[[]le512[]]*512*1*5*405*418*418",
        "*test_frame[[]le768[]]*768*1*5*405*418*418",
        "*test_frame[[]le1024[]]*1024*1*10*810*834*834",
        "*test_frame[[]le1536[]]*1536*1*17*1377*1416*1416",
    ])


def test_ini_values_mirror_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"""
        [pytest]
        tokenguard = true
        tokenguard_model = {MODEL}
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


@pytest.mark.parametrize(("value", "expected"), [
    ("'81'", "n must be a positive number of tokens, got '81'"),
    ("0", "n must be a positive number of tokens, got 0"),
    ("-3", "n must be a positive number of tokens, got -3"),
    ("", "missing a required argument: 'n'"),
    ("81, 82", "too many positional arguments"),
])
def test_bad_marker_argument_is_a_usage_error(pytester: pytest.Pytester, value: str,
                                              expected: str) -> None:
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.image_tokens({value})
        def test_x():
            pass
    """)
    result = pytester.runpytest("--tokenguard")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*::test_x: @pytest.mark.image_tokens: {expected}*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("value", ["0", "-384", "abc", ","])
def test_bad_resolutions_are_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_x(tokenguard_longest_edge): pass")
    result = pytester.runpytest(f"--tokenguard-resolutions={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tokenguard-resolutions*"])


@pytest.mark.parametrize(("ini", "expected"), [
    ("tokenguard_network_timeout = abc", "tokenguard_network_timeout (ini): 'abc' is not a "
     "number of seconds*"),
    ("tokenguard_resolutions = 384,x", "tokenguard_resolutions (ini): 'x' is not a valid "
     "longest_edge*"),
    ("tokenguard_gpu_tolerance = lots", "tokenguard_gpu_tolerance (ini): 'lots' is not a "
     "tolerance*"),
])
def test_bad_ini_values_are_usage_errors_not_internal_errors(pytester: pytest.Pytester,
                                                             ini: str, expected: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()  # even without --tokenguard
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_explicit_zero_longest_edge_in_fixture_is_clear(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.parametrize("tokenguard_longest_edge", [0])
        def test_x(tokenguard_processor):
            pass
    """)
    result = pytester.runpytest(f"--tokenguard-model={MODEL}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*tokenguard: longest_edge must be a positive integer, got 0*"])


def test_a_test_may_choose_its_own_resolutions(pytester: pytest.Pytester) -> None:
    """The processor fixtures are session-scoped; a test's own parametrization of
    tokenguard_longest_edge (function scope by default) still works."""
    pytester.makepyfile("""
        import pytest
        @pytest.mark.parametrize("tokenguard_longest_edge", [384, 768])
        def test_mine(tokenguard_counter, tokenguard_longest_edge):
            assert tokenguard_counter.longest_edge == tokenguard_longest_edge

        @pytest.mark.parametrize(("tokenguard_longest_edge", "tiles"), [(384, 1), (1536, 17)])
        def test_two_names(tokenguard_counter, tiles):
            assert tokenguard_counter.image(384, 384).patches == tiles
    """)
    pytester.runpytest(f"--tokenguard-model={MODEL}").assert_outcomes(passed=4)


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
        "is set and the model is not in the local cache): *",
    ])


def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(PLANTED.format(model=MODEL) + """
from PIL import Image as _I
def test_frame(tokenguard_processor):
    tokenguard_processor(text=["<image>"], images=[[_I.new("RGB", (384, 384))]])
""")
    result = pytester.runpytest_subprocess("-n", "2", *ARGS, "--tokenguard-resolutions=384,1536")
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
            heavy = [m for m in ("torch", "transformers", "PIL", "tokenizers", "hypothesis")
                     if m in sys.modules]
            assert heavy == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest", "-p", "no:benchmark")
    result.assert_outcomes(passed=1)


def test_tokenguard_run_stays_light_until_the_code_imports_transformers(
        pytester: pytest.Pytester) -> None:
    """Under --tokenguard the recorder waits for the code under test to import the processor
    classes: a suite that never does pays for no torch import."""
    pytester.makepyfile("""
        import sys
        def test_x():
            assert [m for m in ("torch", "transformers") if m in sys.modules] == []
    """)
    result = pytester.runpytest_subprocess("--tokenguard", "-p", "no:hypothesispytest",
                                           "-p", "no:benchmark", f"--tokenguard-model={MODEL}")
    result.assert_outcomes(passed=1)


def test_the_recorder_arms_itself_when_transformers_is_imported_mid_test(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLANTED.format(model=MODEL))
    result = pytester.runpytest_subprocess(*ARGS, "-p", "no:hypothesispytest")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Image 384×384 cost 1377 <image> tokens*"])


@pytest.mark.tokenguard_no_baseline("the inner run draws hypothesis examples")
def test_check_splitter_fixture_catches_a_naive_splitter(pytester: pytest.Pytester) -> None:
    """The user's one-liner: a splitter that packs by "81 tokens per image" is caught with
    the shrunk conversation and the real count; the exact splitter passes."""
    pytester.makepyfile(budget_split_source() + textwrap.dedent("""
        from pytest_tokenguard.splitting import split
        from pytest_tokenguard.testing.strategies import conversation_dicts

        DIALOGUES = conversation_dicts(min_turns=8, max_turns=12, min_images_per_turn=2,
                                       max_images_per_turn=3, frames=False, max_text=50)

        def test_naive(tokenguard_check_splitter):
            tokenguard_check_splitter(lambda messages: budget_split(messages, 1024),
                                      max_tokens=1024, conversations=DIALOGUES,
                                      max_examples=20)

        def test_exact(tokenguard_check_splitter, tokenguard_counter):
            tokenguard_check_splitter(
                lambda messages: split(messages, 1024, counter=tokenguard_counter),
                max_tokens=1024, conversations=DIALOGUES, max_examples=10)
    """))
    result = pytester.runpytest(f"--tokenguard-model={MODEL}",
                                "--tokenguard-resolutions=384", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*chunk * is * tokens as the real processor counts the rendered chunk, over "
        "max_tokens 1024 by *",
    ])
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED *::test_naive - *"])


def test_session_scoped_fixtures_work_inside_given(pytester: pytest.Pytester) -> None:
    """No function-scoped-fixture health check: the counter is one object per resolution."""
    pytester.makepyfile("""
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=5, database=None)
        @given(side=st.integers(1, 2000))
        def test_counts(tokenguard_counter, side):
            assert tokenguard_counter.image(side, side).image_tokens % 81 == 0
    """)
    result = pytester.runpytest(f"--tokenguard-model={MODEL}", "--tokenguard-resolutions=384")
    result.assert_outcomes(passed=1)


def test_hypothesis_profiles_are_available_to_users(pytester: pytest.Pytester) -> None:
    """`--hypothesis-profile tokenguard-long` works in a project with no conftest of ours,
    and so does loading the profile by name in a conftest (hypothesis's entry point)."""
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
    pytester.makeconftest("""
        from hypothesis import settings
        settings.load_profile("tokenguard-long")
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    script = ("from hypothesis import settings; settings.load_profile('tokenguard-ci'); "
              "print(settings.default.max_examples)")
    done = pytester.run(sys.executable, "-c", script)
    assert done.ret == 0
    assert done.outlines[-1] == "60"
