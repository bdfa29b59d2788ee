"""The README's Python examples run, and the numbers their comments quote are what they
return: a ``# 5670`` after an expression is asserted, so the README cannot drift from the
code (the counter, proven equal to the real processor elsewhere in this tier)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
QUOTED = re.compile(r"#\s*(\d[\d,]*)\b")  # a comment that opens with a number


def quoted(line: str) -> int | None:
    """The number a line's comment opens with (``x  # 5,670 tokens`` gives 5670)."""
    found = QUOTED.search(line)
    return int(found.group(1).replace(",", "")) if found else None


def quoted_examples() -> list[str]:
    """The README's ``python`` blocks that quote a result in a comment."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                        re.M | re.S)
    return [block for block in blocks if any(quoted(line) is not None
                                             for line in block.splitlines())]


def run_and_check(block: str) -> list[tuple[int, Any, int]]:
    """Runs ``block`` statement by statement; returns (line, value, quoted) for every
    expression statement whose last line ends in a quoted number."""
    lines = block.splitlines()
    namespace: dict[str, Any] = {}
    checked = []
    for statement in ast.parse(block).body:
        code = ast.Module(body=[statement], type_ignores=[])
        expected = quoted(lines[(statement.end_lineno or 1) - 1])
        if isinstance(statement, ast.Expr) and expected is not None:
            value = eval(compile(ast.Expression(statement.value), "README", "eval"), namespace)
            checked.append((statement.lineno, value, expected))
        else:
            exec(compile(code, "README", "exec"), namespace)
    return checked


EXAMPLES = quoted_examples()


def test_the_readme_quotes_results() -> None:
    assert EXAMPLES, "no README example quotes a result: this module checks nothing"


@pytest.mark.tokenguard_no_baseline("the README's examples change with the README")
@pytest.mark.parametrize("block", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_returns_what_it_quotes(block: str) -> None:
    checked = run_and_check(block)
    assert checked, "the example quotes no result"
    assert [(line, value) for line, value, _ in checked] == [
        (line, quoted) for line, _, quoted in checked]
