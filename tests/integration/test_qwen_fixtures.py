"""The processor fixtures and options for a Qwen-VL model, through pytester.

A Qwen2.5-VL checkpoint folder is written into ``tmp_path`` by ``save_pretrained`` from
the real transformers processor built offline from the published settings (with the
stand-in tokenizer of ``tests/qwen_helpers.py``). ``--tokenguard-model`` points at it;
``--tokenguard-max-pixels`` gives the pixel budgets the tests run over. A Qwen hub id with
no files on the machine skips those tests with the reason and what to pass.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

# pytester's in-process runs drop modules first imported inside them (see
# tests/integration/test_qwen_plugin.py): the heavy ones are imported here, once.
for _module in ("qwen2_vl.processing_qwen2_vl", "qwen2_5_vl.processing_qwen2_5_vl",
                "qwen3_vl.processing_qwen3_vl", "qwen2_vl.image_processing_qwen2_vl",
                "qwen2_vl.video_processing_qwen2_vl", "qwen3_vl.video_processing_qwen3_vl",
                "auto.processing_auto"):
    pytest.importorskip(f"transformers.models.{_module}")
pytest.importorskip("PIL.Image")

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

SUITE = """
import pytest
from PIL import Image

from pytest_tokenguard.families.qwen import count_qwen_image


def pads(processor, width, height):
    out = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"],
                    images=[Image.new("RGB", (width, height))])
    return sum(1 for i in out["input_ids"][0] if i == processor.image_token_id)


@pytest.mark.image_tokens(234)
def test_a_photo(tokenguard_processor, tokenguard_max_pixels, tokenguard_longest_edge,
                 tokenguard_loaded):
    assert tokenguard_longest_edge is None
    assert tokenguard_loaded.max_pixels == tokenguard_max_pixels
    assert tokenguard_processor.image_processor.size["longest_edge"] == tokenguard_max_pixels
    ours = count_qwen_image(1024, 768, tokenguard_loaded.spec)
    assert pads(tokenguard_processor, 1024, 768) == ours.image_tokens
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2.5-VL checkpoint folder, as ``processor.save_pretrained`` writes it."""
    from tests.qwen_helpers import chat_processor

    folder = tmp_path_factory.mktemp("qwen") / "Qwen2.5-VL-7B-Instruct"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chat_processor(MODEL).save_pretrained(folder)
    return folder


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly",
                              "-W", "ignore::FutureWarning", *args)


def test_max_pixels_parametrize_the_real_processor_of_a_folder(
        pytester: pytest.Pytester, checkpoint: Path) -> None:
    pytester.makepyfile(test_photo=SUITE)
    result = run(pytester, "--tokenguard", f"--tokenguard-model={checkpoint}",
                 "--tokenguard-max-pixels=200704,1003520", "-v")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "; max_pixels 200704, 1003520" in out
    result.stdout.fnmatch_lines([
        "*test_photo.py::test_a_photo[[]mp200704[]] PASSED*",
        "*test_photo.py::test_a_photo[[]mp1003520[]] FAILED*",
    ])
    # the marker on the processor the fixture loaded names the max_pixels that fits
    assert "Image 1024×768 cost 999 <|image_pad|> tokens (54×74 patch grid at " \
        "min_pixels=3136, max_pixels=1003520) but the test declared 234; " \
        "max_pixels=204885 gives 26×36 patches (234 tokens)" in out
    # the summary keys each instance's figures by its budget
    result.stdout.fnmatch_lines([
        "*test*resolution*images*",
        "*test_a_photo[[]mp200704[]]  *max_pixels=200704 (min_pixels=3136)  *1  *936  *234*",
    ])


def test_without_max_pixels_the_checkpoints_own_is_used(pytester: pytest.Pytester,
                                                         checkpoint: Path) -> None:
    pytester.makepyfile("""
        def test_own(tokenguard_processor, tokenguard_max_pixels):
            assert tokenguard_max_pixels == 12845056
            assert tokenguard_processor.image_processor.size["longest_edge"] == 12845056
    """)
    result = run(pytester, f"--tokenguard-model={checkpoint}", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_own[[]mp12845056[]] PASSED*"])


def test_a_test_may_choose_its_own_max_pixels(pytester: pytest.Pytester,
                                              checkpoint: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.parametrize("tokenguard_max_pixels", [50176])
        def test_mine(tokenguard_loaded):
            assert tokenguard_loaded.processor.image_processor.size["longest_edge"] == 50176
    """)
    run(pytester, f"--tokenguard-model={checkpoint}").assert_outcomes(passed=1)


def test_the_counter_of_a_qwen_model_counts_what_its_processor_writes(
        pytester: pytest.Pytester, checkpoint: Path) -> None:
    """``tokenguard_counter`` on a Qwen-VL model is the exact Qwen counter of the processor
    the fixtures loaded, at each max_pixels: a conversation's count equals the
    ``input_ids`` the real processor writes for its rendered chat template."""
    pytester.makepyfile("""
        from PIL import Image

        from pytest_tokenguard import QwenTokenCounter

        MESSAGES = [
            {"role": "user", "content": [
                {"type": "image", "width": 1024, "height": 768},
                {"type": "text", "text": "What is in this photo? Answer briefly."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A grey square."}]},
        ]

        def test_counter(tokenguard_counter, tokenguard_processor, tokenguard_max_pixels):
            assert isinstance(tokenguard_counter, QwenTokenCounter)
            assert tokenguard_counter.max_pixels == tokenguard_max_pixels
            text = tokenguard_processor.apply_chat_template(MESSAGES, tokenize=False)
            out = tokenguard_processor(text=[text], images=[Image.new("RGB", (1024, 768))])
            assert tokenguard_counter.conversation(MESSAGES).total == len(out["input_ids"][0])
            print("COUNTED", tokenguard_max_pixels, len(out["input_ids"][0]))
    """)
    result = run(pytester, f"--tokenguard-model={checkpoint}",
                 "--tokenguard-max-pixels=200704,1003520", "-s")
    result.assert_outcomes(passed=2)
    counted = dict(re.findall(r"COUNTED (\d+) (\d+)", result.stdout.str()))
    assert int(counted["1003520"]) - int(counted["200704"]) == 999 - 234


@pytest.mark.tokenguard_no_baseline("the inner runs draw hypothesis examples")
def test_the_splitter_checker_runs_on_the_configured_qwen_model(
        pytester: pytest.Pytester, checkpoint: Path) -> None:
    """With ``--tokenguard-model`` a Qwen-VL folder, ``tokenguard_check_splitter`` checks on
    its real processor at each ``--tokenguard-max-pixels`` value: a splitter that forgets
    the two wrapper tokens of each image fails naming the budget; the right one (tokenguard's
    own ``split`` with the same counter) passes at both."""
    pytester.makepyfile("""
        from pytest_tokenguard import QwenTokenCounter, split

        def right(messages, max_pixels):
            counter = COUNTERS[max_pixels]
            return split(messages, max_tokens=2048, counter=counter)

        def wrappers_forgotten(messages, max_pixels):
            counter = COUNTERS[max_pixels]
            out, chunk, used = [], [], 0
            for message in messages:
                cost = counter.conversation([message]).total - 2 * sum(
                    1 for item in message.get("content") or []
                    if isinstance(item, dict) and item.get("type") == "image")
                if chunk and used + cost > 2048:
                    out.append(chunk)
                    chunk, used = [], 0
                chunk.append(message)
                used += cost
            return out + ([chunk] if chunk else [])

        COUNTERS = {}

        def test_right(tokenguard_check_splitter, tokenguard_processor):
            for budget in (200704, 401408):
                COUNTERS[budget] = QwenTokenCounter.from_processor(
                    tokenguard_processor, max_pixels=budget)
            reports = tokenguard_check_splitter(right, max_tokens=2048, max_examples=8)
            assert [r.max_pixels for r in reports] == [200704, 401408]

        def test_wrong(tokenguard_check_splitter, tokenguard_processor):
            for budget in (200704, 401408):
                COUNTERS[budget] = QwenTokenCounter.from_processor(
                    tokenguard_processor, max_pixels=budget)
            tokenguard_check_splitter(wrappers_forgotten, max_tokens=2048)
    """)
    result = run(pytester, f"--tokenguard-model={checkpoint}",
                 "--tokenguard-max-pixels=200704,401408", "--hypothesis-profile=tokenguard-ci",
                 "-k", "not mp401408")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SplitterCheckError: chunk * tokens as the real processor "
                                 "counts the rendered chunk, over max_tokens 2048 by *"
                                 "max_pixels 200704)*"])


def test_the_smolvlm_only_fixtures_skip_on_a_qwen_model(pytester: pytest.Pytester,
                                                         checkpoint: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.parametrize("tokenguard_longest_edge", [384])
        def test_edge(tokenguard_processor):
            pass
    """)
    result = run(pytester, f"--tokenguard-model={checkpoint}", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([
        "*tokenguard_longest_edge is a SmolVLM2 setting; * parametrize tokenguard_max_pixels*",
    ])


def test_a_qwen_hub_id_with_no_files_skips_and_names_what_to_pass(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    pytester.makepyfile("""
        def test_a(tokenguard_processor):
            pass

        def test_b(tokenguard_loaded):
            pass
    """)
    result = run(pytester, "--tokenguard", f"--tokenguard-model={MODEL}", "-rs")
    result.assert_outcomes(skipped=2)
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out
    result.stdout.fnmatch_lines([
        f"tokenguard: {MODEL} (its processor files are not on this machine*",
        f"SKIPPED*{MODEL}: the real processor needs the checkpoint's processor files and "
        "tokenizer, which are not on this machine*; pass its checkpoint folder to "
        "--tokenguard-model (or $TOKENGUARD_MODEL, or the tokenguard_model ini value), or "
        f"download them once (hf download {MODEL} --include '*.json')",
    ])


@pytest.mark.parametrize(("args", "expected"), [
    (("--tokenguard-max-pixels=200704",),
     "*--tokenguard-max-pixels sets a Qwen-VL model's max_pixels; "
     "HuggingFaceTB/SmolVLM2-2.2B-Instruct is resized by longest_edge*"),
    ((f"--tokenguard-model={MODEL}", "--tokenguard-resolutions=384"),
     f"*--tokenguard-resolutions sets SmolVLM2's longest_edge; {MODEL} is a qwen-vl model*"
     "--tokenguard-max-pixels=200704,1003520"),
    ((f"--tokenguard-model={MODEL}", "--tokenguard-max-pixels=0"),
     "*--tokenguard-max-pixels: '0' is not a valid max_pixels; give positive integers such "
     "as 200704,1003520"),
])
def test_a_resolution_option_of_the_other_family_is_a_usage_error(
        pytester: pytest.Pytester, args: tuple[str, ...], expected: str) -> None:
    pytester.makepyfile("def test_x(tokenguard_processor): pass")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_help_explains_max_pixels(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    help_text = " ".join(result.stdout.str().split())
    assert "--tokenguard-max-pixels=N,N" in help_text
    assert ("comma-separated max_pixels values of the processor fixtures for a Qwen-VL model: "
            "each loads AutoProcessor.from_pretrained(model, max_pixels=N)") in help_text
