"""Which test a processor call is charged to: fixtures, threads and processes.

The semantics (README, "What the markers see"):

- a call made while a test's setup, body or teardown runs belongs to that test (its
  fixtures are part of it);
- a thread belongs to the test that started it, and work handed to a thread pool to the
  test that submitted it; calls it makes after that test ended are charged to no test
  and listed in the summary, never charged to the test running then;
- a process started by a test (``subprocess``, ``multiprocessing``, DataLoader workers
  under fork, spawn or forkserver) records into a folder the test reads back; a process
  that cannot load the recorder is reported as unseen and the markers fail over it.

The first part drives the recorder directly, with child interpreters (seconds each);
the second runs the plugin through pytester. Tests marked ``xfail(strict=True, reason=
"plugin wiring pending")`` need the plugin to call the recorder API described in
``pytest_tokenguard/processor/recording.py`` (open at setup, collect before each
report, close after teardown, ``unchecked_reason``, ``strays``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.processor.recording import Recorder, Stray, unchecked_reason
from tests.helpers import checkpoint_folder, real_processor

# pytester's in-process runs drop modules first imported inside them; numpy cannot be
# imported twice in one process, so the heavy modules are imported here, once.
pytest.importorskip("transformers.models.smolvlm.processing_smolvlm")
pytest.importorskip("PIL.Image")
pytest.importorskip("torch.utils.data")

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"
#: the sample a fixture builds: one 384×384 image at the checkpoint's 1536
SAMPLE_TEXT = "<image>Describe it."
#: a DataLoader batch: four frames at 1536
FRAMES_TEXT = "<image>" * 4 + "What happens in these frames, in order?"


@pytest.fixture
def model_path() -> str:
    return str(checkpoint_folder(MODEL))


def real_length(text: str, images: int) -> int:
    """The sequence length the real processor gives (checkpoint default, 1536)."""
    from PIL import Image

    frames = [Image.new("RGB", (384, 384))] * images
    return len(real_processor(MODEL)(text=[text], images=[frames])["input_ids"][0])


def child_code(model_path: str, *, before: str = "") -> str:
    return (f"{before}\nfrom PIL import Image\nfrom transformers import AutoProcessor\n"
            f"p = AutoProcessor.from_pretrained({model_path!r})\n"
            f"print(len(p(text=[{SAMPLE_TEXT!r}], images=[[Image.new('RGB', (384, 384))]])"
            "['input_ids'][0]))\n")


# --- the recorder, with child interpreters --------------------------------------------


def test_a_subprocess_is_charged_to_its_test(recorder: Recorder, model_path: str) -> None:
    with recorder.record("t") as recording:
        out = subprocess.run([sys.executable, "-c", child_code(model_path)], check=True,
                             capture_output=True, text=True)
    length = int(out.stdout.split()[-1])
    assert length == real_length(SAMPLE_TEXT, 1)
    assert [s.length for s in recording.sequences] == [length]
    assert [(i.longest_edge, i.image_tokens) for i in recording.images] == [(1536, 1377)]
    assert " process " in recording.sequences[0].name
    assert recording.unseen == []


def test_a_process_that_cannot_load_the_recorder_is_unseen(recorder: Recorder,
                                                           model_path: str) -> None:
    blocked = "import sys; sys.modules['pytest_tokenguard'] = None"
    with recorder.record("t") as recording:
        subprocess.run([sys.executable, "-c", child_code(model_path, before=blocked)],
                       check=True, capture_output=True)
    assert recording.sequences == []
    [note] = recording.unseen
    assert "could not load the pytest-tokenguard recorder" in note
    assert "could not be recorded" in str(unchecked_reason(recording, "sequence"))


def test_a_process_outliving_its_test_is_charged_to_no_test(recorder: Recorder,
                                                            model_path: str,
                                                            tmp_path: Path) -> None:
    flag = tmp_path / "go"
    wait = f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)"
    with recorder.record("A") as a:
        child = subprocess.Popen([sys.executable, "-c", child_code(model_path, before=wait)],
                                 stdout=subprocess.DEVNULL)
    with recorder.record("B") as b:
        flag.touch()
        assert child.wait(120) == 0
    assert (a.calls, b.calls) == (0, 0)
    assert recorder.strays() == [Stray("A", f"process {child.pid}", 1)]


def test_a_process_started_by_an_earlier_tests_thread_is_not_charged_to_the_current_one(
        recorder: Recorder, model_path: str) -> None:
    go = threading.Event()
    pids: list[int] = []

    def late() -> None:
        go.wait()
        child = subprocess.Popen([sys.executable, "-c", child_code(model_path)],
                                 stdout=subprocess.DEVNULL)
        pids.append(child.pid)
        child.wait()

    with recorder.record("A"):
        thread = threading.Thread(target=late)
        thread.start()
    with recorder.record("B") as b:
        go.set()
        thread.join()
    assert b.calls == 0
    assert recorder.strays() == [Stray("A", f"process {pids[0]}", 1)]


class Samples:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return index


def collate(batch: list[int]) -> Any:
    from PIL import Image

    processor = real_processor(MODEL)
    frames = [Image.new("RGB", (384, 384))] * 4
    return processor(text=[FRAMES_TEXT] * len(batch), images=[frames] * len(batch))


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_dataloader_workers_in_fresh_interpreters_are_followed(recorder: Recorder,
                                                               model_path: str,
                                                               start: str) -> None:
    from torch.utils.data import DataLoader

    expected = real_length(FRAMES_TEXT, 4)
    with recorder.record("t") as recording:
        loader = DataLoader(Samples(), batch_size=2, num_workers=2, multiprocessing_context=start,
                            collate_fn=collate)
        batches = list(loader)
    assert len(batches) == 2
    assert recording.calls == 2
    assert [s.length for s in recording.sequences] == [expected] * 4
    assert len({s.name.split(" process ")[1].split()[0] for s in recording.sequences}) == 2
    assert recording.unseen == []


# --- the plugin, through pytester ------------------------------------------------------


FIXTURE_SAMPLE = """
import pytest
from PIL import Image
from transformers import AutoProcessor

@pytest.fixture
def sample():
    processor = AutoProcessor.from_pretrained({model!r})  # 1536
    return processor(text=[{text!r}], images=[[Image.new("RGB", (384, 384))]])

@pytest.mark.max_sequence_tokens(100)
def test_sequence(sample):
    pass

@pytest.mark.image_tokens(81)
def test_image(sample):
    pass
"""


def test_a_fixtures_calls_belong_to_the_test(pytester: pytest.Pytester,
                                             model_path: str) -> None:
    pytester.makepyfile(FIXTURE_SAMPLE.format(model=model_path, text=SAMPLE_TEXT))
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=2)
    length = real_length(SAMPLE_TEXT, 1)
    result.stdout.fnmatch_lines([
        f"*Sequence 'test_a_fixtures_calls_belong_to_the_test.py::test_sequence setup call 1 "
        f"sample 0' is {length} tokens, over the limit of 100*",
        "*Image 384×384 cost 1377 <image> tokens*",
    ])


SUBPROCESS = """
import subprocess, sys
import pytest

@pytest.mark.max_sequence_tokens(1000)
def test_in_a_subprocess():
    subprocess.run([sys.executable, "-c", {code!r}], check=True)
"""


def test_a_subprocess_call_fails_the_marker(pytester: pytest.Pytester, model_path: str) -> None:
    pytester.makepyfile(SUBPROCESS.format(code=child_code(model_path)))
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*Sequence 'test_a_subprocess_call_fails_the_marker.py::"
                                 f"test_in_a_subprocess process * call 1 sample 0' is "
                                 f"{real_length(SAMPLE_TEXT, 1)} tokens, over the limit of 1000*"])


DATALOADER = """
import functools
import pytest
from PIL import Image
from torch.utils.data import DataLoader
from transformers import AutoProcessor

class Samples:
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return index

def collate(batch, processor):
    frames = [Image.new("RGB", (384, 384))] * 4
    return processor(text=[{text!r}] * len(batch), images=[frames] * len(batch))

@pytest.mark.max_sequence_tokens(4096)
def test_training_batches():
    processor = AutoProcessor.from_pretrained({model!r})  # 1536
    loader = DataLoader(Samples(), batch_size=2, num_workers=2,
                        collate_fn=functools.partial(collate, processor=processor))
    assert len(list(loader)) == 2
"""


def test_dataloader_workers_fail_the_marker(pytester: pytest.Pytester, model_path: str) -> None:
    pytester.makepyfile(DATALOADER.format(model=model_path, text=FRAMES_TEXT))
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=1)
    length = real_length(FRAMES_TEXT, 4)
    assert length > 4096
    result.stdout.fnmatch_lines([f"*' is {length} tokens, over the limit of 4096 by "
                                 f"{length - 4096}*", "*4 of 4 sequences are longer*"])


THREADS = """
import threading
import pytest
from PIL import Image
from transformers import AutoProcessor

go, done = threading.Event(), threading.Event()

def test_a_starts_a_thread():
    processor = AutoProcessor.from_pretrained({model!r})  # 1536: 1377 image tokens
    def late():
        go.wait(60)
        processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
        done.set()
    threading.Thread(target=late, name="late-worker", daemon=True).start()

@pytest.mark.image_tokens(81)
def test_b_runs_while_it_works():
    processor = AutoProcessor.from_pretrained({model!r}, size={{"longest_edge": 384}})
    processor(text=["<image>"], images=[[Image.new("RGB", (384, 384))]])
    go.set()
    assert done.wait(120)

@pytest.mark.image_tokens(81)
def test_c_waits_for_its_own_thread():
    processor = AutoProcessor.from_pretrained({model!r})  # 1536: 1377 image tokens
    thread = threading.Thread(
        target=processor, kwargs=dict(text=["<image>"], images=[[Image.new("RGB", (8, 8))]]))
    thread.start()
    thread.join()
"""


def test_a_thread_is_charged_to_the_test_that_started_it(pytester: pytest.Pytester,
                                                         model_path: str) -> None:
    pytester.makepyfile(THREADS.format(model=model_path))
    result = pytester.runpytest("--tokenguard", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_c_waits_for_its_own_thread*"])


def test_stray_calls_are_listed_in_the_summary(pytester: pytest.Pytester,
                                               model_path: str) -> None:
    pytester.makepyfile(THREADS.format(model=model_path))
    result = pytester.runpytest("--tokenguard")
    result.stdout.fnmatch_lines([
        "*1 processor call from thread 'late-worker', started by "
        "test_stray_calls_are_listed_in_the_summary.py::test_a_starts_a_thread, came after "
        "that test ended and was charged to no test*",
    ])


def test_both_markers_fail_when_nothing_was_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.max_sequence_tokens(100)
        def test_sequence():
            pass

        @pytest.mark.image_tokens(81)
        def test_image():
            pass
    """)
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*no SmolVLM or Qwen-VL processor call returned a sequence*",
                                 "*no SmolVLM or Qwen-VL processor call processed an image*"])


def test_an_unseen_process_fails_the_marker(pytester: pytest.Pytester, model_path: str) -> None:
    blocked = "import sys; sys.modules['pytest_tokenguard'] = None"
    pytester.makepyfile(SUBPROCESS.format(code=child_code(model_path, before=blocked))
                        .replace("max_sequence_tokens(1000)", "max_sequence_tokens(100000)"))
    result = pytester.runpytest("--tokenguard")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*could not be recorded: process * imported "
                                 "transformers.models.smolvlm.processing_smolvlm but could not "
                                 "load the pytest-tokenguard recorder*"])


@pytest.mark.usefixtures("outside_any_recording")
def test_child_processes_started_between_tests_are_not_followed(recorder: Recorder) -> None:
    """Outside a recording no owner is named, so a child process records nothing."""
    assert "TOKENGUARD_RECORD_TO" not in os.environ
    with recorder.record("t"):
        pass
    code = "import sys; print([type(f).__name__ for f in sys.meta_path])"
    outside = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True)
    with recorder.record("t"):
        inside = subprocess.run([sys.executable, "-c", code], check=True,
                                capture_output=True, text=True)
    assert "_TokenguardSiteFinder" not in outside.stdout
    assert "_TokenguardSiteFinder" in inside.stdout
