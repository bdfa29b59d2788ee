"""The recorder against the real processor: what it reads off each call, at the settings
the call used, and which test each call is charged to (phases, threads, forked workers).

Child interpreters (subprocess, spawn) are exercised in
``tests/integration/test_recording_semantics.py``: they take seconds each.
"""

from __future__ import annotations

import concurrent.futures
import copy
import functools
import os
import sys
import threading
from typing import Any

import pytest

from pytest_tokenguard.processor.recording import (
    ENV_RECORD_TO,
    PADDING_UNKNOWN,
    Recorder,
    Recording,
    SequenceRecord,
    Stray,
    unchecked_reason,
    unpadded_lengths,
)
from tests.helpers import real_image_tokens, real_processor

MODEL = "HuggingFaceTB/SmolVLM2-2.2B-Instruct"


def image(width: int, height: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (width, height), (120, 30, 200))


@pytest.fixture
def processor() -> Any:
    return real_processor(MODEL, 512)


def at_384() -> Any:
    return real_processor(MODEL, 384)


# --- what a call records ---------------------------------------------------------------


def test_recorder_reads_the_processor_output(processor: Any, recorder: Recorder) -> None:
    with recorder.record("t") as recording:
        out = processor(text=["a <image>", "much longer text here <image><image>"],
                        images=[[image(384, 384)], [image(800, 200), image(8, 8)]],
                        padding=True)
    ids = out["input_ids"]
    assert [r.image_tokens for r in recording.images] == [405, 243, 405]
    assert [(r.rows, r.cols) for r in recording.images] == [(2, 2), (1, 2), (2, 2)]
    assert (recording.images[1].width, recording.images[1].height) == (800, 200)
    image_id = processor.image_token_id
    assert sum(r.image_tokens for r in recording.images) == sum(row.count(image_id)
                                                                 for row in ids)
    # padding is not counted: the recorded lengths are the attention mask's sums
    assert [s.length for s in recording.sequences] == [sum(m) for m in out["attention_mask"]]
    assert len({len(row) for row in ids}) == 1
    assert recording.sequences[0].length < len(ids[0])
    assert recording.calls == 1


def test_recorder_uninstall_restores_everything(processor: Any) -> None:
    import subprocess

    cls = type(processor)
    names = ("__call__", "_process_images", "get_text_with_replacements")
    before = {name: cls.__dict__.get(name) for name in names}
    start, popen = threading.Thread.start, subprocess.Popen.__init__
    path, meta_path = os.environ.get("PYTHONPATH"), list(sys.meta_path)
    recorder = Recorder()
    recorder.install()
    assert cls.__dict__.get("__call__") is not before["__call__"]
    # the propagating wrapper (shared with the suite's own recorder under --tokenguard)
    assert threading.Thread.start.__qualname__.startswith("Propagation._patch.")
    assert os.environ.get("PYTHONPATH") != path
    recorder.uninstall()
    assert {name: cls.__dict__.get(name) for name in names} == before
    assert (threading.Thread.start, subprocess.Popen.__init__) == (start, popen)
    assert (os.environ.get("PYTHONPATH"), sys.meta_path) == (path, meta_path)


def test_nothing_is_recorded_outside_a_recording(processor: Any, recorder: Recorder) -> None:
    processor(text=["<image>"], images=[[image(10, 10)]])
    with recorder.record("t") as recording:
        pass
    assert (recording.images, recording.sequences, recording.calls) == ([], [], 0)
    assert recorder.strays() == []  # the test process between tests: no note either


@pytest.mark.usefixtures("outside_any_recording")
def test_the_owner_is_named_in_the_environment_only_while_a_recording_is_open(
        recorder: Recorder) -> None:
    assert ENV_RECORD_TO not in os.environ
    with recorder.record("t") as recording:
        assert os.environ[ENV_RECORD_TO] == recording.token
    assert ENV_RECORD_TO not in os.environ


def test_a_call_the_recorder_cannot_read_still_returns_and_is_named(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_tokenguard.processor.recording import smolvlm as module

    def broken(image: Any) -> tuple[int, int]:
        raise TypeError("an image type the recorder does not know")

    monkeypatch.setattr(module, "image_size", broken)
    plain = at_384()(text=["<image>"], images=[[image(384, 384)]])
    with recorder.record("t") as recording:
        out = at_384()(text=["<image>"], images=[[image(384, 384)]])
    assert out["input_ids"] == plain["input_ids"]  # the user's call is untouched
    assert (recording.calls, recording.images) == (0, [])
    assert recording.unseen == ["a processor call in thread 'MainThread' could not be "
                                "recorded (TypeError: an image type the recorder does not "
                                "know)"]
    assert "could not be recorded" in str(unchecked_reason(recording, "image"))


# --- item 5: padding without an attention mask ----------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("tensors", [None, "pt"])
def test_padding_without_attention_mask_is_not_counted(recorder: Recorder, side: str,
                                                       tensors: str | None) -> None:
    """The pad token also appears in the text (in the middle and at the very end)."""
    processor = at_384()
    pad = processor.tokenizer.pad_token
    texts = [f"<image> short{pad}", f"much{pad} longer text " * 12 + f"<image>{pad}"]
    call = dict(text=texts, images=[[image(384, 384)], [image(640, 480)]],
                padding="max_length", max_length=512, padding_side=side, return_tensors=tensors)
    masked = processor(**call)
    with recorder.record("t") as recording:
        unmasked = processor(**call, return_attention_mask=False)
    assert "attention_mask" not in unmasked
    real = [int(sum(row)) for row in masked["attention_mask"]]
    assert [len(row) for row in unmasked["input_ids"]] == [512, 512]
    assert [s.length for s in recording.sequences] == real
    assert [s.note for s in recording.sequences] == ["", ""]  # exact, not an upper bound


@pytest.mark.parametrize("setting", [
    {"text_kwargs": {"split_special_tokens": True}},  # the pad token in the text is text
    {"split_special_tokens": True},  # ignored by the processor: not believed either
])
def test_pad_literal_follows_the_settings_the_tokenizer_got(recorder: Recorder,
                                                           setting: dict[str, Any]) -> None:
    processor = at_384()
    pad = processor.tokenizer.pad_token
    call = dict(text=[f"a {pad}", f"a much longer {pad} text{pad}"], padding="longest",
                **setting)
    real = [sum(row) for row in processor(**call)["attention_mask"]]
    with recorder.record("t") as recording:
        processor(**call, return_attention_mask=False)
    assert [s.length for s in recording.sequences] == real
    assert [s.note for s in recording.sequences] == ["", ""]


class FakeTokenizer:
    pad_token = "<pad>"
    pad_token_id = 0
    split_special_tokens = False

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [len(text)]}

    def get_added_vocab(self) -> dict[str, int]:
        return {"<pad>": 0}


@pytest.mark.parametrize(("row", "texts", "expected"), [
    ([5, 6, 0, 0], ["ab"], (2, "")),  # right padding
    ([0, 0, 5, 6], ["ab"], (2, "")),  # left padding
    ([5, 0, 6, 0], ["a<pad>b"], (3, "")),  # one real pad inside, one of padding
    ([5, 6, 0, 0], ["ab<pad>"], (3, "")),  # the text ends in the pad token
    ([5, 0, 6, 7], ["ab"], (4, PADDING_UNKNOWN)),  # pads that are neither text nor an end
    ([5, 6, 0, 0], None, (4, PADDING_UNKNOWN)),  # the text is unknown
])
def test_unpadded_lengths_are_exact_or_flagged(row: list[int], texts: list[str] | None,
                                               expected: tuple[int, str]) -> None:
    assert unpadded_lengths([row], texts, FakeTokenizer(), {}) == [expected]


def test_unknown_tokenizer_settings_flag_a_pad_token_in_the_text() -> None:
    assert unpadded_lengths([[5, 6, 0, 0]], ["ab"], FakeTokenizer(), None) == [(2, "")]
    assert unpadded_lengths([[5, 6, 0, 0]], ["a<pad>"], FakeTokenizer(), None) == [
        (4, PADDING_UNKNOWN)]


def test_a_pad_token_ordinary_text_can_produce_is_flagged() -> None:
    class Plain(FakeTokenizer):
        def get_added_vocab(self) -> dict[str, int]:
            return {}

    assert unpadded_lengths([[5, 6, 0, 0]], ["ab"], Plain(), {}) == [(4, PADDING_UNKNOWN)]
    assert unpadded_lengths([[5, 6, 0, 0]], ["ab"], FakeTokenizer(), {"text_pair": "x"}) == [
        (4, PADDING_UNKNOWN)]


# --- item 6: the resolution actually used ------------------------------------------------

PER_CALL_SIZE = [
    {"size": {"longest_edge": 1536}},
    {"images_kwargs": {"size": {"longest_edge": 1536}}},
    {"common_kwargs": {"size": {"longest_edge": 1536}}},
]


@pytest.mark.parametrize("kwargs", PER_CALL_SIZE, ids=["top-level", "images_kwargs", "common"])
def test_per_call_size_labels_image_and_sequence_alike(recorder: Recorder,
                                                       kwargs: dict[str, Any]) -> None:
    processor = at_384()  # loaded at 384
    with recorder.record("t") as recording:
        out = processor(text=["<image>"], images=[[image(800, 600)]], **kwargs)
    real_tokens, real_block = real_image_tokens(processor, 800, 600, **kwargs)
    [record] = recording.images
    assert (record.longest_edge, record.image_tokens, record.block_tokens) == (
        1536, real_tokens, real_block)
    assert out["input_ids"][0].count(processor.image_token_id) == real_tokens
    assert [s.longest_edge for s in recording.sequences] == [1536]


@pytest.mark.parametrize("kwargs", PER_CALL_SIZE, ids=["top-level", "images_kwargs", "common"])
def test_per_call_size_labels_a_text_only_call(recorder: Recorder,
                                               kwargs: dict[str, Any]) -> None:
    with recorder.record("t") as recording:
        at_384()(text=["no image here"], **kwargs)
    assert [s.longest_edge for s in recording.sequences] == [1536]


@pytest.mark.parametrize("kwargs", [
    {"do_image_splitting": False},
    {"images_kwargs": {"do_image_splitting": False}, "size": {"longest_edge": 1536}},
    {"max_image_size": {"longest_edge": 768}, "size": {"longest_edge": 1536}},
    {"images_kwargs": {"max_image_size": {"longest_edge": 768}}},
])
def test_per_call_tiling_settings_are_recorded(recorder: Recorder,
                                               kwargs: dict[str, Any]) -> None:
    processor = at_384()
    with recorder.record("t") as recording:
        processor(text=["<image>"], images=[[image(1920, 1080)]], **kwargs)
    [record] = recording.images
    images_kwargs = {**kwargs.get("images_kwargs", {}),
                     **{k: v for k, v in kwargs.items() if k != "images_kwargs"}}
    real_tokens, real_block = real_image_tokens(processor, 1920, 1080, **kwargs)
    assert (record.image_tokens, record.block_tokens) == (real_tokens, real_block)
    splitting = images_kwargs.get("do_image_splitting", True)
    assert record.do_image_splitting is splitting
    assert record.tile_size == images_kwargs.get("max_image_size", {"longest_edge": 384})[
        "longest_edge"]
    assert record.longest_edge == images_kwargs.get("size", {"longest_edge": 384})[
        "longest_edge"]
    if not splitting:
        assert (record.rows, record.cols, record.patches) == (0, 0, 1)


# --- item 13: the block without tokenizing ----------------------------------------------

SMALL = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
#: (checkpoint, width, height, longest_edge, do_image_splitting): one tile, square grids,
#: the 6×6 limit of the one-token <row_r_col_c> markers and past it (text markers, two
#: digits), and no splitting
BLOCK_CASES = [
    (MODEL, 384, 384, 384, True), (MODEL, 1920, 1080, 1536, True),
    (MODEL, 100, 100, 2304, True), (MODEL, 100, 100, 2688, True),
    (MODEL, 100, 700, 2688, True), (MODEL, 4096, 100, 4096, True),
    (MODEL, 100, 100, 3072, True), (MODEL, 1920, 1080, 1536, False),
    (SMALL, 384, 384, 512, True), (SMALL, 1920, 1080, 2048, True),
    (SMALL, 100, 100, 3584, True), (SMALL, 4096, 100, 4096, True),
    (SMALL, 1920, 1080, 2048, False),
]


@pytest.mark.parametrize(("checkpoint", "width", "height", "edge", "splitting"), BLOCK_CASES)
def test_block_equals_the_real_processor(recorder: Recorder, checkpoint: str, width: int,
                                         height: int, edge: int, splitting: bool) -> None:
    processor = real_processor(checkpoint)
    tokenizer = processor.tokenizer
    assert tokenizer("x")["input_ids"] == tokenizer("x", add_special_tokens=False)["input_ids"]
    kwargs: dict[str, Any] = {"size": {"longest_edge": edge}, "do_image_splitting": splitting}
    with recorder.record("t") as recording:
        out = processor(text=["<image>"], images=[[image(width, height)]], **kwargs)
    [record] = recording.images
    ids = out["input_ids"][0]
    assert (record.image_tokens, record.block_tokens) == (
        ids.count(processor.image_token_id), len(ids))


def test_the_grid_cases_reach_past_the_marker_tokens() -> None:
    """The cases above really test text markers (rows or columns past 6, two digits)."""
    from pytest_tokenguard.counting import count_image
    from pytest_tokenguard.specs import KNOWN_SPECS

    grids = {(name, count_image(w, h, e, KNOWN_SPECS[name]).grid)
             for name, w, h, e, splitting in BLOCK_CASES if splitting}
    assert {(MODEL, "7×7"), (MODEL, "7×1"), (MODEL, "1×11"), (MODEL, "8×8"),
            (SMALL, "7×7"), (SMALL, "1×8")} <= grids


def test_a_recorded_call_tokenizes_only_what_the_processor_does(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    processor = at_384()
    frames = [[image(384, 384)] * 4]
    with recorder.record("warm-up"):  # the tokenizer's facts are probed once
        processor(text=["<image>" * 4], images=frames, size={"longest_edge": 768})
    calls = []
    tokenizer_type = type(processor.tokenizer)
    original = tokenizer_type.__call__

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tokenizer_type, "__call__", counting)
    with recorder.record("t") as recording:
        processor(text=["<image>" * 4], images=frames, size={"longest_edge": 768})
    assert len(recording.images) == 4
    assert len(calls) == 1  # the processor's own call


def test_a_customised_block_is_tokenized(recorder: Recorder) -> None:
    processor = copy.copy(real_processor(MODEL, 768))

    class Custom(type(processor)):  # type: ignore[misc]
        def replace_image_token(self, image_inputs: dict[str, Any], image_idx: int,
                                **kwargs: Any) -> str:
            return "Look:\n" + str(super().replace_image_token(image_inputs, image_idx,
                                                                **kwargs))

    processor.__class__ = Custom
    with recorder.record("t") as recording:
        out = processor(text=["<image>"], images=[[image(384, 384)]])
    [record] = recording.images
    assert record.block_tokens == len(out["input_ids"][0])


# --- item 9: which test a call belongs to ------------------------------------------------


def test_a_recording_spans_phases(recorder: Recorder) -> None:
    processor = at_384()
    recording = recorder.open("t")
    try:
        for phase in ("setup", "call", "teardown"):
            recording.phase = phase
            processor(text=["<image>"], images=[[image(384, 384)]])
    finally:
        recorder.close(recording)
    assert [s.name for s in recording.sequences] == [
        "t setup call 1 sample 0", "t call 2 sample 0", "t teardown call 3 sample 0"]
    assert recording.closed


def test_a_thread_belongs_to_the_test_that_started_it(recorder: Recorder) -> None:
    processor = at_384()
    go = threading.Event()

    def late() -> None:
        go.wait()
        processor(text=["<image>"], images=[[image(384, 384)]])

    with recorder.record("A") as a:
        inside = threading.Thread(target=processor, kwargs={"text": ["hello"]})
        inside.start()
        inside.join()
        thread = threading.Thread(target=late, name="late-worker")
        thread.start()
    with recorder.record("B") as b:
        go.set()
        thread.join()
    assert (a.calls, len(a.sequences)) == (1, 1)  # the thread that ended in A
    assert (b.calls, b.images, b.sequences) == (0, [], [])
    assert recorder.strays() == [Stray("A", "thread 'late-worker'", 1)]
    assert "came after that test ended" in recorder.strays()[0].describe()


@pytest.mark.usefixtures("outside_any_recording")
def test_a_thread_started_outside_any_test_is_charged_to_none(recorder: Recorder) -> None:
    processor = at_384()
    go, done = threading.Event(), threading.Event()

    def background() -> None:
        go.wait()
        processor(text=["hello"])
        done.set()

    thread = threading.Thread(target=background, name="background")
    thread.start()
    with recorder.record("B") as b:
        go.set()
        done.wait(60)
    thread.join()
    assert b.calls == 0
    assert recorder.strays() == [Stray(None, "thread 'background'", 1)]


def test_a_stray_is_described_in_agreement_with_its_count() -> None:
    assert Stray(None, "thread 'b'", 1).describe() == (
        "1 processor call from thread 'b', started outside any test, was charged to no test")
    assert Stray("t", "process 7", 2).describe() == (
        "2 processor calls from process 7, started by t, came after that test ended and "
        "were charged to no test")


def test_thread_pool_work_belongs_to_the_test_that_submitted_it(recorder: Recorder) -> None:
    processor = at_384()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with recorder.record("A") as a:  # the pool's thread starts here
            pool.submit(processor, text=["one"]).result()
        with recorder.record("B") as b:
            pool.submit(processor, text=["two"]).result()
            list(pool.map(functools.partial(processor, text=["three"]), [None]))
    assert (a.calls, b.calls) == (1, 2)
    assert recorder.strays() == []


def test_asyncio_tasks_belong_to_the_test(recorder: Recorder) -> None:
    import asyncio

    processor = at_384()

    async def main() -> None:
        await asyncio.gather(asyncio.to_thread(processor, text=["a"]),
                             asyncio.create_task(asyncio.sleep(0)))
        processor(text=["b"])

    with recorder.record("t") as recording:
        asyncio.run(main())
    assert recording.calls == 2


def test_an_inner_recorder_keeps_its_calls(recorder: Recorder) -> None:
    """Like a pytester run inside a test: the inner session's calls are its own."""
    processor = at_384()
    with recorder.record("outer") as outer:
        inner = Recorder()
        inner.install()
        try:
            with inner.record("inner") as nested:
                processor(text=["inner"])
        finally:
            inner.uninstall()
        processor(text=["outer"])
    assert (outer.calls, nested.calls) == (1, 1)
    assert outer.sequences[0].preview == "outer"


class Samples:
    """A map-style dataset of sample indices (module level: workers must pickle it)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        return index


def collate(batch: list[int], processor: Any) -> Any:
    frames = [image(384, 384)] * 4
    return processor(text=["<image>" * 4 + " what happens?"] * len(batch),
                     images=[frames] * len(batch))["input_ids"]


def test_forked_dataloader_workers_are_followed(recorder: Recorder) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    processor = at_384()
    plain = collate([0], processor)
    with recorder.record("t") as recording:
        loader = torch_data.DataLoader(Samples(), batch_size=2, num_workers=2,
                                       collate_fn=functools.partial(collate,
                                                                    processor=processor),
                                       multiprocessing_context="fork")
        batches = list(loader)
    assert len(batches) == 2
    assert recording.calls == 2
    assert len(recording.images) == 16
    assert {s.length for s in recording.sequences} == {len(plain[0])}
    assert all(" process " in s.name for s in recording.sequences)
    assert recording.unseen == []


def test_collect_reads_the_workers_before_the_recording_closes(recorder: Recorder) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    with recorder.record("t") as recording:
        loader = torch_data.DataLoader(Samples(), batch_size=4, num_workers=1,
                                       collate_fn=functools.partial(collate,
                                                                    processor=at_384()),
                                       multiprocessing_context="fork")
        list(loader)
        assert recording.calls == 0  # still in the worker's file
        recorder.collect(recording)
        assert recording.calls == 1
    assert recording.calls == 1


# --- item 10: a marker that checks nothing ------------------------------------------------


def test_unchecked_reason_is_the_same_rule_for_both_markers() -> None:
    empty = Recording(name="t")
    assert "no SmolVLM or Qwen-VL processor call processed an image" in str(
        unchecked_reason(empty, "image"))
    assert "no SmolVLM or Qwen-VL processor call returned a sequence" in str(
        unchecked_reason(empty, "sequence"))
    seen = Recording(sequences=[SequenceRecord("t call 1 sample 0", 10, "")])
    assert unchecked_reason(seen, "sequence") is None
    assert unchecked_reason(seen, "image") is not None
    seen.unseen.append("process 7 imported processing_smolvlm but could not load the recorder")
    assert "could not be recorded: process 7" in str(unchecked_reason(seen, "sequence"))
