"""Decoders: plain greedy (the reference) and Spec-VLA speculative decoding.

Both return an ActionResult with the same statistics. One speculative step (see docs/decoding.md):
draft a tree below the newest target token (the root), verify root + tree in one target forward,
accept the longest path the acceptance rule allows, emit it plus the target's own next token
(the bonus), and keep only that path in both KV caches. With temporal drafting on, guesses from the
robot's recent actions join the tree as extra chains (core/temporal_draft.py); the scorer and the
acceptance rule do not change.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from specvla_ros.core.acceptance import accept_relaxed, longest_accepted_path
from specvla_ros.core.action_tokenizer import N_ACTION_DIMS, NormStats
from specvla_ros.core.backbone import Backbone, causal_mask, keep_cache_entries
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.draft_tree import SOURCE_TEMPORAL, DraftTree, build_tree
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.temporal_draft import TemporalHistory


@dataclass(frozen=True)
class DecodeStats:
    """Timings (ms) and work of one decode.

    target_forward_passes counts the prefill. accepted_per_step: drafted tokens accepted at each
    verify step (bonus excluded). mean_acceptance_length: tokens produced per verify step, bonus
    included (EAGLE's tau); 1.0 for autoregressive decoding. path_sources: per verify step, which
    proposer drafted the accepted path (bit flags: 1 draft head, 2 temporal branch, 3 both; 0 = no
    drafted token accepted). temporal_candidates: temporal branches offered (0 = off or no history).
    non_action_tokens: emitted tokens outside the action range (a text or padding id decodes to a
    range-limit bin: an action holding one must not move a robot). nonfinite_logits: some target
    logits this decode read were NaN or infinite (a broken checkpoint): its tokens mean nothing.
    """

    mode: str
    prefill_ms: float
    draft_ms: float
    verify_ms: float
    total_ms: float
    target_forward_passes: int
    accepted_per_step: tuple[int, ...]
    mean_acceptance_length: float
    relax_bins: tuple[int, ...]
    path_sources: tuple[int, ...] = ()
    temporal_candidates: int = 0
    non_action_tokens: int = 0
    nonfinite_logits: bool = False


@dataclass(frozen=True)
class ActionResult:
    action: np.ndarray          # (7,) un-normalized
    normalized: np.ndarray      # (7,) in [-1, 1]
    token_ids: tuple[int, ...]  # (7,)
    bins: tuple[int, ...]       # (7,)
    stats: DecodeStats


@dataclass(frozen=True)
class StepTrace:
    """One speculative step, for explanations and debugging: the tree, the target's token at every
    node (row 0 = the root), which drafted nodes the rule accepted, and the accepted path."""

    root: int
    tree: DraftTree
    target_tokens: torch.Tensor
    accepted: torch.Tensor
    path: list[int]
    bonus: int


class Stopwatch:
    """Milliseconds per phase: CUDA events on a CUDA device (read once, at the end), perf_counter on CPU.

    Events measure the GPU work between two points of the stream without synchronizing at every
    phase boundary, which would itself slow the decode down.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self._spans: list[tuple[str, object, object]] = []
        self._start = self.mark()

    def mark(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def _elapsed_ms(self, start: object, end: object) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return 1000.0 * (end - start)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.mark()
        yield
        self._spans.append((name, start, self.mark()))

    def finish(self) -> tuple[dict[str, float], float]:
        """(milliseconds per phase, total milliseconds since construction)."""
        end = self.mark()
        totals: dict[str, float] = {}
        for name, start, stop in self._spans:
            totals[name] = totals.get(name, 0.0) + self._elapsed_ms(start, stop)
        return totals, self._elapsed_ms(self._start, end)


class _DecoderBase:
    def __init__(self, backbone: Backbone, config: DecoderConfig) -> None:
        self.backbone = backbone
        self.config = config
        self.norm_stats = NormStats.from_checkpoint(backbone.norm_stats, config.unnorm_key)

    def _greedy(self, logits: torch.Tensor) -> torch.Tensor:
        """The target's own choice per row of logits: the argmax, among the action tokens only when
        config.action_tokens_only (a padded vocabulary's unused rows above them never count)."""
        if not self.config.action_tokens_only:
            return logits.argmax(dim=-1)
        first, end = self.backbone.action_tokenizer.first_action_token, self.backbone.action_tokenizer.vocab_size
        return logits[..., first:end].argmax(dim=-1) + first

    def _result(self, tokens: list[int], watch: Stopwatch, forwards: int, accepted: tuple[int, ...],
                finite: torch.Tensor, path_sources: tuple[int, ...] = (), temporal_candidates: int = 0
                ) -> ActionResult:
        """finite: a bool tensor, False when any target logits read were NaN or infinite."""
        tokenizer = self.backbone.action_tokenizer
        token_array = np.asarray(tokens[:N_ACTION_DIMS])
        normalized = tokenizer.decode(token_array)
        steps = len(accepted)
        totals, total_ms = watch.finish()
        stats = DecodeStats(
            mode=self.config.mode,
            prefill_ms=totals.get("prefill", 0.0),
            draft_ms=totals.get("draft", 0.0),
            verify_ms=totals.get("verify", 0.0),
            total_ms=total_ms,
            target_forward_passes=forwards,
            accepted_per_step=accepted,
            mean_acceptance_length=(sum(accepted) + steps) / steps if steps else 1.0,
            # autoregressive decoding accepts nothing, so no threshold applied
            relax_bins=self.config.relax_bins if self.config.mode == "speculative" else (0,) * N_ACTION_DIMS,
            path_sources=path_sources,
            temporal_candidates=temporal_candidates,
            non_action_tokens=sum(not tokenizer.is_action_token(int(t)) for t in token_array),
            nonfinite_logits=not bool(finite),
        )
        return ActionResult(action=self.norm_stats.unnormalize(normalized), normalized=normalized,
                            token_ids=tuple(int(t) for t in token_array),
                            bins=tuple(int(b) for b in tokenizer.token_to_bin(token_array)), stats=stats)


class AutoregressiveDecoder(_DecoderBase):
    """Greedy decoding, one target forward per token, with a KV cache: the reference and baseline."""

    def reset(self) -> None:
        """New episode: nothing to forget (the same interface as SpeculativeDecoder)."""

    @torch.inference_mode()
    def decode(self, image: np.ndarray, instruction: str, *, time_s: float | None = None,
               frame_age_s: float | None = None) -> ActionResult:
        """time_s and frame_age_s are accepted for interface parity and ignored."""
        model = self.backbone
        watch = Stopwatch(model.device)
        with watch.phase("prefill"):
            prefill = model.prefill(image, instruction)
            finite = torch.isfinite(prefill.logits_last).all()
            token = int(self._greedy(prefill.logits_last))
        tokens = [token]
        position = prefill.prefix_len
        one = causal_mask(1, model.device)
        with watch.phase("verify"):
            while len(tokens) < N_ACTION_DIMS:
                ids = torch.tensor([tokens[-1]], device=model.device)
                logits, _ = model.forward(prefill.cache, ids, torch.tensor([position], device=model.device), one)
                finite &= torch.isfinite(logits).all()
                tokens.append(int(self._greedy(logits[0])))
                position += 1
        return self._result(tokens, watch, forwards=N_ACTION_DIMS, accepted=(), finite=finite)


class SpeculativeDecoder(_DecoderBase):
    """Spec-VLA: EAGLE-2 draft tree (+ temporal branches) + one verifying forward per step + relaxed acceptance.

    draft_head may be None only when the config drafts from temporal branches alone.
    """

    def __init__(self, backbone: Backbone, draft_head: DraftHead | None, config: DecoderConfig) -> None:
        super().__init__(backbone, config)
        if draft_head is None and config.uses_draft_head:
            raise ConfigError("speculative decoding needs a draft head: set model.draft_path (or use "
                              "temporal_draft.draft_head false with temporal_draft.enabled true)")
        self.draft_head = draft_head if config.uses_draft_head else None
        self._relax = torch.tensor(config.relax_bins, device=backbone.device)
        self.temporal = (TemporalHistory(config.temporal, backbone.action_tokenizer)
                         if config.temporal.enabled else None)

    def reset(self) -> None:
        """New episode: forget the temporal history (the simulation harness calls this)."""
        if self.temporal is not None:
            self.temporal.reset("new episode")

    @torch.inference_mode()
    def decode(self, image: np.ndarray, instruction: str, trace: list[StepTrace] | None = None, *,
               time_s: float | None = None, frame_age_s: float | None = None) -> ActionResult:
        """Decode one action; pass a list as `trace` to receive a StepTrace per verify step.

        time_s: the camera frame's stamp and frame_age_s its age when decoding starts, both in
        seconds; only temporal drafting reads them (its reset rules and linear extrapolation).
        """
        if self.temporal is None:
            return self._decode(image, instruction, [], trace)
        self.temporal.begin(instruction, time_s, frame_age_s)
        result = self._decode(image, instruction, self.temporal.candidates(), trace)
        self.temporal.record(result.token_ids)
        return result

    def _decode(self, image: np.ndarray, instruction: str, candidates: list[tuple[int, ...]],
                trace: list[StepTrace] | None) -> ActionResult:
        model, head = self.backbone, self.draft_head
        device = model.device
        watch = Stopwatch(device)
        with watch.phase("prefill"):
            prefill = model.prefill(image, instruction)
            finite = torch.isfinite(prefill.logits_last).all()
            root = int(self._greedy(prefill.logits_last))
        tokens = [root]
        target_cache = prefill.cache
        root_position = prefill.prefix_len
        if head is not None:
            # Draft head catch-up pairs: (target feature i, input embedding i + 1), then the root's pair.
            pair_features = prefill.hidden
            pair_embeds = torch.cat([prefill.next_embeds, model.embed_tokens(torch.tensor([root], device=device))])
            pair_start = 0
            draft_cache = type(target_cache)()
        accepted_per_step: list[int] = []
        path_sources: list[int] = []
        forwards = 1

        while len(tokens) < N_ACTION_DIMS:
            # The bonus token supplies the last missing token, so drafting deeper than one less
            # saves no target forward; with one token missing the root is verified alone.
            max_depth = N_ACTION_DIMS - len(tokens) - 1
            committed = None
            with watch.phase("draft"):
                if max_depth > 0 and head is not None:
                    positions = torch.arange(pair_start, pair_start + pair_features.shape[0], device=device)
                    predicted = head(draft_cache, pair_embeds, pair_features, positions)
                    committed = draft_cache.get_seq_length()
                    tree = build_tree(head, draft_cache, predicted[-1], root_position, max_depth, self.config.tree,
                                      model.action_tokenizer)
                else:
                    tree = DraftTree.empty(device)
                if max_depth > 0 and candidates:
                    # Each guess's still-missing tokens, as one chain below the root.
                    done = len(tokens)
                    tree = tree.with_chains([list(guess[done:done + max_depth]) for guess in candidates],
                                            SOURCE_TEMPORAL)
            with watch.phase("verify"):
                ids = torch.cat([torch.tensor([root], device=device), tree.tokens])
                logits, hidden = model.forward(target_cache, ids, root_position + tree.position_offsets(),
                                               tree.attention_mask())
                forwards += 1
                finite &= torch.isfinite(logits).all()
                target_next = self._greedy(logits)
                parents = tree.parents.tolist()
                parent_rows = torch.tensor([p + 1 for p in parents], dtype=torch.long, device=device)
                dims = (len(tokens) - 1 + tree.depths).clamp(max=N_ACTION_DIMS - 1)
                accepted = accept_relaxed(tree.tokens, target_next[parent_rows], self._relax[dims],
                                          model.action_tokenizer)
                path = longest_accepted_path(parents, tree.depths.tolist(), accepted.tolist())
                rows = [0] + [node + 1 for node in path]
                model.commit(target_cache, root_position, torch.tensor(rows, dtype=torch.long, device=device))
            path_tokens = [int(tree.tokens[node]) for node in path]
            bonus = int(target_next[rows[-1]])
            if trace is not None:
                trace.append(StepTrace(root, tree, target_next, accepted, path, bonus))
            tokens += path_tokens + [bonus]
            accepted_per_step.append(len(path))
            # Proposers are closed under ancestors, so the deepest node names the whole path's source.
            path_sources.append(tree.source_flags()[path[-1]] if path else 0)
            if head is not None:
                if committed is not None:
                    keep_cache_entries(draft_cache, committed)
                # Next catch-up pairs: target features of root and path, each with the following token.
                # They come from the target's verify forward, so a path through temporal nodes (which the
                # draft head never ran) is caught up exactly like one through its own nodes.
                pair_features = hidden[rows]
                pair_embeds = model.embed_tokens(torch.tensor(path_tokens + [bonus], device=device))
                pair_start = root_position
            root, root_position = bonus, root_position + len(rows)

        return self._result(tokens, watch, forwards=forwards, accepted=tuple(accepted_per_step), finite=finite,
                            path_sources=tuple(path_sources), temporal_candidates=len(candidates))


def build_decoder(backbone: Backbone, draft_head: DraftHead | None, config: DecoderConfig
                  ) -> AutoregressiveDecoder | SpeculativeDecoder:
    if config.mode == "autoregressive":
        return AutoregressiveDecoder(backbone, config)
    if draft_head is None and config.uses_draft_head:
        raise ConfigError("speculative decoding needs a draft head: set model.draft_path (or use "
                          "decoder.mode autoregressive)")
    return SpeculativeDecoder(backbone, draft_head, config)
