"""OpenVLA's prompt template, which every backbone's tokenizer encodes (core/tiny/tokenizer.py,
core/openvla/tokenizer.py): the tiny VLA is trained on the same text OpenVLA was."""
from __future__ import annotations


def openvla_prompt(instruction: str) -> str:
    """OpenVLA's prompt for a task instruction."""
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"
