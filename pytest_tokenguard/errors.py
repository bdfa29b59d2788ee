"""Every error tokenguard raises, under one root.

``except TokenguardError`` catches all of them. Errors about something the user gave
(an image, a conversation, a model folder, a marker argument, a command-line value)
also subclass :class:`ValueError`, so code written against the standard exceptions
keeps working; every message names the input and the fix, in one line.

A message that names a setting names it as it is spelled where the message is shown:
``allow_frame_split=True`` to a Python caller, ``--allow-frame-split`` on the command
line. Such messages are built with :meth:`TokenguardError.phrased` from a template that
refers to settings as ``{allow_frame_split}``; ``str(exc)`` words them for the library
and the pytest plugin (:data:`DEFAULT_WORDING`), and a front end that spells them
otherwise shows ``exc.reworded(its_wording)``. The check that raises is written once.

Only the standard library is imported here: the hierarchy is cheap to import anywhere,
the pytest plugin included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self

__all__ = [
    "CLI_WORDING",
    "DEFAULT_WORDING",
    "BaselineError",
    "ConversationError",
    "CountingError",
    "FrameRangeError",
    "GpuUnavailable",
    "ImageFormatError",
    "ImageItemError",
    "ImageReadError",
    "InputError",
    "MemoryModelError",
    "ProcessorLoadError",
    "SameFileError",
    "SpecError",
    "SplitError",
    "SplitterCheckError",
    "TemplateError",
    "TokenguardError",
    "TokenguardWarning",
    "TokenizerUnavailable",
    "VideoItemError",
    "VideoReadError",
    "reword",
]

#: How the library and the pytest plugin spell the settings a message may name.
DEFAULT_WORDING: Mapping[str, str] = MappingProxyType({
    "allow_frame_split": "allow_frame_split=True",
    "max_chunks": "max_chunks",
    "max_tokens": "max_tokens",
    "model": "--tokenguard-model (or $TOKENGUARD_MODEL, or the tokenguard_model ini value)",
    "resolutions": "--tokenguard-resolutions=384,512,1536",
})
#: How the ``tokenguard`` command spells them.
CLI_WORDING: Mapping[str, str] = MappingProxyType({
    "allow_frame_split": "--allow-frame-split",
    "max_chunks": "--max-chunks",
    "max_tokens": "--max-tokens",
    "model": "--model (or $TOKENGUARD_MODEL)",
    "resolutions": "--longest-edge 384",
})

_REFERENCE = re.compile("\\{(" + "|".join(DEFAULT_WORDING) + ")\\}")


def reword(template: str, wording: Mapping[str, str] = DEFAULT_WORDING) -> str:
    """``template`` with each ``{setting}`` reference spelled by ``wording`` (settings it
    does not spell keep the default wording). Only the settings of
    :data:`DEFAULT_WORDING` are references; other braces are left alone."""

    def spell(match: re.Match[str]) -> str:
        name = match[1]
        return wording.get(name) or DEFAULT_WORDING.get(name) or match[0]

    return _REFERENCE.sub(spell, template)


class TokenguardError(Exception):
    """The root of every error tokenguard raises."""

    #: the message with its ``{setting}`` references open; None when it names no setting
    template: str | None = None

    @classmethod
    def phrased(cls, template: str, /, *args: Any, **kwargs: Any) -> Self:
        """An error whose message refers to settings as ``{setting}`` (see the module
        docstring); ``args`` and ``kwargs`` are the class's other constructor arguments."""
        exc = cls(reword(template), *args, **kwargs)
        exc.template = template
        return exc

    def reworded(self, wording: Mapping[str, str]) -> str:
        """The message with settings spelled as ``wording`` spells them."""
        return str(self) if self.template is None else reword(self.template, wording)


class TokenguardWarning(UserWarning):
    """Something tokenguard worked around, said in its words (naming the input): a
    damaged EXIF block PIL skipped part of. The ``tokenguard`` command prints each as one
    ``note:`` line; under pytest they are in the warnings summary."""


class InputError(TokenguardError, ValueError):
    """Something the user gave cannot be used; the message names it and the fix."""


class SpecError(InputError):
    """A model's configuration cannot be turned into a spec; says why and how to fix."""


class CountingError(InputError):
    """An input the processor could not turn into tokens; names it and the fix."""


class ImageReadError(InputError):
    """A path that is not a readable image; the message names the path and the fix."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageFormatError(ImageReadError):
    """An image file the processor's loader cannot load from its path (its format, or
    an animation); the message names the path, the format and the fix."""


class VideoReadError(InputError):
    """A path that is not a readable video (or PyAV, which reads it, is missing); the
    message names the path and the fix."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConversationError(InputError):
    """A conversation the chat template or the processor cannot take; names the spot and
    the fix."""


class _ItemFileError(ConversationError):
    """An item of a conversation whose file cannot be used, named by its place."""

    _kind = "file"
    path: str
    reason: str

    def __init__(self, where: str, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        Exception.__init__(self, f"{where}: {self._kind} {self.path} {reason}")


class ImageItemError(_ItemFileError, ImageReadError):
    """An image item whose file cannot be used: a conversation error (it names the
    message and item) that is also an :class:`ImageReadError` (``path``, ``reason``)."""

    _kind = "image"


class VideoItemError(_ItemFileError, VideoReadError):
    """A video item whose file cannot be used: a conversation error (it names the
    message and item) that is also a :class:`VideoReadError` (``path``, ``reason``)."""

    _kind = "video"


class FrameRangeError(ConversationError):
    """A frame range that is not a valid half-open ``[start, end)`` range."""


class TemplateError(InputError):
    """The processor's chat template is not one the calculator can count."""


class SplitError(InputError):
    """The conversation cannot be split under the limit; names the message, its size, the fix.

    ``index`` and ``tokens`` are the offending message's position and exact cost (None
    when the leading context or an argument is at fault); ``room`` is what a chunk
    has for messages once the template and leading context are counted.
    """

    def __init__(
        self, text: str, *, index: int | None = None, tokens: int | None = None,
        room: int | None = None,
    ) -> None:
        super().__init__(text)
        self.index = index
        self.tokens = tokens
        self.room = room


class MemoryModelError(InputError):
    """The inputs cannot be modelled; the message names the input and the fix."""


class SameFileError(InputError):
    """An output path that is one of the inputs (by any path: a link, ``./``): writing it
    would destroy the input, so nothing is written."""


class BaselineError(TokenguardError):
    """A baseline file that cannot be used; the message names the file and the fix."""


class ProcessorLoadError(TokenguardError, RuntimeError):
    """The processor could not be had; the message says why and what to do."""


class TokenizerUnavailable(ProcessorLoadError):
    """A model's text cannot be counted exactly because its tokenizer is not on this machine
    (and tokenguard ships none for it); names the model and what to pass. Vision tokens,
    which need no tokenizer, are still counted."""

    def __init__(self, model: str, what: str = "text", *, template: str | None = None) -> None:
        self.model = model
        if template is None:
            template = (
                f"{model}: {what} cannot be counted exactly: its tokenizer is not on this "
                "machine (no tokenizer.json in a local checkpoint folder or the hub cache) and "
                "tokenguard ships none for it; pass its checkpoint folder to {model}, or "
                f"download the tokenizer once (hf download {model} tokenizer.json "
                "tokenizer_config.json)")
        super().__init__(reword(template))
        self.template = template

    @classmethod
    def for_processor(cls, model: str) -> TokenizerUnavailable:
        """The real processor of ``model`` cannot be built: its files and tokenizer are not
        on this machine (a Qwen-VL hub id known only by its published settings)."""
        return cls(model, template=(
            f"{model}: the real processor needs the checkpoint's processor files and "
            "tokenizer, which are not on this machine (no checkpoint folder, nothing in the "
            "hub cache) and tokenguard ships no tokenizer for it; pass its checkpoint folder "
            f"to {{model}}, or download them once (hf download {model} --include '*.json')"))


class GpuUnavailable(TokenguardError, RuntimeError):
    """No CUDA device can be measured; ``str(exc)`` is the reason, fit for a skip."""


class SplitterCheckError(TokenguardError, AssertionError):
    """A splitter broke the contract; the message holds the (shrunk) evidence."""
