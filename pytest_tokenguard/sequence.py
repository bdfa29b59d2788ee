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

A message whose content is a plain string renders as ``Role: `` with the string
dropped (the template iterates list items only), and is counted so.

**Videos.** A ``{"type": "video"}`` item renders as ``<video>`` (after ``Role: ``, with
the space: only an image first gets ``Role:``), which the processor replaces with an
intro, a timestamp line and an image block per sampled frame, and an outro
(:mod:`pytest_tokenguard.video`). The intro and outro are plain text, so they merge
with the text around the placeholder (``": " + "You are..."``): a message's cost
tokenizes them in place, exactly. Two facts of transformers shape the rest:

* up to transformers 5.24 every intro of one processor call spells the *largest*
  sampled frame count among the call's videos (read off the padded batch); from 5.25
  on each intro spells its own video's (:func:`~pytest_tokenguard.video.
  intros_spell_the_largest`). So under the older rule a message's cost depends on that
  count: :func:`message_cost` takes it as ``intro_frames`` (default: the message's own
  largest), and :func:`count_conversation` passes the conversation's. The sum stays
  exact for any conversation, given its count;
* a conversation that holds a video is rendered with transformers' own chat template
  (``DEFAULT_CHAT_TEMPLATE``), whatever the checkpoint's: its list content renders as
  SmolVLM2's (plus ``<video>``), plain-string content is refused
  (:func:`~pytest_tokenguard.conversation.check_video_strings`), and such a
  conversation is priced message by message even under a custom template.

The additive path is taken only for SmolVLM2's own chat template, recognised by its
meaning rather than its bytes: the processor's template and the built-in one are
parsed by Jinja, as transformers configures it, and their syntax trees compared, so a
checkpoint whose ``chat_template.json`` differs by a ``{# comment #}`` or by spacing
inside tags is still the known template. Any other template is counted by rendering
it with the processor's own ``apply_chat_template`` and counting the rendered text
exactly (:meth:`TokenCounter.conversation`); what needs the per-message costs (the
splitter) refuses it with a :class:`TemplateError` naming the template's file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from weakref import WeakKeyDictionary

from .conversation import (
    Conversation,
    FramesItem,
    ImageItem,
    Message,
    MessageLike,
    TextItem,
    VideoItem,
    image_sizes,
    parse_conversation,
    to_chat_template,
    videos_of,
)
from .errors import ConversationError, InputError
from .errors import TemplateError as TemplateError
from .images import path_loader_of
from .processor.chat import render_chat, template_file
from .tokens import TokenCounter, fast_text_counter
from .video import VIDEO_TOKEN

if TYPE_CHECKING:
    from .families.qwen_text import QwenTokenCounter

__all__ = [
    "MessageCost",
    "SequenceLength",
    "TemplateError",
    "base_tokens",
    "count_conversation",
    "intro_frames",
    "is_known_template",
    "message_cost",
    "processor_count",
    "processor_input_ids",
    "render",
    "template_file",
    "video_cost",
    "video_costs",
]

IM_START = "<|im_start|>"
END_OF_UTTERANCE = "<end_of_utterance>"
GENERATION_PROMPT = "Assistant:"


class MessageCost(NamedTuple):
    """Tokens one message adds to a rendered conversation (a NamedTuple: built per message,
    millions of times when fuzzing).

    ``tokens`` = ``template`` + ``text`` + ``blocks``. ``template`` is the newline
    before the message, ``Role:`` and ``<end_of_utterance>``; ``text`` is the message
    text as tokenized in place (the space after ``Role:`` merges into the first word,
    so it is counted here), videos' intros, timestamp lines and outros included;
    ``blocks`` is every token of the image blocks, videos' frame blocks included.
    ``images`` counts still images and frames sent as images, ``videos`` the video
    items and ``video_frames`` the frames the processor samples of them.
    """

    tokens: int
    template: int
    text: int
    blocks: int
    images: int
    image_tokens: int
    videos: int = 0
    video_frames: int = 0


@dataclass(frozen=True)
class SequenceLength:
    """A conversation's exact length and where the tokens come from.

    For a chat template other than SmolVLM2's (counted by rendering it) the template's
    tokens cannot be told from the text's: ``template_tokens`` holds both,
    ``text_tokens`` is 0 and ``messages`` is empty.
    """

    total: int
    template_tokens: int
    text_tokens: int
    image_block_tokens: int
    image_tokens: int
    images: int
    messages: tuple[int, ...]
    #: video items, and the frames the processor samples of them (each one image block,
    #: counted in ``image_block_tokens``; their text is in ``text_tokens``)
    videos: int = 0
    video_frames: int = 0

    def __str__(self) -> str:
        videos = (f" ({self.video_frames} of them frames of {self.videos} video"
                  f"{'s' * (self.videos != 1)})" if self.videos else "")
        return (
            f"{self.total} tokens = {self.template_tokens} template + {self.text_tokens} text "
            f"+ {self.image_block_tokens} in {self.images + self.video_frames} image blocks"
            f"{videos}"
        )


class _Facts(NamedTuple):
    specials: int
    im_start: int
    newline: int
    eou: int
    generation_tail: int  # tokens of "\nAssistant:" (replaces the final "\n")
    text: Any  # str -> int, exact
    headers: dict[str, tuple[str, int]]  # role -> ("Role:", its tokens)
    #: (video item, intro frames) -> (cost, tokens of its pieces between two blocks)
    videos: dict[tuple[VideoItem, int | None], tuple[Any, int]]


#: Jinja settings of transformers' chat-template environment that change the syntax tree
#: (``trim_blocks``/``lstrip_blocks`` decide which whitespace is output).
_JINJA_OPTIONS = {"trim_blocks": True, "lstrip_blocks": True}


@lru_cache(maxsize=16)
def _syntax(template: str) -> Any:
    """The Jinja syntax tree of a chat template, or None when it does not parse here
    (a tag of a transformers extension, say): then it is not the known template."""
    import jinja2
    import jinja2.ext
    import jinja2.sandbox

    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        extensions=[jinja2.ext.loopcontrols], **_JINJA_OPTIONS
    )
    try:
        return environment.parse(template)
    except jinja2.TemplateError:
        return None


def is_known_template(template: object) -> bool:
    """Whether ``template`` is SmolVLM2's chat template, whatever its comments and the
    spacing inside its tags: the two parse to the same Jinja syntax tree (Jinja's nodes
    compare by their fields, not their line numbers), so they render the same text for
    every conversation."""
    from .processor.embedded import CHAT_TEMPLATE

    if template == CHAT_TEMPLATE:
        return True
    if isinstance(template, dict) and set(template) == {"default"}:
        template = template["default"]
    if not isinstance(template, str):
        return False
    tree = _syntax(template)
    return tree is not None and bool(tree == _syntax(CHAT_TEMPLATE))


#: The additive facts of each counter, and whether its template is SmolVLM2's: kept
#: here, keyed by the counter (weakly: they go with it), never written into it. A counter
#: with other settings is another counter, with facts of its own.
_FACTS: WeakKeyDictionary[TokenCounter, tuple[_Facts, bool]] = WeakKeyDictionary()


def _facts_entry(counter: TokenCounter) -> tuple[_Facts, bool]:
    entry = _FACTS.get(counter)
    if entry is None:
        known = is_known_template(getattr(counter.processor, "chat_template", None))
        entry = _FACTS[counter] = (_build_facts(counter), known)
    return entry


def _facts_or_none(counter: TokenCounter) -> _Facts | None:
    """The additive facts of ``counter``'s processor, None when its template is not
    SmolVLM2's."""
    facts, known = _facts_entry(counter)
    return facts if known else None


def _renders_videos_itself(processor: Any) -> bool:
    """Whether ``processor`` renders a conversation holding a video with SmolVLM2's
    built-in template whatever its own: transformers' SmolVLMProcessor does (its
    ``DEFAULT_CHAT_TEMPLATE``), and so does the tokenizer-only stand-in."""
    return (getattr(processor, "video_processor", None) is not None
            or type(processor).__name__ == "LightProcessor")


def _facts_for(counter: TokenCounter, messages: Sequence[Message]) -> _Facts | None:
    """The additive facts for ``messages``: a conversation that holds a video is rendered
    with transformers' own template, so it is priced additively whatever the
    checkpoint's template is."""
    facts, known = _facts_entry(counter)
    if known or (_renders_videos_itself(counter.processor) and videos_of(messages)):
        return facts
    return None


def _facts(counter: TokenCounter) -> _Facts:
    """The additive facts, or a :class:`TemplateError` naming the template's file."""
    facts = _facts_or_none(counter)
    if facts is None:
        raise TemplateError(
            f"{template_file(counter.processor)}: this chat template is not SmolVLM2's (it "
            "differs beyond comments and spacing inside tags), so a conversation's length "
            "cannot be priced message by message to split it; restore the checkpoint's "
            "template, or count whole conversations with count_conversation"
        )
    return facts


def _build_facts(counter: TokenCounter) -> _Facts:
    text = fast_text_counter(counter)
    facts = _Facts(
        specials=counter.specials,
        im_start=counter.text(IM_START),
        newline=counter.text("\n"),
        eou=counter.text(END_OF_UTTERANCE),
        generation_tail=counter.text("\n" + GENERATION_PROMPT),
        text=text,
        headers={},
        videos={},
    )
    return facts


def video_cost(item: VideoItem, counter: TokenCounter, intro_frames: int | None = None) -> Any:
    """The exact :class:`~pytest_tokenguard.video.VideoCost` of a video item, sampled
    as the processor samples it (its ``num_frames``/``sample_fps``, else the
    processor's ``video_sampling``); ``intro_frames`` is the largest frame count of the
    call (default: this video's own), which the intro spells under transformers <= 5.24."""
    return counter.video_counter(item.info(), num_frames=item.num_frames, fps=item.sample_fps,
                                 intro_frames=intro_frames)


def video_costs(items: Sequence[VideoItem], counter: TokenCounter) -> list[Any]:
    """The costs of the videos of ONE processor call, in order, as the installed
    transformers writes their intros (:meth:`~pytest_tokenguard.video.VideoCounter.many`)."""
    plans = [counter.video_counter.plan(item.info(), num_frames=item.num_frames,
                                        fps=item.sample_fps) for item in items]
    return list(counter.video_counter.costs(plans))


def intro_frames(messages: Sequence[Message], counter: TokenCounter) -> int | None:
    """The largest frame count any video of ``messages`` samples, which every intro
    spells when they are processed in one call under transformers <= 5.24 (from 5.25 on
    each intro spells its own), or None when they hold no video."""
    frames = [_video_entry(item, counter, _video_facts(counter), None)[0].frames
              for m in messages for item in m.content if type(item) is VideoItem]
    return max(frames, default=None)


def _video_facts(counter: TokenCounter) -> _Facts:
    """The facts whatever the template (a conversation with a video is rendered with
    transformers' own)."""
    return _facts_entry(counter)[0]


def _video_entry(item: VideoItem, counter: TokenCounter, facts: _Facts,
                 intro: int | None) -> tuple[Any, int]:
    """(cost, tokens of the pieces between its first and last block) of a video item,
    cached on the facts (a clip and its intro count identify the text)."""
    if not counter.video_counter.shared_intro:
        intro = None  # each intro spells its own video's count: one entry per clip
    key = (item, intro)
    entry = facts.videos.get(key)
    if entry is None:
        cost = video_cost(item, counter, intro)
        text = facts.text
        entry = (cost, sum(text(piece) for piece in cost.pieces[1:-1]))
        if len(facts.videos) > 4096:
            facts.videos.clear()
        facts.videos[key] = entry
    return entry


def message_cost(
    message: Message, counter: TokenCounter, facts: _Facts | None = None,
    intro_frames: int | None = None,
) -> MessageCost:
    """What ``message`` adds to any conversation it is part of (see the module docstring).

    ``facts`` is :func:`_facts` of ``counter``, passed by hot loops to skip the lookup.
    ``intro_frames`` matters only for a message with videos: the frame count their
    intros spell, the largest among the videos of the whole conversation (see
    :func:`intro_frames`); ``None`` takes this message's own largest.
    """
    if facts is None:
        facts = (_facts(counter) if not message.videos or
                 _facts_or_none(counter) is not None else _video_facts(counter))
    text = facts.text
    price = counter.pricing  # the counter's own image prices, at its settings
    header_entry = facts.headers.get(message.role)
    if header_entry is None:
        name = message.role.capitalize() + ":"
        header_entry = facts.headers[message.role] = (name, text(name))
    header, header_tokens = header_entry
    content = message.content
    # "Role:" before an image (frames render as images), "Role: " before text or a video
    piece = header if type(content[0]) in (ImageItem, FramesItem) else header + " "
    if message.string_content:
        content = ()  # the template iterates list items only: the string is not written
    pieces = 0
    blocks = images = image_tokens = videos = video_frames = 0
    if intro_frames is None and message.videos and counter.video_counter.shared_intro:
        intro_frames = max(_video_entry(item, counter, facts, None)[0].frames
                           for item in content if type(item) is VideoItem)
    for item in content:
        kind = type(item)
        if kind is TextItem:
            piece += item.text  # type: ignore[union-attr]
            continue
        if kind is VideoItem:
            # the intro and the outro are text: they tokenize with their neighbours
            video, between = _video_entry(item, counter, facts, intro_frames)  # type: ignore[arg-type]
            pieces += text(piece + video.pieces[0]) + between
            piece = video.pieces[-1]
            blocks += video.block_tokens
            image_tokens += video.image_tokens
            videos += 1
            video_frames += video.frames
            continue
        if piece:
            pieces += text(piece)
            piece = ""
        cost = price(item.width, item.height)  # type: ignore[union-attr, arg-type]
        n = 1 if kind is ImageItem else len(item)  # type: ignore[arg-type]
        blocks += n * cost.block_tokens
        image_tokens += n * cost.image_tokens
        images += n
    if piece:
        pieces += text(piece)
    template = facts.newline + header_tokens + facts.eou
    text_tokens = pieces - header_tokens
    return MessageCost(template + text_tokens + blocks, template, text_tokens, blocks, images,
                       image_tokens, videos, video_frames)


def base_tokens(counter: TokenCounter) -> int:
    """Tokens of a conversation besides its messages: tokenizer specials and ``<|im_start|>``."""
    facts = _facts(counter)
    return facts.specials + facts.im_start


def count_conversation(
    conversation: Sequence[MessageLike] | Conversation,
    counter: TokenCounter | QwenTokenCounter,
    *,
    add_generation_prompt: bool = False,
) -> SequenceLength:
    """The exact ``len(input_ids)`` the processor gives for the rendered conversation.

    SmolVLM2's template is counted message by message; any other is rendered (see the
    module docstring). An empty conversation is refused: the processor cannot render it.
    A :class:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter` counts a Qwen-VL
    conversation (its own :meth:`~pytest_tokenguard.families.qwen_text.QwenTokenCounter.
    conversation` has the finer breakdown); as for a rendered template, ``template_tokens``
    holds the template's and the text's tokens, and the image figures include the videos'.
    """
    if not isinstance(counter, TokenCounter):
        count = counter.conversation(conversation, add_generation_prompt=add_generation_prompt)
        return SequenceLength(
            total=count.total, template_tokens=count.text_tokens, text_tokens=0,
            image_block_tokens=count.image_block_tokens + count.video_block_tokens,
            image_tokens=count.image_tokens + count.video_tokens, images=len(count.images),
            messages=(), videos=len(count.videos),
            video_frames=sum(video.frames for video in count.videos))
    messages = parse_conversation(conversation, image_loader=path_loader_of(counter.processor))
    if not messages:
        raise ConversationError(
            "the conversation has no messages, which the chat template cannot render; give "
            "at least one message"
        )
    facts = _facts_for(counter, messages)
    if facts is None:
        return _rendered_length(messages, counter, add_generation_prompt)
    intro = intro_frames(messages, counter)
    costs = [message_cost(m, counter, facts, intro) for m in messages]
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
        videos=sum(c.videos for c in costs),
        video_frames=sum(c.video_frames for c in costs),
    )


def _rendered_length(
    messages: Conversation, counter: TokenCounter, add_generation_prompt: bool
) -> SequenceLength:
    """The length of a conversation under a template that is not SmolVLM2's: render it
    with the processor's own template and count the rendered text exactly."""
    try:
        count = counter.conversation(messages, add_generation_prompt=add_generation_prompt)
    except InputError:  # a conversation or template error that names its input already
        raise
    except Exception as exc:  # the template itself raised (jinja2, a bad index...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TemplateError(
            f"{template_file(counter.processor)}: the chat template cannot render this "
            f"conversation ({type(exc).__name__}: {first}); fix the conversation or the "
            "template"
        ) from None
    return SequenceLength(
        total=count.total,
        template_tokens=count.text_tokens,
        text_tokens=0,
        image_block_tokens=count.block_tokens,
        image_tokens=count.image_tokens,
        images=len(count.images),
        messages=(),
    )


# ------------------------------------------------------------------ the real processor


def render(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The text SmolVLM2's chat template writes (kept in step with it by the tests)."""
    parts = [IM_START]
    for m in messages:
        parts.append(m.role.capitalize())
        parts.append(":" if type(m.content[0]) in (ImageItem, FramesItem) else ": ")
        for item in () if m.string_content else m.content:
            if type(item) is TextItem:
                parts.append(item.text)
            elif type(item) is ImageItem:
                parts.append("<image>")
            elif type(item) is VideoItem:
                parts.append(VIDEO_TOKEN)
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
    path = item.get("path")
    if path:
        # the path itself: the processor opens it as it opens any path (turned upright by
        # its EXIF orientation where transformers turns it), not a PIL image, never turned
        return str(path)
    from PIL import Image

    size = (int(item["width"]), int(item["height"]))
    blank = _BLANKS.get(size)
    if blank is None:
        if len(_BLANKS) >= 16:
            _BLANKS.clear()
        blank = _BLANKS[size] = Image.new("RGB", size)
    return blank


def _decoded(item: VideoItem) -> tuple[Any, dict[str, Any]]:
    """A video item as decoded frames and ``video_metadata``: a file through the
    processor's own loader (torchcodec), its clip sliced out and described as a video
    of its own; metadata alone as blank frames (only the metadata decides the tokens)."""
    import numpy as np

    if item.file is not None and Path(item.file).exists():
        from transformers.video_utils import load_video

        frames, loaded = load_video(item.file, backend="torchcodec")
        if item.clip is None:
            return frames, {"total_num_frames": loaded.total_num_frames, "fps": loaded.fps,
                            "duration": loaded.duration}
        count = len(item.clip)
        return (frames[item.clip.start:item.clip.end],
                {"total_num_frames": count, "fps": loaded.fps, "duration": count / loaded.fps})
    return np.zeros((item.info().total_frames, 8, 10, 3), np.uint8), item.processor_metadata()


def _video_inputs(processor: Any, videos: Sequence[VideoItem]) -> tuple[list[Any], dict[str, Any]]:
    """The videos of one processor call and the keyword arguments they need.

    One call samples every video with one ``num_frames``/``fps``, so when the items
    agree (the usual case) the processor samples them itself (``do_sample_frames=True``,
    files by path unless a clip is cut from them). Items that differ cannot share a
    call as they are; the frames are then sampled here, exactly as the counter samples
    them, and passed with their ``frames_indices`` (``do_sample_frames=False``), as a
    caller who samples their own frames would.
    """
    import numpy as np

    settings = {(item.num_frames, item.sample_fps) for item in videos}
    kwargs: dict[str, Any] = {"return_tensors": "pt"}  # transformers 5.24 needs it for videos
    if len(settings) == 1:
        num_frames, fps = settings.pop()
        kwargs["do_sample_frames"] = True
        if num_frames is not None:
            kwargs["num_frames"] = num_frames
        if fps is not None:
            kwargs["fps"] = fps
        if all(v.clip is None and v.file is not None and Path(v.file).exists() for v in videos):
            return [v.file for v in videos], kwargs
        decoded = [_decoded(v) for v in videos]
        kwargs["video_metadata"] = [metadata for _, metadata in decoded]
        return [frames for frames, _ in decoded], kwargs
    from .video import plan_video, video_sampling_from_processor

    sampling = video_sampling_from_processor(processor)
    frames, metadata = [], []
    for item in videos:
        plan = plan_video(item.info(), sampling, num_frames=item.num_frames, fps=item.sample_fps)
        assert plan.indices is not None
        frames.append(np.zeros((plan.frames, 8, 10, 3), np.uint8))
        info = item.info()
        metadata.append({"total_num_frames": info.total_frames, "fps": info.fps,
                         "duration": info.duration, "frames_indices": list(plan.indices)})
    kwargs.update(do_sample_frames=False, video_metadata=metadata)
    return frames, kwargs


def processor_input_ids(
    processor: Any,
    conversation: Sequence[MessageLike] | Conversation,
    *,
    add_generation_prompt: bool = False,
) -> list[int]:
    """``input_ids`` from the real processor on the rendered conversation: the oracle.

    Renders with the processor's own ``apply_chat_template`` and runs the processor on
    the text with one image per placeholder (the file or PIL image when the item has
    one, else a blank image of the item's size: only the size decides the tokens) and
    one video per ``<video>``, through ``videos=`` (see :func:`_video_inputs`): frames
    items go as images, video items as videos, as each is priced.
    """
    messages = parse_conversation(conversation, image_loader=path_loader_of(processor))
    if not messages:
        raise ValueError("the processor cannot render an empty conversation")
    hf = to_chat_template(messages)
    rendered = render_chat(processor, hf, add_generation_prompt=add_generation_prompt)
    pixels = [_pixels(item) for m in hf if not isinstance(m["content"], str)
              for item in m["content"] if item["type"] == "image"]
    assert len(pixels) == len(image_sizes(messages))
    kwargs: dict[str, Any] = {}
    if pixels:
        kwargs["images"] = [pixels]
    videos = videos_of(messages)
    if videos:
        inputs, video_kwargs = _video_inputs(processor, videos)
        kwargs.update(video_kwargs, videos=[inputs])
        import warnings

        with warnings.catch_warnings():  # "fps not given, defaulting to 24" and kin
            warnings.simplefilter("ignore")
            out = processor(text=[rendered], **kwargs)
    else:
        out = processor(text=[rendered], **kwargs)
    ids = out["input_ids"][0]
    return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]


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
