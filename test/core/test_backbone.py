"""The tiny VLA as a Backbone: input checks, prompt, tree forwards, cache commits, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from specvla_ros.core.backbone import causal_mask
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import CheckpointError, ConfigError, InputError
from specvla_ros.core.loading import load_decoder
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.core.tiny.tokenizer import SPACE_ID, ByteTokenizer
from test.models import SMALL, make_pair, observations

IMAGE, TASK = observations(0, 1)[0]


@pytest.mark.parametrize("image, instruction, reason", [
    (np.zeros((8, 8), np.uint8), "pick", r"\(H, W, 3\)"),
    (np.zeros((8, 8, 4), np.uint8), "pick", r"\(H, W, 3\)"),
    (np.zeros((8, 8, 3), np.float32), "pick", "uint8"),
    (np.zeros((8, 8, 3), np.uint8), "  ", "instruction is empty"),
    (np.zeros((1, 8, 3), np.uint8), "pick", "too small"),
])
def test_bad_observations_raise_input_error(image, instruction, reason) -> None:
    target = TinyVLA.random(SMALL, 0)
    with pytest.raises(InputError, match=reason):
        target.prefill(image, instruction)


def test_openvla_prompt() -> None:
    ids = ByteTokenizer().prompt_ids("Pick Up the Cube")
    text = bytes(i - 3 for i in ids[1:-1]).decode()
    assert text == "In: What action should the robot take to pick up the cube?\nOut:"
    assert ids[0] == 1 and ids[-1] == SPACE_ID


def _fresh(target: TinyVLA):
    return target.prefill(IMAGE, TASK)


@torch.inference_mode()
def test_tree_forward_matches_per_branch_recompute() -> None:
    target = TinyVLA.random(SMALL, 1)
    prefill = _fresh(target)
    length = prefill.prefix_len
    tokens = torch.tensor([500, 510, 511, 520])            # root, two children, grandchild of the first
    depth = torch.tensor([0, 1, 1, 2])
    tree_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    logits, _ = target.forward(prefill.cache, tokens, length + depth, tree_mask)
    for branch, rows in (([0, 1, 3], [0, 1, 3]), ([0, 2], [0, 2])):
        again = _fresh(target)
        chain, _ = target.forward(again.cache, tokens[branch], length + torch.arange(len(branch)),
                                  causal_mask(len(branch), target.device))
        torch.testing.assert_close(chain, logits[rows], atol=1e-5, rtol=0)


@torch.inference_mode()
def test_commit_then_continue_matches_recompute_from_scratch() -> None:
    target = TinyVLA.random(SMALL, 2)
    prefill = _fresh(target)
    length = prefill.prefix_len
    tokens = torch.tensor([500, 510, 511, 520])
    tree_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    target.forward(prefill.cache, tokens, length + torch.tensor([0, 1, 1, 2]), tree_mask)
    target.commit(prefill.cache, length, torch.tensor([0, 2, 3]))  # path root -> 511 -> 520
    assert prefill.cache.length == length + 3
    after, _ = target.forward(prefill.cache, torch.tensor([525]), torch.tensor([length + 3]), causal_mask(1, "cpu"))

    scratch = _fresh(target)
    sequence = torch.tensor([500, 511, 520, 525])
    recomputed, _ = target.forward(scratch.cache, sequence, length + torch.arange(4), causal_mask(4, "cpu"))
    torch.testing.assert_close(after[0], recomputed[3], atol=1e-5, rtol=0)


def test_checkpoint_round_trip_decodes_identically(tmp_path) -> None:
    target, head = make_pair(3)
    target.save(tmp_path / "target")
    head.save(tmp_path / "draft")
    for mode in ("autoregressive", "speculative"):
        config = DecoderConfig(mode=mode, relax_bins=2)
        original = load_decoder(tmp_path / "target", tmp_path / "draft", config)
        in_memory = build_decoder(target, head, config)
        for image, text in observations(5, 3):
            assert original.decode(image, text).token_ids == in_memory.decode(image, text).token_ids


def test_missing_and_misshapen_tensors_are_named(tmp_path) -> None:
    target = TinyVLA.random(SMALL, 0)
    folder = target.save(tmp_path / "target")
    tensors = load_file(folder / "model.safetensors")
    name = "llm.lm_head.weight"
    save_file({k: v for k, v in tensors.items() if k != name}, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="lacks tensor 'llm.lm_head.weight'"):
        TinyVLA.load(folder)
    tensors[name] = tensors[name][:10].clone()
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="has shape"):
        TinyVLA.load(folder)


def test_pickle_only_checkpoint_is_refused(tmp_path) -> None:
    folder = TinyVLA.random(SMALL, 0).save(tmp_path / "target")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle files are not loaded"):
        TinyVLA.load(folder)


def test_draft_head_for_another_hidden_size_is_refused(tmp_path) -> None:
    small_target, head = make_pair(0)
    head.save(tmp_path / "draft")
    bigger = TinyVLA.random(SMALL.__class__(**{**SMALL.to_dict(), "hidden_size": 64}), 0)
    with pytest.raises(CheckpointError, match="hidden size 32"):
        DraftHead.load(tmp_path / "draft", bigger)


def test_speculative_without_draft_and_unknown_model_type(tmp_path) -> None:
    folder = TinyVLA.random(SMALL, 0).save(tmp_path / "target")
    with pytest.raises(ConfigError, match="draft head"):
        load_decoder(folder, None, DecoderConfig(mode="speculative"))
    (folder / "config.json").write_text('{"model_type": "prismatic"}')
    with pytest.raises(CheckpointError, match="not supported"):
        load_decoder(folder, None, DecoderConfig(mode="autoregressive"))
    with pytest.raises(CheckpointError, match="not found"):
        load_decoder(tmp_path / "nowhere", None, DecoderConfig(mode="autoregressive"))


def test_corrupt_checkpoints_raise_checkpoint_errors(tmp_path) -> None:
    folder = TinyVLA.random(SMALL, 0).save(tmp_path / "target")
    config_text = (folder / "config.json").read_text()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        TinyVLA.load(folder)
    (folder / "config.json").write_text(config_text.replace('"image_size"', '"image_sise"'))
    with pytest.raises(CheckpointError, match="no valid tiny VLA config"):
        TinyVLA.load(folder)
    (folder / "config.json").write_text(config_text)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        TinyVLA.load(folder)


@pytest.mark.parametrize("device, reason", [("gpu0", "torch device"), ("cuda:7", "CUDA|does not exist")])
def test_unusable_devices_raise_config_error(tmp_path, device, reason) -> None:
    folder = TinyVLA.random(SMALL, 0).save(tmp_path / "target")
    with pytest.raises(ConfigError, match=reason):
        load_decoder(folder, None, DecoderConfig(mode="autoregressive"), device=device)


def test_piece_tokenizer_shortens_prompts_and_falls_back_to_bytes() -> None:
    from specvla_ros.core.tiny.tokenizer import BYTE_OFFSET, PIECE_OFFSET, PieceTokenizer, prompt_pieces

    pieces = prompt_pieces(["pick up the red cube", "push the blue cube to the left"])
    assert pieces[:3] == ("In", " What", " action") and " red" in pieces and len(set(pieces)) == len(pieces)
    tokenizer = PieceTokenizer(pieces)

    def decode(ids: list[int]) -> str:
        return b"".join(pieces[i - PIECE_OFFSET].encode() if i >= PIECE_OFFSET else bytes([i - BYTE_OFFSET])
                        for i in ids).decode()

    known = tokenizer.prompt_ids("Pick up the RED cube")
    assert decode(known[1:-1]) == "In: What action should the robot take to pick up the red cube?\nOut:"
    assert len(known) < len(ByteTokenizer().prompt_ids("pick up the red cube")) / 2
    unknown = tokenizer.prompt_ids("grasp the mug, gently ü")          # unseen words: bytes, nothing lost
    assert decode(unknown[1:-1]) == "In: What action should the robot take to grasp the mug, gently ü?\nOut:"
    assert unknown[-1] == SPACE_ID and max(known + unknown) < tokenizer.vocab_floor


def test_checkpoint_keeps_its_text_pieces(tmp_path) -> None:
    from dataclasses import replace

    config = replace(SMALL, text_pieces=("In", " What", " pick", " cube"))
    model = TinyVLA.random(config, 3)
    loaded = TinyVLA.load(model.save(tmp_path / "m"))
    assert loaded.config.text_pieces == config.text_pieces
    assert loaded.text_tokenizer.prompt_ids(TASK) == model.text_tokenizer.prompt_ids(TASK)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.prefill(IMAGE, TASK).logits_last, model.prefill(IMAGE, TASK).logits_last)


@pytest.mark.parametrize("stem", ["patch", "film"])
def test_stems_give_the_expected_tokens_and_round_trip(tmp_path, stem: str) -> None:
    from dataclasses import replace

    config = replace(SMALL, vision_stem=stem)
    model = TinyVLA.random(config, 4)
    ids = torch.tensor(model.text_tokenizer.prompt_ids(TASK))
    features = model.vision.forward_batch(model.preprocess(IMAGE), [ids])
    assert features.shape == (1, config.num_vision_tokens, config.vision_dim)
    loaded = TinyVLA.load(model.save(tmp_path / stem))
    assert loaded.config.vision_stem == stem
    with torch.inference_mode():
        torch.testing.assert_close(loaded.prefill(IMAGE, TASK).logits_last, model.prefill(IMAGE, TASK).logits_last)


def test_film_stem_reads_the_instruction() -> None:
    """The FiLM encoder's image tokens depend on the instruction (once its FiLM layers are non-zero);
    the patch encoder's do not."""
    from dataclasses import replace

    model = TinyVLA.random(replace(SMALL, vision_stem="film"), 5)
    with torch.no_grad():
        for conv in model.vision.convs:
            torch.nn.init.normal_(conv.film.weight, std=0.5)
    pixels = model.preprocess(IMAGE)
    red, blue = (torch.tensor(model.text_tokenizer.prompt_ids(f"pick up the {c} cube")) for c in ("red", "blue"))
    with torch.inference_mode():
        film = model.vision.forward_batch
        assert not torch.allclose(film(pixels, [red]), film(pixels, [blue]))
        plain = TinyVLA.random(SMALL, 5).vision.forward_batch
        torch.testing.assert_close(plain(pixels, [red]), plain(pixels, [blue]))
