"""A user's Qwen-VL training suite under ``--tokenguard``, through pytester.

The planted suite trains on Qwen data the way TRL's collators do: its own code builds the
real transformers Qwen2.5-VL processor offline from the published settings (with the
stand-in tokenizer of ``tests/qwen_helpers.py``, planted next to it), and its collator
calls it with a ``max_pixels`` of its own. The tests declare what each image may cost
(``@pytest.mark.image_tokens``) and how long a sample may be
(``@pytest.mark.max_sequence_tokens``). A planted ``max_pixels`` mistake must fail both,
and the ``image_tokens`` failure must name the ``max_pixels`` that fits: the largest that
gives the declared count, checked here against the real processor.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

# pytester's in-process runs drop modules first imported inside them; numpy cannot be
# imported twice in one process, so the heavy modules are imported here, once.
# The planted helper imports every Qwen processor class: a class first imported inside would
# stay cached on the `transformers` module while its module is dropped from sys.modules,
# where a later recorder in this process could no longer find it to patch.
for _module in ("qwen2_vl.processing_qwen2_vl", "qwen2_5_vl.processing_qwen2_5_vl",
                "qwen3_vl.processing_qwen3_vl", "qwen2_vl.image_processing_qwen2_vl",
                "qwen2_vl.video_processing_qwen2_vl", "qwen3_vl.video_processing_qwen3_vl"):
    pytest.importorskip(f"transformers.models.{_module}")
pytest.importorskip("PIL.Image")

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
HELPERS = Path(__file__).resolve().parents[1] / "qwen_helpers.py"

#: the user's training code: a collator that calls the processor as TRL's does
TRAIN = """
from PIL import Image

from qwen_helpers import processor

MODEL = {model!r}
MAX_PIXELS = {max_pixels}  # the planted setting

def photo(width, height):
    return Image.new("RGB", (width, height), (90, 120, 40))

def collate(examples):
    texts = [
        "<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>"
        + example["question"] + "<|im_end|>\\n<|im_start|>assistant\\n" + example["answer"]
        + "<|im_end|>\\n"
        for example in examples
    ]
    images = [[photo(*example["size"])] for example in examples]
    return processor(MODEL)(text=texts, images=images, padding=True, return_tensors="pt",
                            images_kwargs={{"max_pixels": MAX_PIXELS}})
"""

SUITE = """
import pytest

from train import collate

DATA = [
    {"question": "What is on the table?", "answer": "A cup.", "size": (1024, 768)},
    {"question": "Count the birds.", "answer": "Three.", "size": (1024, 768)},
]

@pytest.mark.image_tokens(234)
@pytest.mark.max_sequence_tokens(300)
def test_a_batch_fits():
    batch = collate(DATA)
    assert batch["input_ids"].shape[0] == 2
"""

#: the max_pixels the suite was written for (448×448), and the planted mistake
INTENDED, MISTAKE = 200704, 1003520


def plant(pytester: pytest.Pytester, max_pixels: int) -> None:
    pytester.makepyfile(qwen_helpers=HELPERS.read_text(encoding="utf-8"),
                        train=TRAIN.format(model=MODEL, max_pixels=max_pixels),
                        test_training=SUITE)


def image_pads(max_pixels: int) -> int:
    """``<|image_pad|>`` tokens the real processor writes for the suite's 1024×768 photo."""
    from PIL import Image

    from tests.qwen_helpers import processor

    proc = processor(MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = proc(text=["<|vision_start|><|image_pad|><|vision_end|>"],
                   images=[Image.new("RGB", (1024, 768))],
                   images_kwargs={"max_pixels": max_pixels})
    return sum(1 for i in out["input_ids"][0] if i == proc.image_token_id)


def test_a_max_pixels_mistake_fails_and_names_the_max_pixels_that_fits(
        pytester: pytest.Pytester) -> None:
    plant(pytester, MISTAKE)
    result = pytester.runpytest("--tokenguard", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"Image 1024×768 cost 999 <\|image_pad\|> tokens \(54×74 patch grid at "
                     r"min_pixels=3136, max_pixels=1003520\) but the test declared 234", out), out
    found = re.search(r"max_pixels=(\d+) gives 26×36 patches \(234 tokens\): pass "
                      r"max_pixels=\1 to the processor call", out)
    assert found, out
    fits = int(found.group(1))
    # the real processor: the named value gives the declared count, one pixel more does not
    assert image_pads(fits) == 234
    assert image_pads(fits + 1) > 234
    assert image_pads(INTENDED) == 234
    # the sequences are over their limit too, and say so by name
    assert re.search(r"Sequence 'test_training.py::test_a_batch_fits call 1 sample 0' is "
                     r"\d+ tokens, over the limit of 300", out), out


def test_the_intended_max_pixels_passes_and_the_summary_carries_the_qwen_figures(
        pytester: pytest.Pytester) -> None:
    plant(pytester, INTENDED)
    result = pytester.runpytest("--tokenguard", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # one row at the call's pixel budget: 2 images of 26×36 patches (4 × 234 each),
    # 234 tokens each, their wrappers, and the longest padded-out sample
    result.stdout.fnmatch_lines(["*test  *resolution  *images  *patches*",
                                 "*test_training.py::test_a_batch_fits  max_pixels=200704 "
                                 "(min_pixels=3136)  *2  *1872  *468  *472  *2[0-9][0-9]"])


#: the largest max_pixels that still gives the suite's photo 234 tokens
SAME_COST = 204885


def test_the_baseline_keys_qwen_figures_by_max_pixels(pytester: pytest.Pytester) -> None:
    """A suite recorded at one max_pixels and run at another fails the gate by name, even
    where every token count is the same (they sat under one key, "-", before)."""
    assert image_pads(SAME_COST) == image_pads(INTENDED) == 234  # the real processor
    plant(pytester, INTENDED)
    pytester.runpytest("--tokenguard", "--tokenguard-update", "-p", "no:cacheprovider"
                       ).assert_outcomes(passed=1)
    document = json.loads((pytester.path / ".tokenguard" / "baseline.json").read_text())
    [row] = document["tests"]["test_training.py::test_a_batch_fits"]["resolutions"]
    assert (row["longest_edge"], row["min_pixels"], row["max_pixels"]) == (None, 3136, INTENDED)

    assert pytester.runpytest("--tokenguard", "-p", "no:cacheprovider").ret == 0  # unchanged
    plant(pytester, SAME_COST)
    result = pytester.runpytest("--tokenguard", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*tokenguard baseline: test_a_batch_fits max_pixels changed: 200704 -> 204885 "
        "(min_pixels=3136) (baseline .tokenguard/baseline.json)",
        "*resolution  *figure  *baseline  *now",
        "*changed: test_training.py::test_a_batch_fits max_pixels changed*",
    ])
