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

from typing import Any

from pytest_tokenguard.families.qwen_text import QwenTokenCounter

QWEN_MISTAKES = ("image pads only", "default system once", "area / 784",
                 "no generation prompt", "fixed max_pixels")
DEFAULT_SYSTEM = [{"role": "system", "content": "You are a helpful assistant."}]
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
        self.check_kwargs: dict[str, Any] = {}
        if mistake == "no generation prompt":
            self.check_kwargs["add_generation_prompt"] = True
        self.check_kwargs["max_pixels"] = CHECKED_AT

    def __repr__(self) -> str:
        return f"QwenPlantedSplitter({self.mistake or 'right'!r})"

    def price(self, chunk: list[dict[str, Any]], first: bool, max_pixels: int | None,
              add_generation_prompt: bool) -> int:
        counter = self.counter
        if self.mistake == "fixed max_pixels":
            counter = counter.with_settings(max_pixels=FIXED)
        elif max_pixels is not None and max_pixels != counter.max_pixels:
            counter = counter.with_settings(max_pixels=max_pixels)
        prompt = add_generation_prompt and self.mistake != "no generation prompt"
        count = counter.conversation(chunk, add_generation_prompt=prompt)
        exact = count.total
        if self.mistake == "image pads only":
            return exact - 2 * len(count.images)
        if self.mistake == "default system once" and not first and chunk[0]["role"] != "system":
            return exact - counter.conversation(DEFAULT_SYSTEM).total
        if self.mistake == "area / 784":
            factor = counter.spec.image.factor
            return exact + sum(min(image.width * image.height, image.max_pixels) // factor ** 2
                               - image.image_tokens for image in count.images)
        return exact

    def __call__(self, messages: list[dict[str, Any]], max_pixels: int | None = None,
                 add_generation_prompt: bool = False) -> list[list[dict[str, Any]]]:
        from pytest_tokenguard.splitting import SplitError

        prompt = add_generation_prompt or bool(self.check_kwargs.get("add_generation_prompt"))
        if self.mistake == "fixed max_pixels":
            max_pixels = None  # the mistake: the setting checked is not looked at
        chunks: list[list[dict[str, Any]]] = []
        run: list[dict[str, Any]] = []
        for message in messages:
            if self.price([message], not chunks and not run, max_pixels, prompt) \
                    > self.max_tokens:
                raise SplitError("a message is too large for any chunk")
            if run and self.price([*run, message], not chunks, max_pixels, prompt) \
                    > self.max_tokens:
                chunks.append(run)
                run = []
            run.append(message)
        if run:
            chunks.append(run)
        return chunks
