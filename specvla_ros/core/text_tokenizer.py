"""A byte-level tokenizer for the tiny VLA (Llama's tokenizer cannot be downloaded here).

Ids: 0 pad, 1 BOS, 2 EOS, 3 + byte for each UTF-8 byte. They stay below the action-token range.
"""
from __future__ import annotations

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3
SPACE_ID = BYTE_OFFSET + ord(" ")  # plays the role of Llama's token 29871 after "Out:"


def openvla_prompt(instruction: str) -> str:
    """OpenVLA's prompt for a task instruction."""
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


class ByteTokenizer:
    vocab_floor = BYTE_OFFSET + 256  # smallest vocabulary that holds every byte

    def encode(self, text: str) -> list[int]:
        return [BYTE_OFFSET + b for b in text.encode("utf-8")]

    def prompt_ids(self, instruction: str) -> list[int]:
        """BOS + prompt + the space token OpenVLA appends when the prompt does not end with it."""
        ids = [BOS_ID, *self.encode(openvla_prompt(instruction))]
        if ids[-1] != SPACE_ID:
            ids.append(SPACE_ID)
        return ids
