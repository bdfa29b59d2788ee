"""Record what real processor calls produce, and charge each call to its test.

The code under test builds its own processor, often with settings the test author
never sees (the default ``longest_edge`` of 1536, say). So recording happens at the
class level: while a :class:`Recorder` is installed, every watched processor call
(``SmolVLMProcessor``, ``Idefics3Processor``) reports each image it expanded, with its
tokens and the size of the text block it wrote, every video (:class:`VideoRecord`), and
every sequence it returned. The figures are read off the processor's own output, at the
settings the call actually used.

One idea a module:

- :mod:`.records`: what is recorded (:class:`ImageRecord`, :class:`VideoRecord`,
  :class:`SequenceRecord`, a test's :class:`Recording`, :class:`Stray` calls);
- :mod:`.recorder`: the :class:`Recorder`, its recordings and where each call goes;
- :mod:`.owners`: whose call it is (a context variable, a thread's starter, a process's
  parent);
- :mod:`.propagation`: the patches of the standard library that hand the owner on to
  threads, thread pools and processes, undone with the last recorder;
- :mod:`.children`: the processes a test starts (the ``sitecustomize``, one file per call);
- :mod:`.patching`: how a processor class is wrapped, now or when its module loads;
- :mod:`.reading`: reading a call's sequences (padding told apart from text) and images;
- :mod:`.smolvlm`: what a SmolVLM2 / Idefics3 call wrote for its images and videos.

transformers is imported only when the code under test imports it.
"""

from __future__ import annotations

from .children import install_in_child
from .owners import ENV_RECORD_TO
from .reading import PADDING_UNKNOWN, unpadded_lengths
from .recorder import Recorder
from .records import ImageRecord, Recording, SequenceRecord, Stray, VideoRecord, unchecked_reason

__all__ = [
    "ENV_RECORD_TO",
    "PADDING_UNKNOWN",
    "ImageRecord",
    "Recorder",
    "Recording",
    "SequenceRecord",
    "Stray",
    "VideoRecord",
    "install_in_child",
    "unchecked_reason",
    "unpadded_lengths",
]
