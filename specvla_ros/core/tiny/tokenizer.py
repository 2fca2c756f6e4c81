"""The tiny VLA's tokenizer (Llama's own cannot be downloaded here): whole-word pieces plus bytes.

Ids: 0 pad, 1 BOS, 2 EOS, 3 + byte for each UTF-8 byte, then one id per known piece. Everything
stays below the action-token range. Any text encodes: a word with no piece falls back to bytes.

Why pieces: a byte-level prompt is ~70 tokens, most of them the constant template. Whole words
(" red", " cube", ...) cut the sequence to ~20 tokens, which makes training ~1.5x cheaper and puts
each instruction word in one embedding, as Llama's SentencePiece tokens do for OpenVLA.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from specvla_ros.core.prompt import openvla_prompt

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3
PIECE_OFFSET = BYTE_OFFSET + 256  # first piece id
SPACE_ID = BYTE_OFFSET + ord(" ")  # plays the role of Llama's token 29871 after "Out:"

# A word with its leading space, a run of punctuation, or a newline: the units pieces are made of.
_WORD = re.compile(r" ?[A-Za-z]+| ?[^\sA-Za-z]+|\s")


def prompt_pieces(instructions: Iterable[str]) -> tuple[str, ...]:
    """The words of the prompts built from `instructions`, in first-seen order: a piece vocabulary."""
    seen: dict[str, None] = {}
    for instruction in instructions:
        for word in _WORD.findall(openvla_prompt(instruction)):
            if len(word.encode("utf-8")) > 1:
                seen.setdefault(word, None)
    return tuple(seen)


class PieceTokenizer:
    """Greedy word-level tokenizer over a fixed piece list; bytes for anything unknown."""

    def __init__(self, pieces: Sequence[str] = ()) -> None:
        self.pieces = tuple(pieces)
        self._ids = {piece: PIECE_OFFSET + index for index, piece in enumerate(self.pieces)}

    @property
    def vocab_floor(self) -> int:
        """Smallest vocabulary that holds every byte and piece id."""
        return PIECE_OFFSET + len(self.pieces)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in _WORD.findall(text):
            piece = self._ids.get(word)
            if piece is None:
                ids += [BYTE_OFFSET + b for b in word.encode("utf-8")]
            else:
                ids.append(piece)
        return ids

    def prompt_ids(self, instruction: str) -> list[int]:
        """BOS + prompt + the space token OpenVLA appends when the prompt does not end with it."""
        ids = [BOS_ID, *self.encode(openvla_prompt(instruction))]
        if ids[-1] != SPACE_ID:
            ids.append(SPACE_ID)
        return ids


class ByteTokenizer(PieceTokenizer):
    """Bytes only: the tokenizer of checkpoints saved without pieces."""

    def __init__(self) -> None:
        super().__init__(())
