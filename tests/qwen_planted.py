"""Planted Qwen-VL splitters for the checker's tests and benchmarks: a greedy splitter over
chat-template dicts, right (priced by the exact ``QwenTokenCounter``) or with one classic
mistake each, as a user's own Qwen splitter makes it.

Each mistake is the exact price with one thing wrong, so it isolates one bug class:

* ``"image pads only"``: an image costs its ``<|image_pad|>`` tokens, without the
  ``<|vision_start|>``/``<|vision_end|>`` pair (2 tokens an image short);
* ``"default system once"``: the default system message Qwen2-VL's template writes into a
  chunk that does not start with a system message is counted in the first chunk only;
* ``"area / 784"``: an image costs ``min(width·height, max_pixels) // 28²`` pads (+
  wrappers), not its ``smart_resize``-rounded grid (``28`` is ``32`` on Qwen3-VL);
* ``"no generation prompt"``: chunks priced without the ``<|im_start|>assistant\\n`` the
  checker's caller adds (checked with ``add_generation_prompt=True``);
* ``"fixed max_pixels"``: images priced at ``max_pixels=200704`` whatever the setting
  checked (the splitter takes no ``max_pixels``).

The checker runs them at :data:`CHECKED_AT` (``max_pixels=401408``, 512 tokens an image at
most).
"""

from __future__ import annotations

import json
from typing import Any

from pytest_tokenguard.families.qwen_text import QwenTokenCounter

QWEN_MISTAKES = ("image pads only", "default system once", "area / 784",
                 "no generation prompt", "fixed max_pixels")
DEFAULT_SYSTEM = [{"role": "system", "content": "You are a helpful assistant."}]
#: a chunk's first message, to price what another message adds after it
PROBE = [{"role": "system", "content": "."}]
#: what the fixed-max_pixels splitter assumes, and where the checker runs it
FIXED, CHECKED_AT = 200704, 401408


class QwenPlantedSplitter:
    """A greedy splitter: messages in order, a new chunk when the next would pass
    ``max_tokens`` (as this splitter prices the chunk), ``SplitError`` for a message too
    large for any chunk. ``mistake`` None is the right one. ``check_kwargs`` are what the
    checker runs it with."""

    def __init__(self, counter: QwenTokenCounter, max_tokens: int,
                 mistake: str | None = None) -> None:
        if mistake is not None and mistake not in QWEN_MISTAKES:
            raise ValueError(mistake)
        self.counter = counter
        self.max_tokens = max_tokens
        self.mistake = mistake
        self._at: dict[int, QwenTokenCounter] = {}
        self._costs: dict[tuple[str, bool, int | None], int] = {}
        self.check_kwargs: dict[str, Any] = {}
        if mistake == "no generation prompt":
            self.check_kwargs["add_generation_prompt"] = True
        self.check_kwargs["max_pixels"] = CHECKED_AT

    def __repr__(self) -> str:
        return f"QwenPlantedSplitter({self.mistake or 'right'!r})"

    def _counter(self, max_pixels: int | None) -> QwenTokenCounter:
        if self.mistake == "fixed max_pixels":
            max_pixels = FIXED
        if max_pixels is None or max_pixels == self.counter.max_pixels:
            return self.counter
        found = self._at.get(max_pixels)
        if found is None:
            found = self._at[max_pixels] = self.counter.with_settings(max_pixels=max_pixels)
        return found

    def message_cost(self, message: dict[str, Any], opens: bool, max_pixels: int | None
                     ) -> int:
        """What ``message`` adds to a chunk (everything, default system message included,
        when it opens the chunk), as this splitter prices it. The ChatML template is a sum
        of its messages (special tokens separate them), so a chunk costs the sum."""
        key = (json.dumps(message, sort_keys=True), opens, max_pixels)
        found = self._costs.get(key)
        if found is not None:
            return found
        counter = self._counter(max_pixels)
        if opens:
            count = counter.conversation([message])
            exact = count.total
        else:
            count = counter.conversation([*PROBE, message])
            exact = count.total - counter.conversation(PROBE).total
        if self.mistake == "image pads only":
            exact -= 2 * len(count.images)
        if self.mistake == "area / 784":
            factor = counter.spec.image.factor
            exact += sum(min(image.width * image.height, image.max_pixels) // factor ** 2
                         - image.image_tokens for image in count.images)
        self._costs[key] = exact
        return exact

    def price(self, chunk: list[dict[str, Any]], first: bool, max_pixels: int | None,
              add_generation_prompt: bool) -> int:
        """The chunk as this splitter prices it."""
        total = self.message_cost(chunk[0], True, max_pixels) + sum(
            self.message_cost(m, False, max_pixels) for m in chunk[1:])
        if self.mistake == "default system once" and not first and chunk[0]["role"] != "system":
            total -= self._counter(max_pixels).conversation(DEFAULT_SYSTEM).total
        if add_generation_prompt and self.mistake != "no generation prompt":
            total += self._prompt(max_pixels)
        return total

    def _prompt(self, max_pixels: int | None) -> int:
        counter = self._counter(max_pixels)
        return (counter.conversation(PROBE, add_generation_prompt=True).total
                - counter.conversation(PROBE).total)

    def __call__(self, messages: list[dict[str, Any]], max_pixels: int | None = None,
                 add_generation_prompt: bool = False) -> list[list[dict[str, Any]]]:
        from pytest_tokenguard.splitting import SplitError

        prompt = add_generation_prompt or bool(self.check_kwargs.get("add_generation_prompt"))
        if self.mistake == "fixed max_pixels":
            max_pixels = None  # the mistake: the setting checked is not looked at
        chunks: list[list[dict[str, Any]]] = []
        run: list[dict[str, Any]] = []
        used = 0
        for message in messages:
            if self.price([message], not chunks and not run, max_pixels, prompt) \
                    > self.max_tokens:
                raise SplitError("a message is too large for any chunk")
            if run and used + self.message_cost(message, False, max_pixels) > self.max_tokens:
                chunks.append(run)
                run = []
            run.append(message)
            used = self.price(run, not chunks, max_pixels, prompt) if len(run) == 1 else (
                used + self.message_cost(message, False, max_pixels))
        if run:
            chunks.append(run)
        return chunks


def qwen_sft_split(counter: QwenTokenCounter, max_tokens: int
                   ) -> Any:
    """A right SFT splitter for Qwen-VL: whole turns (questions, then the answer) packed
    greedily, the opening system messages repeated in every chunk, each chunk priced whole
    by the exact counter; a turn too large for any chunk is refused."""

    def split(messages: list[dict[str, Any]], max_pixels: int | None = None
              ) -> list[list[dict[str, Any]]]:
        from pytest_tokenguard.splitting import SplitError

        c = counter if max_pixels is None else counter.with_settings(max_pixels=max_pixels)
        first = 0
        while first < len(messages) and messages[first]["role"] == "system":
            first += 1
        system, turns, turn = messages[:first], [], []
        for message in messages[first:]:
            turn.append(message)
            if message["role"] == "assistant":
                turns.append(turn)
                turn = []
        if turn:
            raise SplitError("the last turn has no answer")
        chunks: list[list[dict[str, Any]]] = []
        run: list[dict[str, Any]] = []
        for whole in turns:
            if c.conversation([*system, *whole]).total > max_tokens:
                raise SplitError("a turn is too large for any chunk")
            if run and c.conversation([*system, *run, *whole]).total > max_tokens:
                chunks.append([*system, *run])
                run = []
            run.extend(whole)
        if run:
            chunks.append([*system, *run])
        return chunks

    return split
