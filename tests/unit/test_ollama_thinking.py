"""``<think>`` blocks are removed from a thinking model's answer before it is parsed."""

from __future__ import annotations

import pytest

from autopilot.integrations.ollama import strip_thinking

ANSWER = '{"root_cause": {"description": "pool exhausted"}}'


@pytest.mark.parametrize("content", [
    ANSWER,
    f"<think>The pool is exhausted, v1.2.3 maybe.</think>{ANSWER}",
    f"<think>\nline one\nline two\n</think>\n\n{ANSWER}",
    f"<THINK>shouting</THINK>{ANSWER}",
    f"<think>a</think><think>b</think>{ANSWER}",
])
def test_think_blocks_are_removed_and_the_answer_kept(content: str) -> None:
    assert strip_thinking(content).strip() == ANSWER


def test_an_unclosed_think_block_is_removed_to_the_end() -> None:
    assert strip_thinking("<think>still thinking when num_predict ran out") == ""
    assert strip_thinking(f"{ANSWER}<think>trailing") == ANSWER
