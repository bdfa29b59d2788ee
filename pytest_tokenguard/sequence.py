"""Exact sequence length of a conversation, as chat template plus processor write it.

SmolVLM2's chat template renders a conversation as::

    <|im_start|>Role:[ ]<items><end_of_utterance>\\n Role:[ ]<items><end_of_utterance>\\n ...

(``": "`` after the role when the first item is text, ``":"`` when it is an image),
and the processor swaps each ``<image>`` for a block that starts and ends with
special tokens. Special tokens cut the text into pieces that the tokenizer handles
independently, and the newline before a role (a letter, which ``parse_message``
enforces) is its own pre-token. So a conversation costs exactly::

    tokenizer specials + <|im_start|> + sum(message costs) [+ generation prompt]

where a message's cost counts its leading newline, its text pieces, its image
blocks and its ``<end_of_utterance>``; the first message has no newline before it
but the conversation ends with one, which evens out. That additivity is what lets
the splitter price a chunk without rendering it, and it is tested against the real
processor, not assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .conversation import (
    Conversation,
    ImageItem,
    Message,
    MessageLike,
    TextItem,
    image_sizes,
    parse_conversation,
    to_chat_template,
)
from .counting import count_image
from .errors import TemplateError as TemplateError
from .processor.chat import render_chat
from .tokens import TokenCounter, fast_text_counter

IM_START = "<|im_start|>"
END_OF_UTTERANCE = "<end_of_utterance>"
GENERATION_PROMPT = "Assistant:"


class MessageCost(NamedTuple):
    """Tokens one message adds to a rendered conversation (a NamedTuple: built per message,
    millions of times when fuzzing).

    ``tokens`` = ``template`` + ``text`` + ``blocks``. ``template`` is the newline
    before the message, ``Role:`` and ``<end_of_utterance>``; ``text`` is the message
    text as tokenized in place (the space after ``Role:`` merges into the first word,
    so it is counted here); ``blocks`` is every token of the image blocks.
    """

    tokens: int
    template: int
    text: int
    blocks: int
    images: int
    image_tokens: int


@dataclass(frozen=True)
class SequenceLength:
    """A conversation's exact length and where the tokens come from."""

    total: int
    template_tokens: int
    text_tokens: int
    image_block_tokens: int
    image_tokens: int
    images: int
    messages: tuple[int, ...]

    def __str__(self) -> str:
        return (
            f"{self.total} tokens = {self.template_tokens} template + {self.text_tokens} text "
            f"+ {self.image_block_tokens} in {self.images} image blocks"
        )


class _Facts(NamedTuple):
    specials: int
    im_start: int
    newline: int
    eou: int
    generation_tail: int  # tokens of "\nAssistant:" (replaces the final "\n")
    text: Any  # str -> int, exact
    images: dict[tuple[int, int], tuple[int, int]]  # (w, h) -> (block, <image> tokens)
    headers: dict[str, tuple[str, int]]  # role -> ("Role:", its tokens)


_FACTS: dict[int, tuple[TokenCounter, _Facts]] = {}


def _facts(counter: TokenCounter) -> _Facts:
    entry = _FACTS.get(id(counter))
    if entry is not None and entry[0] is counter:
        return entry[1]
    from .processor.embedded import CHAT_TEMPLATE

    template = getattr(counter.processor, "chat_template", None)
    if template != CHAT_TEMPLATE:
        raise TemplateError(
            "the processor's chat template is not SmolVLM2's, so its token layout is unknown "
            "here; use TokenCounter.conversation (renders through the template) instead"
        )
    text = fast_text_counter(counter)
    facts = _Facts(
        specials=counter._specials,
        im_start=counter.text(IM_START),
        newline=counter.text("\n"),
        eou=counter.text(END_OF_UTTERANCE),
        generation_tail=counter.text("\n" + GENERATION_PROMPT),
        text=text,
        images={},
        headers={},
    )
    _FACTS[id(counter)] = (counter, facts)
    return facts


def message_cost(
    message: Message, counter: TokenCounter, facts: _Facts | None = None
) -> MessageCost:
    """What ``message`` adds to any conversation it is part of (see the module docstring).

    ``facts`` is :func:`_facts` of ``counter``, passed by hot loops to skip the lookup.
    """
    if facts is None:
        facts = _facts(counter)
    text = facts.text
    image_cache = facts.images
    header_entry = facts.headers.get(message.role)
    if header_entry is None:
        name = message.role.capitalize() + ":"
        header_entry = facts.headers[message.role] = (name, text(name))
    header, header_tokens = header_entry
    content = message.content
    piece = header if type(content[0]) is not TextItem else header + " "
    pieces = 0
    blocks = images = image_tokens = 0
    for item in content:
        kind = type(item)
        if kind is TextItem:
            piece += item.text  # type: ignore[union-attr]
            continue
        if piece:
            pieces += text(piece)
            piece = ""
        size = (item.width, item.height)  # type: ignore[union-attr]
        cost = image_cache.get(size)
        if cost is None:
            image = count_image(size[0], size[1], counter.longest_edge, counter.spec)
            cost = image_cache[size] = (image.block_tokens, image.image_tokens)
            if len(image_cache) > 65536:
                image_cache.clear()
        n = 1 if kind is ImageItem else len(item)  # type: ignore[arg-type]
        blocks += n * cost[0]
        image_tokens += n * cost[1]
        images += n
    if piece:
        pieces += text(piece)
    template = facts.newline + header_tokens + facts.eou
    text_tokens = pieces - header_tokens
    return MessageCost(template + text_tokens + blocks, template, text_tokens, blocks, images,
                       image_tokens)


def base_tokens(counter: TokenCounter) -> int:
    """Tokens of a conversation besides its messages: tokenizer specials and ``<|im_start|>``."""
    facts = _facts(counter)
    return facts.specials + facts.im_start


def count_conversation(
    conversation: Sequence[MessageLike] | Conversation,
    counter: TokenCounter,
    *,
    add_generation_prompt: bool = False,
) -> SequenceLength:
    """The exact ``len(input_ids)`` the processor gives for the rendered conversation."""
    messages = parse_conversation(conversation)
    facts = _facts(counter)
    costs = [message_cost(m, counter) for m in messages]
    template = facts.specials + facts.im_start + sum(c.template for c in costs)
    if add_generation_prompt:
        # the final "\n" (counted with the first message) becomes "\nAssistant:"
        if messages:
            template += facts.generation_tail - facts.newline
        else:
            template += facts.text(GENERATION_PROMPT)
    text_tokens = sum(c.text for c in costs)
    blocks = sum(c.blocks for c in costs)
    return SequenceLength(
        total=template + text_tokens + blocks,
        template_tokens=template,
        text_tokens=text_tokens,
        image_block_tokens=blocks,
        image_tokens=sum(c.image_tokens for c in costs),
        images=sum(c.images for c in costs),
        messages=tuple(c.tokens for c in costs),
    )


# ------------------------------------------------------------------ the real processor


def render(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The text SmolVLM2's chat template writes (kept in step with it by the tests)."""
    parts = [IM_START]
    for m in messages:
        parts.append(m.role.capitalize())
        parts.append(": " if type(m.content[0]) is TextItem else ":")
        for item in m.content:
            if type(item) is TextItem:
                parts.append(item.text)
            elif type(item) is ImageItem:
                parts.append("<image>")
            else:
                parts.append("<image>" * len(item))  # type: ignore[arg-type]
        parts.append(END_OF_UTTERANCE + "\n")
    if add_generation_prompt:
        parts.append(GENERATION_PROMPT)
    return "".join(parts)


_BLANKS: dict[tuple[int, int], Any] = {}


def _pixels(item: dict[str, Any]) -> Any:
    """The pixels to hand the processor for an image item of the chat-template form."""
    image = item.get("image")
    if image is not None:
        return image
    from PIL import Image

    path = item.get("path")
    if path:
        return Image.open(path)
    size = (int(item["width"]), int(item["height"]))
    blank = _BLANKS.get(size)
    if blank is None:
        if len(_BLANKS) >= 16:
            _BLANKS.clear()
        blank = _BLANKS[size] = Image.new("RGB", size)
    return blank


def processor_input_ids(
    processor: Any,
    conversation: Sequence[MessageLike] | Conversation,
    *,
    add_generation_prompt: bool = False,
) -> list[int]:
    """``input_ids`` from the real processor on the rendered conversation: the oracle.

    Renders with the processor's own ``apply_chat_template`` and runs the processor on
    the text with one image per placeholder (the file or PIL image when the item has
    one, else a blank image of the item's size: only the size decides the tokens).
    """
    messages = parse_conversation(conversation)
    if not messages:
        raise ValueError("the processor cannot render an empty conversation")
    hf = to_chat_template(messages)
    rendered = render_chat(processor, hf, add_generation_prompt=add_generation_prompt)
    pixels = [_pixels(item) for m in hf for item in m["content"] if item["type"] == "image"]
    assert len(pixels) == len(image_sizes(messages))
    out = processor(text=[rendered], images=[pixels]) if pixels else processor(text=[rendered])
    return [int(i) for i in out["input_ids"][0]]


def processor_count(
    processor: Any,
    conversation: Sequence[MessageLike] | Conversation,
    *,
    add_generation_prompt: bool = False,
) -> int:
    """``len(input_ids)`` the real processor gives for the rendered conversation."""
    return len(processor_input_ids(
        processor, conversation, add_generation_prompt=add_generation_prompt
    ))
