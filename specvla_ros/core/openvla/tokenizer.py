"""OpenVLA's prompt tokens, from the checkpoint folder's tokenizer.json (no download, no remote code).

predict_action's input is `tokenizer(prompt)` = [BOS] + tokens of the prompt, then token 29871
(Llama-2's bare '▁' piece) appended unless the prompt already ends with it. The text is encoded
with the pipeline stored in tokenizer.json (normalizer, BPE with byte fallback) and BOS is put in
front explicitly, which is what the Llama-2 tokenizer's post-processor does.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from specvla_ros.core.errors import CheckpointError
from specvla_ros.core.prompt import openvla_prompt

TOKENIZER_FILE = "tokenizer.json"
SPACE_PIECE = "▁"  # id 29871 in Llama-2's vocabulary: the constant OpenVLA hard-codes


class PromptTokenizer:
    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.is_file():
            hint = (" (found tokenizer.model: convert it once where the sentencepiece package is installed: "
                    "AutoTokenizer.from_pretrained(folder).save_pretrained(folder))"
                    if (folder / "tokenizer.model").is_file() else "")
            raise CheckpointError(f"{path} not found{hint}: the OpenVLA checkpoint's tokenizer is needed for "
                                  "the prompt")
        try:
            self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path))
        except Exception as bad:  # tokenizers raises its own Exception type on malformed files
            raise CheckpointError(f"{path} is not a readable tokenizer file ({bad})") from None
        self.bos_id = self._token_id(_bos_token(folder), path)
        self.space_id = self._token_id(SPACE_PIECE, path)

    def _token_id(self, token: str, path: Path) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id or not isinstance(token_id, int):
            raise CheckpointError(f"{path} has no token '{token}'; OpenVLA's prompt needs it (Llama-2 tokenizer)")
        return token_id

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, instruction: str) -> list[int]:
        """[BOS] + prompt + '▁' (29871) unless the prompt's last token already is it: predict_action's input."""
        ids = [self.bos_id, *self.encode(openvla_prompt(instruction))]
        if ids[-1] != self.space_id:
            ids.append(self.space_id)
        return ids


def _bos_token(folder: Path) -> str:
    """The BOS token's text as tokenizer_config.json names it; Llama's '<s>' when it does not."""
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            bos = json.loads(config.read_text()).get("bos_token")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            bos = None
        if isinstance(bos, dict):
            bos = bos.get("content")
        if isinstance(bos, str) and bos:
            return bos
    return "<s>"
