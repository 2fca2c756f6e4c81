"""Native OpenVLA loading on a synthetic checkpoint in the real layout (see docs/openvla.md for what
this does and does not prove about the real 7B checkpoints)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import CheckpointError, ConfigError
from specvla_ros.core.loading import load_backbone, load_decoder
from specvla_ros.core.openvla import OpenVLA
from specvla_ros.core.openvla.preprocessing import center_crop_like_openvla
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.training.draft_trainer import collect_sequence, train_draft_head
from test.core.openvla.reference import ReferenceOpenVLA, read_tensors
from test.core.openvla.synthetic import write_eagle_draft

TASKS = ["pick up the red cube", "Put the blue cube on the plate", "open the drawer", "push the green bowl left"]


def observations(seed: int, count: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    sizes = [(56, 56), (40, 64), (90, 70)]  # exact size (no resize) and two resizes
    return [(rng.integers(0, 256, size=(*sizes[i % 3], 3), dtype=np.uint8), TASKS[i % len(TASKS)])
            for i in range(count)]


def copy_checkpoint(source, tmp_path):
    return shutil.copytree(source, tmp_path / "copy")


# ----- layout and loading ---------------------------------------------------------------------
def test_synthetic_checkpoint_has_the_real_layout_and_loads(openvla_checkpoint) -> None:
    index = json.loads((openvla_checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) == 2
    for name in ("vision_backbone.featurizer.blocks.0.ls1.scale_factor", "vision_backbone.featurizer.reg_token",
                 "vision_backbone.fused_featurizer.attn_pool.latent",
                 "vision_backbone.fused_featurizer.blocks.2.mlp.fc2.bias", "projector.fc3.weight",
                 "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):
        assert name in index, name
    model = load_backbone(openvla_checkpoint)
    assert isinstance(model, OpenVLA)
    assert model.vocab_size == 1088 and model.action_tokenizer.vocab_size == 1024  # 32064 / 32000 analogues
    assert (model.hidden_size, model.dtype, model.device.type) == (64, torch.float32, "cpu")
    assert len(model.vision_backbone.featurizer.blocks) == 2  # the last of 3 blocks is never run, not built
    # every weight equals the checkpoint's (bf16 on disk, loaded into fp32)
    tensors = read_tensors(openvla_checkpoint)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, tensors[name], rtol=0, atol=0)


def test_prompt_is_openvlas(openvla_checkpoint) -> None:
    model = load_backbone(openvla_checkpoint)
    tokenizer = model.text_tokenizer
    ids = tokenizer.prompt_ids("Pick Up the Red Cube")
    assert ids[0] == tokenizer.bos_id == 1 and ids[-1] == tokenizer.space_id
    pieces = tokenizer.tokenizer.convert_ids_to_tokens(ids)
    assert pieces[:4] == ["<s>", "▁In", ":", "▁What"] and pieces[-4:] == ["<0x0A>", "Out", ":", "▁"]
    prompt = "In: What action should the robot take to pick up the red cube?\nOut:"
    assert tokenizer.tokenizer.decode(ids[1:-1]) == prompt


# ----- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint", ["openvla_checkpoint", "single_backbone_checkpoint"])
def test_autoregressive_decoding_equals_reference_forward(checkpoint, request) -> None:
    folder = request.getfixturevalue(checkpoint)
    reference = ReferenceOpenVLA(folder)
    decoder = load_decoder(folder, None, DecoderConfig(mode="autoregressive"))
    for image, task in observations(0, 3):
        expected, first_logits = reference.greedy(image, task)
        result = decoder.decode(image, task)
        assert list(result.token_ids) == expected
        with torch.inference_mode():
            prefill = decoder.backbone.prefill(image, task)
        torch.testing.assert_close(prefill.logits_last, first_logits, atol=1e-4, rtol=1e-4)
        assert prefill.prefix_len == len(reference.prompt_ids(task)) + 16  # 16 patches after BOS


def test_speculative_r0_equals_autoregressive_with_an_eagle_layout_draft(openvla_checkpoint, tmp_path) -> None:
    target = load_backbone(openvla_checkpoint)
    head = DraftHead.random(target, seed=3, num_heads=4)
    head.layer.input_layernorm = nn.Identity()  # EAGLE's layer 0 has no input norm
    sequences = [collect_sequence(target, image, task) for image, task in observations(1, 6)]
    train_draft_head(head, sequences, steps=80, seed=0)
    state = {**head.state_dict(), "embed_tokens.weight": target.embed_tokens.weight.detach()}
    draft = write_eagle_draft(tmp_path / "draft", state, {
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128,
        "rms_norm_eps": 1e-6, "vocab_size": 1088, "hidden_act": "silu"})

    speculative = load_decoder(openvla_checkpoint, draft, DecoderConfig(relax_bins=0))
    loaded = speculative.draft_head
    assert isinstance(loaded.layer.input_layernorm, nn.Identity)
    for name, value in head.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    autoregressive = load_decoder(openvla_checkpoint, None, DecoderConfig(mode="autoregressive"))
    accepted = 0
    for image, task in observations(1, 6):
        fast, plain = speculative.decode(image, task), autoregressive.decode(image, task)
        assert fast.token_ids == plain.token_ids
        np.testing.assert_array_equal(fast.action, plain.action)
        accepted += sum(fast.stats.accepted_per_step)
    assert accepted > 0, "the trained draft never got a token accepted: the test would not exercise commits"


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig(top_k=2, depth=5, total_tokens=10), TreeConfig(chain=True, depth=3),
                                  TreeConfig(top_k=6, depth=2), TreeConfig(top_k=3, depth=4, total_tokens=30,
                                                                            restrict_to_action_tokens=False)])
@pytest.mark.parametrize("temporal", [False, True])
def test_r0_equals_autoregressive_for_every_tree_shape(openvla_checkpoint, tree, temporal: bool) -> None:
    """The static-cache eager path on the OpenVLA layout: 5 trees x temporal off / on x 4 frames."""
    target = load_backbone(openvla_checkpoint)
    head = DraftHead.random(target, seed=7, num_heads=4)
    config = DecoderConfig(tree=tree, temporal=TemporalDraftConfig(enabled=temporal))
    speculative = build_decoder(target, head, config)
    autoregressive = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    for index, (image, task) in enumerate(observations(8, 4)):
        image = observations(8, 1)[0][0] if index % 2 else image  # repeats give the temporal guesses a hit
        assert speculative.decode(image, task, time_s=0.1 * index).token_ids == \
            autoregressive.decode(image, task).token_ids


def test_draft_head_for_another_hidden_size_is_refused(openvla_checkpoint, tmp_path) -> None:
    target = load_backbone(openvla_checkpoint)
    draft = write_eagle_draft(tmp_path / "draft", {"fc.weight": torch.zeros(4096, 8192)}, {
        "hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 11008})
    with pytest.raises(CheckpointError, match="hidden size 4096, the target has 64"):
        load_decoder(openvla_checkpoint, draft, DecoderConfig(relax_bins=0))
    DraftHead.random(target, seed=0).save(tmp_path / "own")  # this project's format still loads
    wrong = json.loads((tmp_path / "own" / "config.json").read_text())
    (tmp_path / "own" / "config.json").write_text(json.dumps({**wrong, "hidden_size": 32}))
    with pytest.raises(CheckpointError, match="hidden size 32"):
        load_decoder(openvla_checkpoint, tmp_path / "own", DecoderConfig(relax_bins=0))


# ----- preprocessing ----------------------------------------------------------------------------
def test_preprocessing_matches_hand_computed_values(openvla_checkpoint) -> None:
    model = load_backbone(openvla_checkpoint)
    image = np.zeros((56, 56, 3), np.uint8)  # already 56 x 56: no resize
    image[0, 0] = (255, 0, 128)
    pixels = model.preprocess(image)
    assert pixels.shape == (1, 6, 56, 56)    # DINOv2 channels, then SigLIP's
    # DINOv2: ImageNet mean/std as OpenVLA's export saved them (bf16-rounded); SigLIP: 0.5 / 0.5
    dino_mean, dino_std = (0.484375, 0.455078125, 0.40625), (0.228515625, 0.2236328125, 0.224609375)
    expected_dino = [(255 / 255 - dino_mean[0]) / dino_std[0], (0 - dino_mean[1]) / dino_std[1],
                     (128 / 255 - dino_mean[2]) / dino_std[2]]
    expected_siglip = [(1.0 - 0.5) / 0.5, (0.0 - 0.5) / 0.5, (128 / 255 - 0.5) / 0.5]
    torch.testing.assert_close(pixels[0, :, 0, 0], torch.tensor(expected_dino + expected_siglip), atol=1e-6, rtol=0)
    black = torch.tensor([-m / s for m, s in zip(dino_mean, dino_std, strict=True)])
    torch.testing.assert_close(pixels[0, :3, 5, 7], black, atol=1e-6, rtol=0)
    # a uniform image stays uniform through the bicubic resize
    uniform = np.full((30, 20, 3), (10, 200, 77), np.uint8)
    resized = model.preprocess(uniform)
    expected = torch.tensor([(10 / 255 - 0.5) / 0.5, (200 / 255 - 0.5) / 0.5, (77 / 255 - 0.5) / 0.5])
    torch.testing.assert_close(resized[0, 3:], expected[:, None, None].expand(3, 56, 56), atol=1e-6, rtol=0)


def test_center_crop_matches_hand_computed_bilinear_samples() -> None:
    rows, cols = np.meshgrid(np.arange(11), np.arange(11), indexing="ij")
    image = np.repeat((10 * rows + 5 * cols).astype(np.uint8)[..., None], 3, axis=2)  # a plane: bilinear is exact
    crop = center_crop_like_openvla(image, 0.9, 5)
    side = np.sqrt(0.9)
    start = (1 - side) / 2 * 10
    coords = start + np.arange(5) * side * 10 / 4  # corner-aligned samples of the centre 0.9-area box
    expected = np.floor((10 * coords[:, None] + 5 * coords[None, :]) / 255 * 255.5).astype(np.uint8)
    np.testing.assert_array_equal(crop[..., 0], expected)
    np.testing.assert_array_equal(center_crop_like_openvla(np.full((7, 9, 3), 99, np.uint8), 0.9, 4),
                                  np.full((4, 4, 3), 99, np.uint8))


def test_center_crop_is_an_option(openvla_checkpoint, tmp_path) -> None:
    assert not load_backbone(openvla_checkpoint).preprocess.center_crop
    assert load_backbone(openvla_checkpoint, center_crop=True).preprocess.center_crop
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "specvla_center_crop": True}))
    model = load_backbone(folder)
    image = observations(2, 1)[0][0]
    cropped = center_crop_like_openvla(image, 0.9, 56)
    torch.testing.assert_close(model.preprocess(image), load_backbone(openvla_checkpoint).preprocess(cropped))


def test_dataset_statistics_json_replaces_norm_stats(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    stats = {"libero_spatial": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}}}
    (folder / "dataset_statistics.json").write_text(json.dumps(stats))
    assert set(load_backbone(folder).norm_stats) == {"libero_spatial"}


# ----- bad checkpoints ----------------------------------------------------------------------------
def test_pickle_only_checkpoint_is_refused(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    for path in folder.glob("model*"):
        path.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(CheckpointError, match="only pickle weights .*pytorch_model.bin"):
        load_backbone(folder)


def test_missing_shard_is_named(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="incomplete.*model-00002-of-00002.safetensors"):
        load_backbone(folder)


def test_missing_tensor_is_named(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    shard = folder / index["weight_map"].pop("projector.fc3.bias")
    save_file({k: v for k, v in load_file(shard).items() if k != "projector.fc3.bias"}, shard)
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="lacks tensor 'projector.fc3.bias'"):
        load_backbone(folder)


def test_config_that_disagrees_with_the_weights(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["specvla_vision_overrides"][0]["embed_dim"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="has shape .* disagree"):
        load_backbone(folder)


def test_unknown_tensor_is_refused(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    save_file({"vision_backbone.featurizer.mystery": torch.zeros(2)}, folder / "extra.safetensors")
    index["weight_map"]["vision_backbone.featurizer.mystery"] = "extra.safetensors"
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not have, e.g. 'vision_backbone.featurizer.mystery'"):
        load_backbone(folder)


@pytest.mark.parametrize("edit, error, message", [
    (lambda c: {**c, "timm_model_ids": ["vit_large_patch14_clip_224.openai", c["timm_model_ids"][1]]}, ConfigError,
     "not supported"),
    (lambda c: {k: v for k, v in c.items() if k != "timm_model_ids"}, CheckpointError, "lacks"),
    (lambda c: {**c, "image_resize_strategy": "letterbox"}, ConfigError, "resize-naive"),
    (lambda c: {**c, "image_sizes": [56]}, ConfigError, "needs 2 entries"),
])
def test_bad_configs_raise_typed_errors(openvla_checkpoint, tmp_path, edit, error, message) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config)))
    with pytest.raises(error, match=message):
        load_backbone(folder)


def test_missing_tokenizer_is_named(openvla_checkpoint, tmp_path) -> None:
    folder = copy_checkpoint(openvla_checkpoint, tmp_path)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.model").write_bytes(b"sentencepiece")
    with pytest.raises(CheckpointError, match="tokenizer.json not found .*tokenizer.model"):
        load_backbone(folder)


def test_quantization_needs_cuda_and_bitsandbytes(openvla_checkpoint) -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        load_backbone(openvla_checkpoint, quantization="8bit")
    with pytest.raises(ConfigError, match="'none', '8bit' or '4bit'"):
        load_backbone(openvla_checkpoint, quantization="2bit")


# ----- against timm itself, where it imports (it needs torchvision: not on the CPU-torch machines) --
def _timm():
    try:
        import timm
    except Exception:  # ImportError, or torchvision failing to load its operators
        pytest.skip("timm (with a working torchvision) is not installed")
    return timm


@pytest.mark.parametrize("backbone", ["featurizer", "fused_featurizer"])
def test_featurizer_equals_timm_get_intermediate_layers(openvla_checkpoint, backbone) -> None:
    timm = _timm()
    model = load_backbone(openvla_checkpoint)
    config = json.loads((openvla_checkpoint / "config.json").read_text())
    index = 0 if backbone == "featurizer" else 1
    reference = timm.create_model(config["timm_model_ids"][index], pretrained=False, num_classes=0,
                                  img_size=config["image_sizes"][index], act_layer=None,
                                  **config["specvla_vision_overrides"][index]).eval()
    prefix = f"vision_backbone.{backbone}."
    tensors = {k[len(prefix):].replace(".scale_factor", ".gamma"): v
               for k, v in read_tensors(openvla_checkpoint).items() if k.startswith(prefix)}
    reference.load_state_dict(tensors)
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected = reference.get_intermediate_layers(pixels, n={len(reference.blocks) - 2})[0]
        torch.testing.assert_close(getattr(model.vision_backbone, backbone)(pixels), expected, atol=1e-5, rtol=1e-5)
