"""Videos in the audit follow the counter: each sample's length, at the audited sampling
and at every candidate ``num_frames`` and ``fps``, is
:func:`~pytest_tokenguard.sequence.count_conversation` 's for the same conversation (the
counter's per-call video costs: whatever rule the installed transformers has for the
intro's frame count, the audit has it too), and what fits names both settings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_tokenguard.audit.measure import Auditor, AuditSettings
from pytest_tokenguard.cli import main
from pytest_tokenguard.conversation import VideoItem, parse_conversation
from pytest_tokenguard.sequence import count_conversation
from tests.helpers import model_ref


def _video(seconds: float, fps: float = 30.0) -> dict[str, Any]:
    return {"type": "video", "total_frames": int(seconds * fps), "fps": fps,
            "duration": seconds}


def _rows() -> list[dict[str, Any]]:
    answer = [{"type": "text", "text": "The clip shows a street at night. " * 6}]
    return [
        {"id": "one", "messages": [
            {"role": "user", "content": [_video(60), {"type": "text", "text": "What happens?"}]},
            {"role": "assistant", "content": answer}]},
        # two videos of one call that sample different frame counts: the intros' rule
        {"id": "two", "messages": [
            {"role": "user", "content": [_video(3.5), {"type": "text", "text": "and"},
                                         _video(40, 25.0), {"type": "text", "text": "Same?"}]},
            {"role": "assistant", "content": answer}]},
        {"id": "own-sampling", "messages": [
            {"role": "user", "content": [{**_video(20), "num_frames": 4},
                                         {"type": "text", "text": "Describe."}]},
            {"role": "assistant", "content": answer}]},
        {"id": "image", "messages": [
            {"role": "user", "content": [{"type": "image", "width": 640, "height": 480},
                                         {"type": "text", "text": "Describe."}]},
            {"role": "assistant", "content": answer}]},
    ]


def _sampled(messages: Any, **sampling: Any) -> Any:
    return tuple(replace(m, content=tuple(replace(item, **sampling)
                                          if type(item) is VideoItem else item
                                          for item in m.content)) for m in messages)


@pytest.mark.parametrize("sampling", [{}, {"num_frames": 8}, {"fps": 0.5}])
def test_video_lengths_are_the_counters(sampling: dict[str, Any]) -> None:
    auditor = Auditor(AuditSettings(model_ref("2.2B"), 384, sampling.get("num_frames"),
                                    sampling.get("fps")))
    counter = auditor.counter
    for row in _rows():
        result = auditor.measure(row)
        assert result.error is None, result.error
        parsed = parse_conversation(row["messages"])
        if sampling:
            parsed = tuple(replace(m, content=tuple(
                replace(item, num_frames=sampling.get("num_frames"),
                        sample_fps=sampling.get("fps"))
                if type(item) is VideoItem and item.num_frames is None
                and item.sample_fps is None else item for item in m.content)) for m in parsed)
        assert result.tokens == count_conversation(parsed, counter).total, row["id"]
        if row["id"] == "image":
            assert result.frame_tokens == result.fps_tokens == ()
            continue
        assert result.frame_tokens == tuple(
            count_conversation(_sampled(parsed, num_frames=f), counter).total
            for f in auditor.frame_candidates), row["id"]
        assert result.fps_tokens == tuple(
            count_conversation(_sampled(parsed, sample_fps=r), counter).total
            for r in auditor.fps_candidates), row["id"]


def test_what_fits_names_num_frames_and_fps(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "videos.jsonl"
    rows = [row for row in _rows() if row["id"] in ("one", "two")]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    auditor = Auditor(AuditSettings(model_ref("2.2B"), 384))
    results = [auditor.measure(row) for row in rows]
    # the limit at which every sample fits at the third candidate fps, not the fourth
    limit = max(r.fps_tokens[2] for r in results)
    assert max(r.fps_tokens[3] for r in results) > limit
    code = main(["audit", str(data), "--model", model_ref("2.2B"), "--longest-edge", "384",
                 "--max-length", str(limit), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    fitting_fps = [rate for index, rate in enumerate(auditor.fps_candidates)
                   if all(r.fps_tokens[index] <= limit for r in results)]
    fitting_frames = [frames for index, frames in enumerate(auditor.frame_candidates)
                      if all(r.frame_tokens[index] <= limit for r in results)]
    assert report["largest_fps"] == max(fitting_fps)
    assert report["largest_num_frames"] == max(fitting_frames)
    assert report["largest_fps"] == auditor.fps_candidates[2]
    main(["audit", str(data), "--model", model_ref("2.2B"), "--longest-edge", "384",
          "--max-length", str(limit)])
    assert (f"largest fps: {auditor.fps_candidates[2]:g} (the processor call's num_frames= "
            "and fps=)") in capsys.readouterr().out
