"""The GPU markers through pytest: validation at collection, skip or fail without CUDA,
and the memory-model marker gating on a CPU-only machine."""

from __future__ import annotations

import pytest

from pytest_tokenguard.gpu.measure import cuda_status

pytest.importorskip("transformers.models.smolvlm.processing_smolvlm")  # see test_plugin.py

NO_CUDA = not cuda_status().available
GPU_TEST = """
import pytest

@pytest.mark.limit_gpu_memory("24 GiB")
def test_step():
    pass
"""


@pytest.mark.skipif(not NO_CUDA, reason="checks the behaviour without a CUDA device")
def test_gpu_marker_skips_with_reason_without_cuda(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TEST)
    result = pytester.runpytest("--tokenguard", "-rs")
    result.assert_outcomes(skipped=1)
    # the skip points at the test, not at the plugin
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_gpu_marker_skips_with_reason_without_cuda"
                                 ".py:*: tokenguard: limit_gpu_memory needs a CUDA device: *"])


@pytest.mark.skipif(not NO_CUDA, reason="checks the behaviour without a CUDA device")
def test_require_gpu_turns_the_skip_into_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TEST)
    result = pytester.runpytest("--tokenguard", "--tokenguard-require-gpu")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*limit_gpu_memory needs a CUDA device*"
                                 "--tokenguard-require-gpu turns this skip into a failure*"])


def test_gpu_marker_is_inert_without_tokenguard_and_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GPU_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*tokenguard markers (limit_gpu_memory) on 1 test are inert "
                                 "without --tokenguard*"])


@pytest.mark.parametrize(
    ("marker", "fragment"),
    [
        ('limit_gpu_memory("24 GB!")', "@pytest.mark.limit_gpu_memory: size: cannot read size "
         "'24 GB!'"),
        ('limit_gpu_memory("24 parsecs")', "@pytest.mark.limit_gpu_memory: size: unknown unit"),
        ("limit_gpu_memory(0)", "@pytest.mark.limit_gpu_memory: size: size 0 must be"),
        ('limit_gpu_memory("1 GiB", measure="peak")', "measure must be one of max, allocated"),
        ("limit_gpu_memory()", "missing a required argument: 'size'"),
        ('limit_predicted_gpu_memory("8 GiB", resolution=384)',
         "got an unexpected keyword argument 'resolution'"),
        ('limit_predicted_gpu_memory("lots")', "@pytest.mark.limit_predicted_gpu_memory: "),
        ('limit_predicted_gpu_memory("8 GiB", images=-1)', "images=-1 is not accepted"),
        ('limit_predicted_gpu_memory("8 GiB", dtype="int3")', "dtype='int3' is not accepted"),
    ],
)
def test_bad_marker_arguments_stop_at_collection(pytester: pytest.Pytester, marker: str,
                                                fragment: str) -> None:
    pytester.makepyfile(f"""
        import pytest
        @pytest.mark.{marker}
        def test_x():
            pass
    """)
    result = pytester.runpytest("--tokenguard")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert fragment in result.stderr.str()
    assert "::test_x: " in result.stderr.str()  # the test is named
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_predicted_marker_gates_on_cpu(pytester: pytest.Pytester) -> None:
    """The memory model predicts ~75 GiB for a 2.2B step with four frames at 1536 and
    ~21 GiB at 384 (docs/gpu-memory.md): a 40 GiB ceiling fails the first only."""
    folder = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
    pytester.makepyfile("""
        import pytest

        @pytest.mark.limit_predicted_gpu_memory("40 GiB", images=4)
        def test_step(tokenguard_longest_edge):
            pass
    """)
    result = pytester.runpytest("--tokenguard", f"--tokenguard-model={folder}",
                                "--tokenguard-resolutions=384,1536", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_step[[]le384[]] PASSED*",
                                 "*test_step[[]le1536[]] FAILED*",
                                 "*Test was limited to 40.0GiB but its predicted GPU peak was *",
                                 "GPU peaks (measured, or predicted by the memory model):",
                                 "  OVER *test_step[[]le1536[]]: *GiB (predicted) of 40.0GiB",
                                 "  *test_step[[]le384[]]: *GiB (predicted) of 40.0GiB"])
    assert "40.0GiB" in result.stdout.str()
