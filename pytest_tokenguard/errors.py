"""Every error tokenguard raises, under one root.

``except TokenguardError`` catches all of them. Errors about something the user gave
(an image, a conversation, a model folder, a marker argument, a command-line value)
also subclass :class:`ValueError`, so code written against the standard exceptions
keeps working; every message names the input and the fix, in one line.

Nothing is imported here: the hierarchy is cheap to import anywhere, the pytest plugin
included.
"""

from __future__ import annotations

import os

__all__ = [
    "BaselineError",
    "ConversationError",
    "CountingError",
    "FrameRangeError",
    "GpuUnavailable",
    "ImageReadError",
    "InputError",
    "MemoryModelError",
    "ProcessorLoadError",
    "SpecError",
    "SplitError",
    "SplitterCheckError",
    "TemplateError",
    "TokenguardError",
    "VideoReadError",
]


class TokenguardError(Exception):
    """The root of every error tokenguard raises."""


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


class BaselineError(TokenguardError):
    """A baseline file that cannot be used; the message names the file and the fix."""


class ProcessorLoadError(TokenguardError, RuntimeError):
    """The processor could not be had; the message says why and what to do."""


class GpuUnavailable(TokenguardError, RuntimeError):
    """No CUDA device can be measured; ``str(exc)`` is the reason, fit for a skip."""


class SplitterCheckError(TokenguardError, AssertionError):
    """A splitter broke the contract; the message holds the (shrunk) evidence."""
