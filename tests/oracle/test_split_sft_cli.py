"""``tokenguard split --sft``, re-rendered by the real processor (issue 14's "done when"):
every chunk at or under the limit, ending on an assistant turn, and no user turn apart
from the answer that follows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tokenguard.cli import main
from pytest_tokenguard.conversation import parse_conversation
from pytest_tokenguard.sequence import processor_count
from pytest_tokenguard.testing import strategies as tgst
from tests.helpers import loaded, model_ref

LIMIT = 1500
DIALOGUES = tgst.conversation_dicts(
    min_turns=2, max_turns=10, max_images_per_turn=3, max_frames_per_run=6,
    max_text=80, unicode=False, sizes=tgst.image_sizes(max_side=800),
).filter(lambda messages: messages[-1]["role"] == "assistant")


def _drop_frame_numbers(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat-template dicts with sizes only (what the JSON Lines input carries)."""
    return [{"role": m["role"], "content": [
        {k: v for k, v in item.items() if k in ("type", "text", "width", "height")}
        for item in m["content"]]} for m in messages]


@pytest.mark.slow
@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(dialogues=st.lists(DIALOGUES, min_size=1, max_size=3))
def test_sft_output_is_what_the_processor_renders(tmp_path: Path,
                                                 dialogues: list[list[dict[str, Any]]]) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "messages": _drop_frame_numbers(d)}) + "\n"
                              for i, d in enumerate(dialogues)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code = main(["split", "--sft", "--allow-frame-split", "--max-tokens", str(LIMIT),
                 "--longest-edge", "384", "--model", model_ref("2.2B"), str(source),
                 "-o", str(out), "--rejects", str(tmp_path / "bad.jsonl")])
    assert code in (0, 1)  # 1: a conversation SFT cannot split was rejected, named
    processor = loaded("2.2B", 384).processor
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    rejects = tmp_path / "bad.jsonl"
    rejected = rejects.read_text(encoding="utf-8").splitlines() if rejects.exists() else []
    # every conversation is either split or named as rejected, never lost
    assert len({record["id"] for record in records}) + len(rejected) == len(dialogues)
    assert (code == 1) == bool(rejected)
    for record in records:
        messages = parse_conversation(record["messages"])
        real = processor_count(processor, messages)
        assert real == record["tokens"] <= LIMIT
        assert messages[-1].role == "assistant"
        for position, message in enumerate(messages):
            if message.role == "user":
                # a user turn is followed, in the same chunk, by its answer
                following = [m.role for m in messages[position + 1:]]
                assert "assistant" in following
                assert following[:following.index("assistant")] == ["user"] * following.index(
                    "assistant")
