"""Behaviour cloning of the tiny VLA on demonstrations: cross-entropy on the 7 action tokens.

Teacher-forced exactly as decoding reads the sequence: [BOS][patches][prompt][a1..a7], loss on
the positions that predict a1..a7. Action statistics come from the data (q01/q99, gripper raw)
and are stored with the checkpoint.

Two choices that made a CPU-sized run learn (docs/training.md has the measurements):
  * soft targets: a Gaussian over neighbouring bins (`label_sigma_bins`) instead of one-hot. Bins are
    ordered, so a near miss is nearly right; one-hot targets give it no credit and the model sits on
    the marginal mode for thousands of steps;
  * random image shifts (`shift_pixels`), the usual augmentation for behaviour cloning from pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.training.checkpointing import TrainingState, load_training_state
from specvla_ros.training.datasets import DemoFrames, normalize_actions


@dataclass
class VLATrainConfig:
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    label_sigma_bins: float = 1.5   # width of the soft target over neighbouring bins; 0 = one-hot
    shift_pixels: int = 2           # random image shift (model pixels) per sample; 0 = none
    input_noise_bins: float = 0.0   # std of Gaussian noise on the teacher-forced action-token inputs; 0 = exact
    state_loss_weight: float = 0.0  # weight of the auxiliary object-position regression (state_targets.py); 0 = off
    stop_at: int | None = None      # end the run at this step although the schedule spans `steps` (None: at `steps`)


@torch.no_grad()
def resize_images(model: TinyVLA, images: np.ndarray, chunk: int = 256) -> torch.Tensor:
    """All frames resized once to the model's input (B, 3, S, S) in [-1, 1], stored as float16."""
    out = []
    for start in range(0, len(images), chunk):
        out.append(torch.cat([model.preprocess(image) for image in images[start:start + chunk]]).half())
    return torch.cat(out)


def shift_images(pixels: torch.Tensor, shift: int, rng: np.random.Generator) -> torch.Tensor:
    """Each image moved by up to `shift` pixels in x and y, borders repeated (edge padding)."""
    if shift <= 0:
        return pixels
    size = pixels.shape[-1]
    padded = F.pad(pixels.float(), (shift,) * 4, mode="replicate")
    offsets = rng.integers(0, 2 * shift + 1, size=(len(pixels), 2))
    return torch.stack([padded[b, :, y:y + size, x:x + size] for b, (y, x) in enumerate(offsets)]).to(pixels.dtype)


def soft_targets(tokens: torch.Tensor, vocab_size: int, first_action: int, sigma: float) -> torch.Tensor:
    """(B, 7) token ids -> (B, 7, vocab) target distributions: a Gaussian over the action-token range
    centred on each id (neighbouring ids are neighbouring bins), or one-hot when sigma is 0."""
    if sigma <= 0:
        return F.one_hot(tokens, vocab_size).float()
    ids = torch.arange(first_action, vocab_size, device=tokens.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * ((ids - tokens[..., None].float()) / sigma) ** 2)
    targets = torch.zeros(*tokens.shape, vocab_size, device=tokens.device)
    targets[..., first_action:] = weights / weights.sum(-1, keepdim=True)
    return targets


def corrupt_action_inputs(tokens: np.ndarray, sigma: float, first_action: int, last_action: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Teacher-forced inputs a1..a7 moved by Gaussian noise of `sigma` bins, kept in the action range.

    Why: with exact inputs the model learns to read a later dimension off the earlier *true* tokens
    (they give away the phase of the motion), and at decoding time its own slightly-off dx / dy then
    derail dz (run 2b: dz exact teacher-forced, 8 mm off free-running). Noisy inputs make it look at
    the image instead. Targets stay exact.
    """
    if sigma <= 0:
        return tokens
    noisy = tokens + np.rint(rng.normal(0.0, sigma, size=tokens.shape)).astype(tokens.dtype)
    return np.clip(noisy, first_action, last_action)


def _bin_errors(log_probs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per action dimension, the batch's mean distance in bins between the argmax and the target's mode."""
    return (log_probs.argmax(-1) - targets.argmax(-1)).abs().float().mean(0).cpu().numpy()


def _batch_sequences(model: TinyVLA, pixels: torch.Tensor, instructions: list[str], tokens: np.ndarray
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings (B, T, H) right-padded, attention mask (B, T), and the index of each a_k's
    predicting position (B, 7). `tokens` are the action tokens fed as inputs (teacher forcing)."""
    device = model.device
    prompts = [torch.tensor(model.text_tokenizer.prompt_ids(text), device=device) for text in instructions]
    patches = model.image_tokens(pixels.to(model.dtype), prompts)  # (B, P, H)
    rows, predict_at = [], []
    for b, ids in enumerate(prompts):
        actions = torch.as_tensor(tokens[b], device=device)
        text = model.embed_tokens(ids)
        row = torch.cat([text[:1], patches[b], text[1:], model.embed_tokens(actions)])
        first_action = 1 + patches.shape[1] + len(ids) - 1               # index of a1 in the row
        predict_at.append(torch.arange(first_action - 1, first_action - 1 + N_ACTION_DIMS))
        rows.append(row)
    length = max(r.shape[0] for r in rows)
    embeds = torch.zeros(len(rows), length, rows[0].shape[1], device=device, dtype=rows[0].dtype)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        embeds[b, : row.shape[0]] = row
        mask[b, : row.shape[0]] = 1
    return embeds, mask, torch.stack(predict_at).to(device)


class StateHead:
    """Training scaffolding for the auxiliary loss: a linear read-out of object positions (state_targets.py)
    from the hidden state that predicts the first action token, with its own optimizer.

    It is not part of the model and is not saved: after `--resume` it starts again (a linear head
    relearns in a few hundred steps), which keeps checkpoints and the main optimizer's state unchanged.
    Inactive (zero loss, nothing to step) when the weight is 0 or the data has no state targets.
    """

    def __init__(self, model: TinyVLA, data: DemoFrames, config: VLATrainConfig) -> None:
        self.active = config.state_loss_weight > 0 and data.state_targets is not None
        self.weight = config.state_loss_weight
        self.errors: list[float] = []
        if not self.active:
            return
        assert data.state_targets is not None
        self.targets = torch.as_tensor(data.state_targets, device=model.device)
        self.head = torch.nn.Linear(model.hidden_size, self.targets.shape[1]).to(model.device)
        self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=config.lr, weight_decay=0.0)

    def loss(self, hidden: torch.Tensor, index: np.ndarray) -> torch.Tensor | float:
        if not self.active:
            return 0.0
        error = F.smooth_l1_loss(self.head(hidden.float()), self.targets[torch.as_tensor(index)])
        self.errors.append(error.item())
        return self.weight * error

    def zero_grad(self) -> None:
        if self.active:
            self.optimizer.zero_grad()

    def step(self, lr: float) -> None:
        if self.active:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()

    def summary(self, last: int) -> str:
        return f"  state loss {np.mean(self.errors[-last:]):.3f}" if self.errors else ""


def learning_rate(step: int, config: VLATrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero at `config.steps` (a function of the step: resumable)."""
    warmup = min(1.0, (step + 1) / config.warmup_steps)
    return config.lr * warmup * 0.5 * (1 + np.cos(np.pi * step / config.steps))


def train_vla(model: TinyVLA, data: DemoFrames, config: VLATrainConfig,
              log: Callable[[str], None] = print,
              checkpoint: Callable[[torch.optim.Optimizer, TrainingState], None] | None = None,
              resume_from: Path | None = None) -> list[float]:
    """Train in place; returns the loss of every step run so far (resumed ones included).

    The model's norm_stats must already describe `data`. `checkpoint(optimizer, state)` is called
    every `config.checkpoint_every` steps and at the end (in eval mode), e.g. to save. With
    `resume_from`, the optimizer state and step saved there by `save_training_state` are restored
    (the model's weights must already be loaded from the same folder).
    """
    torch.manual_seed(config.seed)
    tokens = model.action_tokenizer.encode(normalize_actions(data.actions, model.norm_stats))
    pixels = resize_images(model, data.images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = load_training_state(resume_from, optimizer) if resume_from is not None else TrainingState()
    rng = np.random.default_rng([config.seed, state.step])  # a resumed run draws fresh, seeded batches
    first_action = model.action_tokenizer.first_action_token
    last_action = model.vocab_size - 1
    state_head = StateHead(model, data, config)
    model.train()
    bin_errors: list[np.ndarray] = []
    started = time.monotonic()
    last_step = config.steps if config.stop_at is None else min(config.stop_at, config.steps)
    progress = tqdm(range(state.step, last_step), initial=state.step, total=last_step, desc="train-vla",
                    unit="step", disable=None)
    say = progress.write if not progress.disable else log
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        index = rng.choice(len(data), size=config.batch_size, replace=False)
        batch_pixels = shift_images(pixels[torch.as_tensor(index)], config.shift_pixels, rng)
        inputs = corrupt_action_inputs(tokens[index], config.input_noise_bins, first_action, last_action, rng)
        embeds, mask, predict_at = _batch_sequences(
            model, batch_pixels, [data.instructions[i] for i in index], inputs)
        hidden = model.llm.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        picked = hidden.gather(1, predict_at[..., None].expand(-1, -1, hidden.shape[-1]))
        log_probs = F.log_softmax(model.lm_head(picked).float(), dim=-1)
        targets = soft_targets(torch.as_tensor(tokens[index], device=model.device), model.vocab_size,
                               first_action, config.label_sigma_bins)
        loss = -(targets * log_probs).sum(-1).mean()
        optimizer.zero_grad()
        state_head.zero_grad()
        # The hidden state that predicts a1 has seen the image and the whole prompt: ask it where things are.
        (loss + state_head.loss(hidden[torch.arange(len(index)), predict_at[:, 0]], index)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state_head.step(learning_rate(step, config))
        state.losses.append(loss.item())
        state.step = step + 1
        bin_errors.append(_bin_errors(log_probs, targets))
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if state.step % config.log_every == 0:
            recent = np.mean(state.losses[-config.log_every:])
            errors = np.mean(bin_errors[-config.log_every:], axis=0)
            say(f"step {state.step}/{config.steps}  loss {recent:.3f}  |bin error| "
                + " ".join(f"{value:.0f}" for value in errors) + state_head.summary(config.log_every)
                + f"  ({time.monotonic() - started:.0f} s)")
        if checkpoint is not None and (state.step % config.checkpoint_every == 0 or state.step == last_step):
            model.eval()
            checkpoint(optimizer, state)
            model.train()
    model.eval()
    return state.losses
