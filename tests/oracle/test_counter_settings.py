"""A counter re-set to other image settings prices every path as the real processor does,
after the counter it came from has been used.

``TokenCounter.with_settings`` once copied the counter, and with it the image prices
``sequence.py`` had cached at the old resolution: ``split(conv, 2048,
counter=base.with_settings(longest_edge=1536))`` after ``base`` had counted the
conversation returned a chunk the processor counts at 3,295 tokens as fitting 2,048. The
prices now belong to the counter's own immutable ``ImageCounter`` (``counter.pricing``),
and a re-set counter has a new one. Each public path is checked here against the real
processor at the new settings, always after the base counter priced the same inputs at
its own: image, prompt, conversation (rendered and additive), message costs, video,
split (and ``split(..., longest_edge=)``), and the fixtures' counters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_tokenguard.conversation import Conversation, ImageItem, Message, TextItem, VideoItem
from pytest_tokenguard.plugin.fixtures import ProcessorCache
from pytest_tokenguard.sequence import (
    base_tokens,
    count_conversation,
    message_cost,
    processor_count,
)
from pytest_tokenguard.splitting import split
from pytest_tokenguard.tokens import TokenCounter
from pytest_tokenguard.video import video_info
from tests.helpers import loaded, model_ref, real_image_tokens

BASE_EDGE = 384
#: photos that cost 1 tile at 384 and 10 to 17 at 1536
PHOTOS = ((1000, 700), (640, 480), (1200, 1600), (384, 384))
CONVERSATION: Conversation = tuple(
    Message("user" if i % 2 == 0 else "assistant",
            (ImageItem(*PHOTOS[i % len(PHOTOS)]), TextItem(f"Frame {i}: what changed?"))
            if i % 2 == 0 else (TextItem(f"Step {i}: the tool moves left."),))
    for i in range(12)
)


def fresh_base() -> TokenCounter:
    """A counter of its own (not the suite's shared one), used on every path at 384."""
    lp = loaded("2.2B", BASE_EDGE)
    base = TokenCounter(lp.processor, lp.spec, lp.longest_edge)
    use(base)
    return base


def use(c: TokenCounter) -> None:
    """Price everything this module checks, so any cache the counter fills is full."""
    for size in PHOTOS:
        c.image(*size)
    c.conversation(CONVERSATION)
    count_conversation(CONVERSATION, c)
    split(CONVERSATION, 2048, counter=c)
    for message in CONVERSATION:
        message_cost(message, c)
    count_conversation(with_video(), c)


def with_video() -> Conversation:
    return (Message("user", (VideoItem(300, 10.0, 30.0), TextItem("And this photo?"),
                             ImageItem(1000, 700))),
            Message("assistant", (TextItem("A clamp."),)))


def real(edge: int) -> Any:
    return loaded("2.2B", edge).processor


@pytest.mark.parametrize("edge", [512, 768, 1024, 1536])
def test_images_and_prompts_of_a_re_set_counter(edge: int) -> None:
    reset = fresh_base().with_settings(longest_edge=edge)
    assert reset.longest_edge == edge
    processor = real(BASE_EDGE)  # per-call size=, as the counter's settings mean
    for width, height in PHOTOS:
        image_tokens, total = real_image_tokens(processor, width, height,
                                                size={"longest_edge": edge})
        cost = reset.image(width, height)
        assert (cost.image_tokens, cost.block_tokens) == (image_tokens, total)
        assert reset.prompt("<image>", [(width, height)]).total == total


@pytest.mark.parametrize("edge", [768, 1536])
def test_conversations_and_message_costs_of_a_re_set_counter(edge: int) -> None:
    base = fresh_base()
    reset = base.with_settings(longest_edge=edge)
    expected = processor_count(real(edge), CONVERSATION)
    assert expected != processor_count(real(BASE_EDGE), CONVERSATION)
    assert reset.conversation(CONVERSATION).total == expected
    assert count_conversation(CONVERSATION, reset).total == expected
    assert base_tokens(reset) + sum(message_cost(m, reset).tokens
                                    for m in CONVERSATION) == expected
    # and the base counter still prices at its own resolution
    assert count_conversation(CONVERSATION, base).total == processor_count(real(BASE_EDGE),
                                                                           CONVERSATION)


def test_conversations_with_a_video_of_a_re_set_counter() -> None:
    reset = fresh_base().with_settings(longest_edge=1536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = processor_count(real(1536), with_video())
    assert count_conversation(with_video(), reset).total == expected
    assert reset.conversation(with_video()).total == expected
    alone = real(1536)  # a video's cost does not depend on longest_edge
    ids = alone(text=["<video>"], videos=[[_frames(300)]], return_tensors="pt",
                do_sample_frames=True,
                video_metadata=[{"total_num_frames": 300, "fps": 10.0, "duration": 30.0}])
    assert reset.video(video_info(300, 10.0, 30.0)).tokens == len(ids["input_ids"][0])


def _frames(count: int) -> Any:
    import numpy as np

    return np.zeros((count, 8, 10, 3), np.uint8)


def _assert_chunks_fit(chunks: Sequence[Any], processor: Any, limit: int) -> None:
    for chunk in chunks:
        assert processor_count(processor, chunk.messages) == chunk.tokens <= limit


def test_split_with_a_re_set_counter_fits_as_the_processor_counts() -> None:
    """The issue's case: the base counter was used, then split at 1536 through a re-set
    counter; every chunk must fit as the real processor at 1536 counts it."""
    base = fresh_base()
    chunks = split(CONVERSATION, 2048, counter=base.with_settings(longest_edge=1536))
    assert len(chunks) > 1  # at 384 the whole conversation fits one chunk
    _assert_chunks_fit(chunks, real(1536), 2048)
    _assert_chunks_fit(split(CONVERSATION, 2048, counter=base, longest_edge=1536),
                       real(1536), 2048)
    _assert_chunks_fit(split(CONVERSATION, 2048, counter=base), real(BASE_EDGE), 2048)


def test_other_tile_settings_of_a_re_set_counter() -> None:
    """do_image_splitting and max_image_size, through apply_chat_template's per-call
    arguments, after the base was used."""
    base = fresh_base()
    processor = real(BASE_EDGE)
    messages = [{"role": "user", "content": [
        {"type": "image", "image": _photo(1000, 700)}, {"type": "text", "text": "Describe."}]}]
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"do_image_splitting": False}, {"do_image_splitting": False}),
        ({"longest_edge": 1536, "tile_size": 512},
         {"size": {"longest_edge": 1536}, "max_image_size": {"longest_edge": 512}}),
    ]
    counted = [{"role": "user", "content": [{"type": "image", "width": 1000, "height": 700},
                                             {"type": "text", "text": "Describe."}]}]
    for settings, kwargs in cases:
        ids = processor.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            processor_kwargs=kwargs)["input_ids"][0]
        reset = base.with_settings(**settings)
        assert count_conversation(counted, reset).total == len(ids), settings
        assert reset.conversation(counted).total == len(ids), settings


def _photo(width: int, height: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (width, height), (120, 30, 200))


def test_the_fixtures_counters_re_set() -> None:
    """The counter the ``tokenguard_counter`` fixture hands out (one per resolution for the
    whole session, so always used), re-set to another resolution."""
    cache = ProcessorCache(model_ref("2.2B"), 5.0)
    base = cache.counter(BASE_EDGE)
    use(base)
    reset = base.with_settings(longest_edge=1536)
    expected = processor_count(real(1536), CONVERSATION)
    assert count_conversation(CONVERSATION, reset).total == expected
    assert count_conversation(CONVERSATION, cache.counter(1536)).total == expected
    _assert_chunks_fit(split(CONVERSATION, 2048, counter=reset), real(1536), 2048)


def test_a_re_set_counter_is_a_new_counter_with_new_prices() -> None:
    """No state is shared but the tokenizer's text counts: prices, the video counter and
    the sequence facts are the new counter's own; the pricing cannot be changed in place."""
    base = fresh_base()
    reset = base.with_settings(longest_edge=1536)
    assert reset.pricing is not base.pricing
    assert reset.pricing.longest_edge == 1536
    assert base.pricing.longest_edge == BASE_EDGE
    assert reset.video_counter is not base.video_counter
    assert reset.with_settings().pricing is not reset.pricing
    with pytest.raises(AttributeError, match="immutable"):
        reset.pricing.longest_edge = 384
    with pytest.raises(AttributeError):
        reset.longest_edge = 384  # type: ignore[misc]
