"""Decoders: plain greedy (the reference) and Spec-VLA speculative decoding.

Both return an ActionResult with the same statistics. One speculative step (see docs/decoding.md):
draft a tree below the newest target token (the root), verify root + tree in one target forward,
accept the longest path the acceptance rule allows, emit it plus the target's own next token
(the bonus), and keep only that path in both KV caches. With temporal drafting on, guesses from the
robot's recent actions join the tree as extra chains (core/temporal_draft.py); the scorer and the
acceptance rule do not change.

Both run over static KV caches that live as long as the decoder, and read the host as little as
possible: AR once per decode, speculative once per verify step (the path, its tokens and the
bonus, in one read). Everything else stays on the device, so on a GPU the host never waits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS, NormStats
from specvla_ros.core.backbone import Backbone, PrefillOutput, cache_capacity, causal_mask
from specvla_ros.core.compilation import CompiledFunction, CompileMode
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.draft_tree import DraftTree, TreeDrafter, TreeLayout, cat_trees, chain_nodes
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.static_llama import StaticKVCache
from specvla_ros.core.stopwatch import Stopwatch
from specvla_ros.core.temporal_draft import TemporalHistory
from specvla_ros.core.verify import (
    READ_BONUS,
    READ_FINITE,
    READ_PATH,
    READ_PATH_LENGTH,
    READ_ROOT,
    PrefillVerifier,
    TreeVerifier,
)


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
    prefill_accepted: guessed tokens accepted inside the prefill forward (decoder.prefill_drafts);
    the prefill is then not counted in accepted_per_step, which holds the steps after it.
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
    prefill_accepted: int = 0


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
    max_depth: int  # the deepest a node could be accepted at this step


SOURCE_HEAD, SOURCE_TEMPORAL = 1, 2  # DecodeStats.path_sources bit flags
# Warm-up prompts of three lengths: a graph for a fixed length, then one with a symbolic length.
WARM_UP_INSTRUCTIONS = ("pick up the object", "push the cube to the left", "put the red cube on the green plate")


class _DecoderBase:
    """What both decoders share: the target's static cache (kept across decodes), greedy choice,
    compilation, warm-up and the result."""

    def __init__(self, backbone: Backbone, config: DecoderConfig) -> None:
        self.backbone = backbone
        self.config = config
        self.norm_stats = NormStats.from_checkpoint(backbone.norm_stats, config.unnorm_key)
        self._target_cache: StaticKVCache | None = None
        self._one_token = causal_mask(1, backbone.device)
        self.compile_mode: CompileMode = "off"
        self.start_notes: list[str] = []  # what loading decided (e.g. decoder.tree.auto), for the node's log

    def compile(self, mode: CompileMode) -> None:
        """torch.compile every step function this decoder runs ("off" = eager). Call warm_up next."""
        self.compile_mode = mode
        self.backbone.compile(mode)

    def greedy(self, logits: torch.Tensor) -> torch.Tensor:
        """The target's own choice per row of logits: the argmax, among the action tokens only when
        config.action_tokens_only (a padded vocabulary's unused rows above them never count)."""
        if not self.config.action_tokens_only:
            return logits.argmax(dim=-1)
        first, end = self.backbone.action_tokenizer.first_action_token, self.backbone.action_tokenizer.vocab_size
        return logits[..., first:end].argmax(dim=-1) + first

    def _prefill(self, image: np.ndarray, instruction: str, reserve: int) -> PrefillOutput:
        """Prefill into the decoder's own cache (a larger one replaces it when a prompt needs more room)."""
        prefill = self.backbone.prefill(image, instruction, self._target_cache, reserve)
        self._target_cache = prefill.cache
        return prefill

    def _one_step(self, cache: StaticKVCache, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token after the cache's entries (position = cache length, a 0-d tensor) -> its logits."""
        cos, sin = self.backbone.language.stack.rotary_tables(cache.keys)
        logits, _ = self.backbone.language.step(token.view(1), position.view(1), self._one_token, position,
                                                cos, sin, cache.keys, cache.values)
        return logits[0]

    def reset(self) -> None:
        """New episode (the simulation harness calls this); the speculative decoder forgets its history."""

    def decode(self, image: np.ndarray, instruction: str, **times: float | None) -> ActionResult:
        raise NotImplementedError

    @torch.inference_mode()
    def warm_up(self) -> None:
        """Decode synthetic frames so that every compiled graph exists before the first camera frame:
        prompts of three lengths (a graph for one length, then one with a symbolic length; see
        core/compilation.py), three frames each so that guesses from the history are verified too.
        Then forget them (reset)."""
        rng = np.random.default_rng(0)
        for episode, instruction in enumerate(WARM_UP_INSTRUCTIONS):
            for frame in range(3):
                image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
                self.decode(image, instruction, time_s=episode + 0.1 * frame)
            self.reset()

    def _result(self, tokens: list[int], watch: Stopwatch, forwards: int, accepted: tuple[int, ...],
                finite: bool, path_sources: tuple[int, ...] = (), temporal_candidates: int = 0,
                prefill_accepted: int = 0) -> ActionResult:
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
            nonfinite_logits=not finite,
            prefill_accepted=prefill_accepted,
        )
        return ActionResult(action=self.norm_stats.unnormalize(normalized), normalized=normalized,
                            token_ids=tuple(int(t) for t in token_array),
                            bins=tuple(int(b) for b in tokenizer.token_to_bin(token_array)), stats=stats)


class AutoregressiveDecoder(_DecoderBase):
    """Greedy decoding, one target forward per token, over the static cache: the reference and the
    fastest AR baseline (compiled when asked). It reads the host once, at the end."""

    @torch.inference_mode()
    def decode(self, image: np.ndarray, instruction: str, *, time_s: float | None = None,
               frame_age_s: float | None = None) -> ActionResult:
        """time_s and frame_age_s are accepted for interface parity and ignored."""
        watch = Stopwatch(self.backbone.device)
        with watch.phase("prefill"):
            prefill = self._prefill(image, instruction, reserve=N_ACTION_DIMS)
            tokens = [self.greedy(prefill.logits_last)]
        cache = prefill.cache
        positions = torch.arange(cache.length, cache.length + N_ACTION_DIMS, device=self.backbone.device)
        with watch.phase("verify"):
            for step in range(N_ACTION_DIMS - 1):
                logits = self._one_step(cache, tokens[-1], positions[step])
                tokens.append(self.greedy(logits))
        cache.length += N_ACTION_DIMS - 1
        # A broken checkpoint makes every logit NaN: the prefill's and the last step's stand for all.
        finite = torch.isfinite(prefill.logits_last).all() & torch.isfinite(logits).all()
        host = torch.stack(tokens + [finite.long()]).tolist()  # the decode's one host read
        return self._result(host[:N_ACTION_DIMS], watch, forwards=N_ACTION_DIMS, accepted=(), finite=bool(host[-1]))


@dataclass
class _Progress:
    """A speculative decode in flight: the root (device) and where it sits, what is decided (host),
    and the draft head's next catch-up pairs (device)."""

    cache: StaticKVCache
    root: torch.Tensor
    root_position: int
    finite_prefill: torch.Tensor
    emitted: int = 1            # action tokens decided, the root included
    finite: bool = True
    prefill_accepted: int = 0   # guessed tokens accepted inside the prefill (decoder.prefill_drafts)
    forwards: int = 1
    tokens: list[int] = field(default_factory=list)
    accepted_per_step: list[int] = field(default_factory=list)
    path_sources: list[int] = field(default_factory=list)
    pair_embeds: torch.Tensor | None = None
    pair_features: torch.Tensor | None = None
    pair_count: int = 0
    pair_position: int = 0
    draft_length: int = 0       # pairs committed in the draft head's cache


class SpeculativeDecoder(_DecoderBase):
    """Spec-VLA: EAGLE-2 draft tree (+ temporal branches) + one verifying forward per step + relaxed acceptance.

    draft_head may be None only when the config drafts from temporal branches alone. Each step is
    two functions of fixed shapes (core/draft_tree.TreeDrafter, core/verify.TreeVerifier), one graph
    each when compiled; the draft head keeps its own static cache across decodes.
    """

    def __init__(self, backbone: Backbone, draft_head: DraftHead | None, config: DecoderConfig) -> None:
        super().__init__(backbone, config)
        if draft_head is None and config.uses_draft_head:
            raise ConfigError("speculative decoding needs a draft head: set model.draft_path (or use "
                              "temporal_draft.draft_head false with temporal_draft.enabled true)")
        self.draft_head = draft_head if config.uses_draft_head else None
        self.temporal = (TemporalHistory(config.temporal, backbone.action_tokenizer)
                         if config.temporal.enabled else None)
        chains = self.temporal.slots if self.temporal is not None else 0
        self.layout = TreeLayout.of(config.tree, backbone.action_tokenizer, self.draft_head is not None, chains)
        # Guesses verified inside the prefill: one slot per guess, when there are guesses to make.
        self._prefill_slots = chains if config.prefill_drafts else 0
        self._relax = torch.tensor(config.relax_bins, device=backbone.device)
        self._draft_cache: StaticKVCache | None = None
        self.compile("off")

    def compile(self, mode: CompileMode) -> None:
        super().compile(mode)
        device_type = self.backbone.device.type
        language, tokenizer = self.backbone.language, self.backbone.action_tokenizer
        verifier = TreeVerifier(language, self.layout.max_depth, tokenizer, self._relax, self.greedy)
        self._verify = CompiledFunction(verifier.__call__, mode, device_type)
        self._prefill_verify = None
        if self._prefill_slots:
            prefill = PrefillVerifier(language, N_ACTION_DIMS - 1, tokenizer, self._relax, self.greedy)
            self._prefill_verify = CompiledFunction(prefill.__call__, mode, device_type)
        self._draft = None
        if self.draft_head is not None:
            drafter = TreeDrafter(self.draft_head, self.layout, self.config.tree, self.backbone.action_tokenizer)
            self._draft = CompiledFunction(drafter.__call__, mode, device_type)

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

    def _draft_cache_for(self, prefix_len: int) -> StaticKVCache:
        # Catch-up pairs (the prefix and up to 7 more first, later padded to max_depth + 1) and one tree's rows.
        needed = prefix_len + N_ACTION_DIMS + max(prefix_len + N_ACTION_DIMS, self.layout.max_depth + 1) \
            + self.layout.draft_rows
        if self._draft_cache is None or self._draft_cache.capacity < needed:
            self._draft_cache = self.draft_head.stack.new_cache(cache_capacity(needed), self.backbone.device,
                                                                self.backbone.dtype)
        return self._draft_cache

    def _decode(self, image: np.ndarray, instruction: str, candidates: list[tuple[int, ...]],
                trace: list[StepTrace] | None) -> ActionResult:
        watch = Stopwatch(self.backbone.device)
        with watch.phase("prefill"):
            if self._prefill_verify is not None and candidates:
                progress = self._fused_prefill(image, instruction, candidates)
            else:
                progress = self._plain_prefill(image, instruction)
        while progress.emitted < N_ACTION_DIMS:
            # The bonus token supplies the last missing token, so no node deeper than one less is
            # verified; with one token missing the root is verified alone.
            max_depth = N_ACTION_DIMS - progress.emitted - 1
            if max_depth == 0:
                with watch.phase("verify"):
                    self._verify_root_alone(progress, trace)
            else:
                self._step(progress, max_depth, candidates, watch, trace)
        return self._result(progress.tokens, watch, forwards=progress.forwards,
                            accepted=tuple(progress.accepted_per_step), finite=progress.finite,
                            path_sources=tuple(progress.path_sources), temporal_candidates=len(candidates),
                            prefill_accepted=progress.prefill_accepted)

    def _plain_prefill(self, image: np.ndarray, instruction: str) -> _Progress:
        """Prefill; the target's first token is the first root."""
        model = self.backbone
        prefill = self._prefill(image, instruction, reserve=N_ACTION_DIMS + self.layout.nodes + 1)
        root = self.greedy(prefill.logits_last)
        progress = _Progress(cache=prefill.cache, root=root, root_position=prefill.prefix_len,
                             finite_prefill=torch.isfinite(prefill.logits_last).all())
        if self.draft_head is not None:
            # Catch-up pairs: (target feature i, input embedding i + 1), the root's pair last.
            progress.pair_embeds = torch.cat([prefill.next_embeds, model.embed_tokens(root.view(1))])
            progress.pair_features = prefill.hidden
            progress.pair_count = prefill.prefix_len
            self._draft_cache_for(prefill.prefix_len)
        return progress

    def _fused_prefill(self, image: np.ndarray, instruction: str, candidates: list[tuple[int, ...]]) -> _Progress:
        """Prefill with the guesses appended and verified in the same forward (decoder.prefill_drafts)."""
        model, language = self.backbone, self.backbone.language
        device = model.device
        prompt_ids, patches = model.prompt_and_patches(image, instruction)
        prefix = language.prefix_embeds(prompt_ids, patches)
        count = prefix.shape[0]
        appended = self._prefill_slots * (N_ACTION_DIMS - 1)
        cache = self._target_cache = language.cache_for(
            count + max(appended, N_ACTION_DIMS + self.layout.nodes) + 1, self._target_cache)
        guesses = chain_nodes([list(guess[:N_ACTION_DIMS - 1]) for guess in candidates], self._prefill_slots, device,
                              length=N_ACTION_DIMS - 1)
        cos, sin = language.stack.rotary_tables(cache.keys)
        (read_tensor, bonus, pair_embeds, pair_features, _, _,
         prompt_hidden) = self._prefill_verify(prefix, guesses.tokens, guesses.parents, guesses.depths, guesses.valid,
                                               cos, sin, cache.keys, cache.values)
        read = read_tensor.tolist()  # the prefill's one host read
        path_length = read[READ_PATH_LENGTH]
        progress = _Progress(cache=cache, root=bonus, root_position=count + path_length,
                             finite_prefill=torch.ones((), dtype=torch.bool, device=device),
                             emitted=path_length + 1, finite=bool(read[READ_FINITE]), prefill_accepted=path_length)
        progress.tokens = read[READ_PATH:READ_PATH + path_length] + [read[READ_BONUS]]
        cache.length = count + path_length
        if self.draft_head is not None:
            # The prompt's pairs, then the root's and the accepted path's, all from this one forward.
            progress.pair_embeds = torch.cat([prefix[1:], pair_embeds])
            progress.pair_features = torch.cat([prompt_hidden[:-1], pair_features])
            progress.pair_count = count + path_length
            self._draft_cache_for(count)
        return progress

    def _verify_root_alone(self, progress: _Progress, trace: list[StepTrace] | None) -> None:
        """The last token: one target step on the root gives it (no tree can save a forward here)."""
        device = self.backbone.device
        logits = self._one_step(progress.cache, progress.root, torch.tensor(progress.root_position, device=device))
        bonus = self.greedy(logits)
        finite = torch.isfinite(logits).all() & progress.finite_prefill
        read = torch.stack([progress.root, bonus, finite.long()]).tolist()
        progress.cache.length += 1
        progress.forwards += 1
        if not progress.tokens:
            progress.tokens.append(read[0])
        progress.tokens.append(read[1])
        progress.finite = progress.finite and bool(read[2])
        progress.emitted += 1
        progress.accepted_per_step.append(0)
        progress.path_sources.append(0)
        if trace is not None:
            trace.append(StepTrace(read[0], DraftTree.empty_head(device), bonus.view(1),
                                   torch.zeros(0, dtype=torch.bool, device=device), [], read[1], 0))

    def _step(self, progress: _Progress, max_depth: int, candidates: list[tuple[int, ...]], watch: Stopwatch,
              trace: list[StepTrace] | None) -> None:
        """One speculative step: draft a tree below the root, verify it, commit the accepted path."""
        layout, head, device = self.layout, self.draft_head, self.backbone.device
        cache, emitted = progress.cache, progress.emitted
        counts = torch.tensor([progress.root_position, emitted, max_depth, progress.pair_count,
                               progress.pair_position, progress.draft_length], device=device)
        with watch.phase("draft"):
            tree = DraftTree.empty_head(device)
            if head is not None:
                draft_cache = self._draft_cache
                draft_cos, draft_sin = head.stack.rotary_tables(draft_cache.keys)
                tree = DraftTree(*self._draft(progress.pair_embeds, progress.pair_features, counts[3], counts[4],
                                              counts[5], counts[2], draft_cos, draft_sin, draft_cache.keys,
                                              draft_cache.values))
            if layout.chains:
                guesses = [list(guess[emitted:emitted + max_depth]) for guess in candidates]
                tree = cat_trees(tree, chain_nodes(guesses, layout.chains, device))
        with watch.phase("verify"):
            cos, sin = self.backbone.language.stack.rotary_tables(cache.keys)
            (read_tensor, bonus, next_embeds, next_features, target_tokens,
             accepted) = self._verify(progress.root, tree.tokens, tree.parents, tree.depths, tree.valid, counts[0],
                                      counts[1], progress.finite_prefill, cos, sin, cache.keys, cache.values)
            read = read_tensor.tolist()  # the step's one host read
        path_length = read[READ_PATH_LENGTH]
        path_tokens = read[READ_PATH:READ_PATH + path_length]
        path_nodes = read[READ_PATH + layout.max_depth:READ_PATH + layout.max_depth + path_length]
        cache.length = progress.root_position + path_length + 1
        if not progress.tokens:
            progress.tokens.append(read[READ_ROOT])
        progress.tokens += path_tokens + [read[READ_BONUS]]
        progress.finite = progress.finite and bool(read[READ_FINITE])
        progress.forwards += 1
        progress.accepted_per_step.append(path_length)
        progress.path_sources.append(self._path_source(path_nodes, path_tokens, candidates, emitted))
        if trace is not None:
            trace.append(StepTrace(read[READ_ROOT], tree, target_tokens, accepted, path_nodes, read[READ_BONUS],
                                   max_depth))
        if head is not None:
            progress.draft_length += progress.pair_count
            progress.pair_embeds, progress.pair_features = next_embeds, next_features
            progress.pair_count, progress.pair_position = path_length + 1, progress.root_position
        progress.root, progress.root_position = bonus, progress.root_position + path_length + 1
        progress.emitted += path_length + 1

    def _path_source(self, path_nodes: list[int], path_tokens: list[int], candidates: list[tuple[int, ...]],
                     emitted: int) -> int:
        """Who proposed the accepted path: the draft head when its deepest node is one of the head's,
        plus the temporal bit when a guess holds the same tokens (the head's nodes come first, so a
        path taken from a chain means the head did not draft it). 0 when nothing was accepted."""
        if not path_nodes:
            return 0
        flags = SOURCE_HEAD if path_nodes[-1] < self.layout.head_nodes else 0
        if any(list(guess[emitted:emitted + len(path_tokens)]) == path_tokens for guess in candidates):
            flags |= SOURCE_TEMPORAL
        return flags


def build_decoder(backbone: Backbone, draft_head: DraftHead | None, config: DecoderConfig
                  ) -> AutoregressiveDecoder | SpeculativeDecoder:
    if config.mode == "autoregressive":
        return AutoregressiveDecoder(backbone, config)
    if draft_head is None and config.uses_draft_head:
        raise ConfigError("speculative decoding needs a draft head: set model.draft_path (or use "
                          "decoder.mode autoregressive)")
    return SpeculativeDecoder(backbone, draft_head, config)
