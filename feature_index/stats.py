"""Corpus statistics of every SAE feature, computed in one streaming pass.

Over a prompt corpus, through the bundle's text encoder and SAE, at the ItD positions (every position
but 0; for encoders the pipeline runs with an attention mask, BERT-family, padding positions are
left out: they are not words; for CLIP the padding positions are kept: they are EOS tokens carrying
the prompt's meaning, and shown as special tokens in the examples). Prompts with no content token
(they tokenise to nothing) are skipped and counted. For each feature ``f``:

* ``fire_count[f]``: tokens where ``f`` fires (activation > 0); frequency = ``fire_count / n_tokens``;
* ``prompt_count[f]``: prompts where ``f`` fires at some position;
* ``act_max[f]``, ``act_sum[f]``: max and sum over firing tokens (mean = sum / fire_count);
* ``hist[f]``: histogram of the firing activations over fixed log-spaced bins (``hist_edges``;
  values below the first edge go to the first bin, above the last to the last bin);
* top-K examples: the K prompts with the highest peak activation of ``f`` (one example per prompt:
  its peak token), each as (value, prompt index, position). Ties go to the earlier prompt, and
  within a prompt to the earlier position.

A folder ``stats/<corpus hash>-<key>/`` holds one build::

    manifest.json            # written last: its presence means complete (fingerprint, corpus hash, sizes, settings)
    features.safetensors     # the arrays above (numpy dtypes; [n] or [n, bins] / [n, K])
    prompts.parquet          # prompt, tokens (up to the attended length), n_content, truncated
    top_tokens.parquet       # feature, token, word, count: the tokens/words where the top examples peak
    partial.safetensors      # only while a build is unfinished: accumulators + prompts done (resume point)

The key covers the SAE fingerprint, the corpus hash, the encoder and layer, the position rule and the
settings (K, bins), so a folder is rebuilt only when one of them changes. Activations can come straight
from the encoder or from an :class:`itd_core.activation_cache.ActivationCache` of the same prompts
(then fp16-rounded, as the cache stores them; padding positions the cache keeps for masked encoders
are dropped here, by the rule above).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from feature_index.layout import check_fingerprint, read_json, write_json
from feature_index.tokens import display_pieces, normalize_token, word_of_tokens
from itd_core.activation_cache import ActivationCache, encoder_identity
from itd_core.atomic import atomic_write_bytes
from itd_core.defaults import DEFAULT_TOP_K
from itd_core.distributed import distributed_state, rank_slice
from itd_core.encoders import TextEncoderAdapter
from itd_core.errors import ItdError
from itd_core.prompts import prompts_hash
from itd_core.sae import TopKSAE

STATS_FORMAT = "itd-feature-stats"
STATS_VERSION = 1
MANIFEST = "manifest.json"
FEATURES_FILE = "features.safetensors"
PROMPTS_FILE = "prompts.parquet"
TOP_TOKENS_FILE = "top_tokens.parquet"
PARTIAL_FILE = "partial.safetensors"
LOCK_FILE = ".lock"

HIST_BINS = 64
HIST_LOG10_RANGE = (-3.0, 3.0)  # bins cover 1e-3 .. 1e3, log-spaced
CONTEXT_TOKENS = 8

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: "tokenize", "statistics", "finalize" (done/total in prompts, or steps)."""


def hist_edges(bins: int = HIST_BINS, log10_range: tuple[float, float] = HIST_LOG10_RANGE) -> np.ndarray:
    return np.logspace(log10_range[0], log10_range[1], bins + 1).astype(np.float32)


def positions_rule(adapter: TextEncoderAdapter) -> str:
    return "attended-except-0" if adapter.uses_attention_mask else "all-except-0"


def token_chunk_for(n_latents: int) -> int:
    """Tokens per SAE encode call: keeps the dense ``[tokens, n_latents]`` pre-activation near 256 MiB."""
    return max(16, min(8192, 2**26 // n_latents))


# --------------------------------------------------------------------------- the accumulator


class StatsAccumulator:
    """Streaming per-feature statistics. Feed whole prompts at a time, in increasing prompt order."""

    ARRAYS = ("fire_count", "prompt_count", "act_sum", "act_max", "hist", "top_values", "top_prompt", "top_position")

    def __init__(self, n_latents: int, top_k: int = DEFAULT_TOP_K, bins: int = HIST_BINS, log10_range: tuple[float, float] = HIST_LOG10_RANGE):
        if top_k < 1:
            raise ItdError(f"top-K examples must be at least 1, got {top_k}")
        self.n, self.K, self.bins = n_latents, top_k, bins
        self.log_lo, self.log_width = log10_range[0], (log10_range[1] - log10_range[0]) / bins
        self.fire_count = torch.zeros(n_latents, dtype=torch.int64)
        self.prompt_count = torch.zeros(n_latents, dtype=torch.int64)
        self.act_sum = torch.zeros(n_latents, dtype=torch.float64)
        self.act_max = torch.zeros(n_latents, dtype=torch.float32)
        self.hist = torch.zeros(n_latents, bins, dtype=torch.int32)
        self.top_values = torch.zeros(n_latents, top_k, dtype=torch.float32)  # 0 = empty slot
        self.top_prompt = torch.full((n_latents, top_k), -1, dtype=torch.int32)
        self.top_position = torch.full((n_latents, top_k), -1, dtype=torch.int32)
        self.n_tokens = 0

    def update(self, values: torch.Tensor, indices: torch.Tensor, prompt_ids: torch.Tensor, positions: torch.Tensor) -> None:
        """Add ``N`` tokens. shape: values, indices ``[N, k]`` (the SAE's sparse code); prompt_ids, positions ``[N]``.
        The tokens of one prompt must all come in the same call."""
        self.n_tokens += int(values.shape[0])
        values = values.detach().to("cpu", torch.float32)
        indices = indices.detach().to("cpu", torch.int64)
        fires = values > 0
        if not bool(fires.any()):
            return
        token = torch.arange(values.shape[0]).unsqueeze(1).expand_as(indices)[fires]
        f, v = indices[fires], values[fires]
        self.fire_count.index_add_(0, f, torch.ones_like(f))
        self.act_sum.index_add_(0, f, v.double())
        self.act_max.scatter_reduce_(0, f, v, reduce="amax")
        bins = ((torch.log10(v) - self.log_lo) / self.log_width).floor_().clamp_(0, self.bins - 1).long()
        self.hist.view(-1).index_add_(0, f * self.bins + bins, torch.ones_like(bins, dtype=torch.int32))

        # One candidate per (prompt, feature): the prompt's peak (earliest position on ties).
        p = prompt_ids.to(torch.int64)[token].numpy()
        pos = positions.to(torch.int64)[token].numpy()
        fn, vn, tn = f.numpy(), v.numpy(), token.numpy()
        key = (p - p.min()) * self.n + fn
        order = np.lexsort((tn, -vn, key))
        first = np.ones(len(order), dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
        pick = order[first]
        pf, pv, pp, ppos = fn[pick], vn[pick], p[pick], pos[pick]
        self.prompt_count.index_add_(0, torch.from_numpy(pf), torch.ones(len(pf), dtype=torch.int64))
        self._merge_top(pf, pv, pp, ppos)

    def _merge_top(self, pf: np.ndarray, pv: np.ndarray, pp: np.ndarray, ppos: np.ndarray) -> None:
        K = self.K
        better = pv > self.top_values[:, K - 1].numpy()[pf]  # equal to the K-th: the earlier prompt keeps its place
        if not better.any():
            return
        pf, pv, pp, ppos = pf[better], pv[better], pp[better], ppos[better]
        order = np.lexsort((pp, -pv, pf))  # feature, value desc, prompt
        pf, pv, pp, ppos = pf[order], pv[order], pp[order], ppos[order]
        starts = np.ones(len(pf), dtype=bool)
        starts[1:] = pf[1:] != pf[:-1]
        group = np.cumsum(starts) - 1
        rank = np.arange(len(pf)) - np.flatnonzero(starts)[group]
        keep = rank < K
        features = torch.from_numpy(pf[starts])
        cand_v = torch.full((len(features), K), -np.inf, dtype=torch.float32)
        cand_p = torch.full((len(features), K), -1, dtype=torch.int32)
        cand_pos = torch.full((len(features), K), -1, dtype=torch.int32)
        g, r = torch.from_numpy(group[keep]), torch.from_numpy(rank[keep])
        cand_v[g, r] = torch.from_numpy(pv[keep].astype(np.float32))
        cand_p[g, r] = torch.from_numpy(pp[keep].astype(np.int32))
        cand_pos[g, r] = torch.from_numpy(ppos[keep].astype(np.int32))
        top = self._best_k((self.top_values[features], self.top_prompt[features], self.top_position[features]), (cand_v, cand_p, cand_pos))
        self.top_values[features], self.top_prompt[features], self.top_position[features] = top

    def _best_k(self, earlier: tuple[torch.Tensor, ...], later: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The K best (values, prompts, positions) per row of two lists, each sorted by value with the earlier prompt
        first on ties and every prompt of ``later`` after those of ``earlier``: a stable sort of the concatenation keeps
        ties in prompt order."""
        values, prompts, positions = (torch.cat(pair, 1) for pair in zip(earlier, later))
        sorted_values, take = torch.sort(values, dim=1, descending=True, stable=True)
        take = take[:, :self.K]
        return sorted_values[:, :self.K].contiguous(), torch.gather(prompts, 1, take), torch.gather(positions, 1, take)

    def merge_later(self, later: "StatsAccumulator") -> None:
        """Add the statistics of ``later``, built over prompts that all come after this one's (another process's
        slice). Exact for counts, histograms, maxima and top-K examples (ties still go to the earlier prompt); the
        float64 activation sums differ from a one-process pass only by the order of additions (relative ~1e-16)."""
        if (later.n, later.K, later.bins) != (self.n, self.K, self.bins):
            raise ItdError(f"cannot merge statistics of {later.n} features / top-{later.K} / {later.bins} bins into {self.n} / top-{self.K} / {self.bins}")
        self.n_tokens += later.n_tokens
        self.fire_count += later.fire_count
        self.prompt_count += later.prompt_count
        self.act_sum += later.act_sum
        self.act_max = torch.maximum(self.act_max, later.act_max)
        self.hist += later.hist
        self.top_values, self.top_prompt, self.top_position = self._best_k(
            (self.top_values, self.top_prompt, self.top_position), (later.top_values, later.top_prompt, later.top_position))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).numpy() for name in self.ARRAYS}

    def load_arrays(self, arrays: dict[str, np.ndarray], n_tokens: int) -> None:
        for name in self.ARRAYS:
            current = getattr(self, name)
            value = torch.from_numpy(np.ascontiguousarray(arrays[name]))
            if value.shape != current.shape or value.dtype != current.dtype:
                raise ItdError(f"checkpoint array {name} has shape {tuple(value.shape)}/{value.dtype}, expected {tuple(current.shape)}/{current.dtype}")
            setattr(self, name, value.clone())
        self.n_tokens = n_tokens


# --------------------------------------------------------------------------- the corpus's tokens


@dataclass
class TokenTable:
    """Every corpus prompt's tokens up to its attended length (BOS ... EOS/SEP), and its content length."""

    prompts: list[str]
    tokens: list[list[str]]
    n_content: list[int]
    truncated: list[bool]

    @property
    def empty(self) -> list[int]:
        return [i for i, n in enumerate(self.n_content) if n == 0]


def tokenize_corpus(adapter: TextEncoderAdapter, prompts: Sequence[str], progress: Progress | None = None, chunk: int = 512) -> TokenTable:
    tokens, n_content, truncated = [], [], []
    for start in range(0, len(prompts), chunk):
        batch = adapter.tokenize(prompts[start:start + chunk])
        lengths = batch.attention_mask.sum(1).tolist()
        tokens += [row[:length] for row, length in zip(batch.tokens, lengths)]
        n_content += batch.content_lengths()
        truncated += batch.truncated
        if progress:
            progress("tokenize", min(start + chunk, len(prompts)), len(prompts))
    return TokenTable(list(prompts), tokens, n_content, truncated)


def _write_prompts_table(path: Path, table: TokenTable) -> None:
    import pyarrow as pa

    arrow = pa.table({
        "prompt": pa.array(table.prompts, pa.string()),
        "tokens": pa.array(table.tokens, pa.list_(pa.string())),
        "n_content": pa.array(table.n_content, pa.int32()),
        "truncated": pa.array(table.truncated, pa.bool_()),
    })
    _write_parquet_atomic(arrow, path)


def _write_parquet_atomic(arrow, path: Path) -> None:
    import pyarrow.parquet as pq

    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(arrow, temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _read_prompts_table(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a truncated or foreign file
        raise ItdError(f"cannot read {path} ({type(error).__name__}: {error}); the statistics folder is damaged: delete {path.parent} and rebuild") from None


# --------------------------------------------------------------------------- activation sources


@dataclass
class _Block:
    """Activations of whole prompts. shape: activations ``[N, d]``; prompt_ids, positions ``[N]``."""

    activations: torch.Tensor
    prompt_ids: torch.Tensor
    positions: torch.Tensor
    prompts_done: int  # every prompt below this index has been fed once this block is in


def _encoder_blocks(adapter: TextEncoderAdapter, prompts: Sequence[str], start: int, end: int, batch_size: int, skip: np.ndarray) -> Iterator[_Block]:
    masked = adapter.uses_attention_mask
    for offset, (batch, activations) in enumerate(adapter.iter_capture(list(prompts[start:end]), batch_size)):
        first = start + offset * batch_size
        keep = torch.ones_like(batch.input_ids, dtype=torch.bool)
        keep[:, 0] = False
        if masked:
            keep &= batch.attention_mask.bool()
        keep &= ~torch.from_numpy(skip[first:first + len(batch)]).unsqueeze(1)
        rows, cols = keep.nonzero(as_tuple=True)
        yield _Block(activations[rows.to(activations.device), cols.to(activations.device)], rows + first, cols, first + len(batch))


def _cache_blocks(cache: ActivationCache, start: int, end: int, batch_tokens: int, skip: np.ndarray, lengths: np.ndarray | None) -> Iterator[_Block]:
    """Blocks of prompts ``[start, end)`` from a cache; ``lengths`` (attended length per prompt) drops padding
    positions the cache may hold."""
    for index, info in enumerate(cache.shards):
        if info.prompt_end <= start or info.prompt_start >= end:
            continue
        shard = cache.load_shard(index)
        prompt_ids = shard.prompt_index.to(torch.int64)
        keep = (prompt_ids >= start) & (prompt_ids < end) & ~torch.from_numpy(skip)[prompt_ids]
        if lengths is not None:
            keep &= shard.position.to(torch.int64) < torch.from_numpy(lengths)[prompt_ids]
        activations, prompt_ids, positions = shard.activations[keep], prompt_ids[keep], shard.position[keep].to(torch.int64)
        n, shard_done = len(prompt_ids), min(info.prompt_end, end)
        if n == 0:
            yield _Block(activations, prompt_ids, positions, shard_done)
            continue
        # cut at prompt boundaries, about batch_tokens tokens a block
        changes = (torch.nonzero(prompt_ids[1:] != prompt_ids[:-1]).flatten() + 1).tolist()
        begin = 0
        for cut in [*changes, n]:
            if cut - begin >= batch_tokens or cut == n:
                done = shard_done if cut == n else int(prompt_ids[cut])
                yield _Block(activations[begin:cut], prompt_ids[begin:cut], positions[begin:cut], done)
                begin = cut


@torch.no_grad()
def _encode_block(sae: TopKSAE, block: _Block) -> tuple[torch.Tensor, torch.Tensor]:
    chunk = token_chunk_for(sae.n_latents)
    values, indices = [], []
    device, dtype = sae.W_enc.device, sae.W_enc.dtype
    for begin in range(0, block.activations.shape[0], chunk):
        code = sae.encode(block.activations[begin:begin + chunk].to(device=device, dtype=dtype))
        values.append(code.values.float().cpu())
        indices.append(code.indices.cpu())
    if not values:
        return torch.zeros(0, sae.k), torch.zeros(0, sae.k, dtype=torch.int64)
    return torch.cat(values), torch.cat(indices)


# --------------------------------------------------------------------------- the build


class BuildReport(BaseModel):
    folder: str
    key: str
    reused: bool = Field(description="complete statistics were already on disk: nothing was recomputed")
    resumed_from: int = Field(0, description="prompts already done by an interrupted build")
    n_prompts: int
    n_empty_prompts: int
    n_tokens: int
    seconds: float = Field(description="the whole build: tokenising, the streaming pass, writing")
    pass_seconds: float | None = Field(None, description="the streaming pass alone (encoder + SAE + accumulation)")
    tokens_per_second: float | None = Field(description="tokens of this run / pass_seconds")
    warnings: list[str] = Field(default_factory=list)


def stats_key(fingerprint: str, corpus_hash: str, n_prompts: int, identity: dict, rule: str, top_k: int, bins: int, log10_range) -> str:
    payload = json.dumps([STATS_VERSION, fingerprint, corpus_hash, n_prompts, identity, rule, top_k, bins, list(log10_range)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@contextmanager
def _build_lock(folder: Path, rank: int | None = None):
    """Held while building; one per process of a data-parallel build (``rank``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / (LOCK_FILE if rank is None else f"{LOCK_FILE}-r{rank:03d}"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ItdError(f"another process is building the statistics in {folder}; wait for it to finish (it resumes if it was killed)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save

    atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata))


def _load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            return {name: handle.get_tensor(name) for name in handle.keys()}, metadata
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error type for truncated/corrupt files
        raise ItdError(f"cannot read {path} ({type(error).__name__}: {error}); the file is truncated or damaged: delete it and rebuild") from None


def build_statistics(
    adapter: TextEncoderAdapter,
    sae: TopKSAE,
    fingerprint: str,
    prompts: Sequence[str],
    stats_root: Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = 32,
    activation_cache: ActivationCache | str | Path | None = None,
    progress: Progress | None = None,
    checkpoint_seconds: float = 120.0,
    stop_after_prompts: int | None = None,
) -> BuildReport:
    """Compute (or reuse, or resume) the statistics of ``prompts`` under ``stats_root/<hash>-<key>/``.

    ``stop_after_prompts`` stops early after about that many prompts, leaving a resumable checkpoint
    (for tests and for splitting a long build)."""
    prompts = [str(p) for p in prompts]
    if not prompts:
        raise ItdError("the corpus is empty: give at least one prompt")
    corpus_hash = prompts_hash(prompts)
    identity = encoder_identity(adapter)
    rule = positions_rule(adapter)
    key = stats_key(fingerprint, corpus_hash, len(prompts), identity, rule, top_k, HIST_BINS, HIST_LOG10_RANGE)
    folder = Path(stats_root) / f"{corpus_hash}-{key}"
    if (folder / MANIFEST).is_file():
        manifest = read_json(folder / MANIFEST, "statistics manifest")
        if manifest.get("key") == key:
            return BuildReport(folder=str(folder), key=key, reused=True, n_prompts=manifest["n_prompts"], n_empty_prompts=manifest["n_empty_prompts"],
                               n_tokens=manifest["n_tokens"], seconds=0.0, tokens_per_second=None)
    cache = None
    if activation_cache is not None:
        cache = activation_cache if isinstance(activation_cache, ActivationCache) else ActivationCache.open(activation_cache)
        if cache.prompts_hash != corpus_hash or cache.n_prompts != len(prompts):
            raise ItdError(f"the activation cache {cache.root} holds other prompts (hash {cache.prompts_hash}, {cache.n_prompts} prompts) "
                           f"than this corpus (hash {corpus_hash}, {len(prompts)} prompts)")
        if cache.manifest.get("encoder") != identity or cache.manifest.get("positions") not in (rule, "all-except-0"):
            raise ItdError(f"the activation cache {cache.root} was built from another encoder or layer ({cache.layer!r}) than this bundle's ({adapter.layer_name!r})")
        if cache.d_model != sae.d_model:
            raise ItdError(f"the activation cache {cache.root} has width {cache.d_model}, the SAE expects {sae.d_model}")

    state = distributed_state()
    rank, world_size = state.process_index, state.num_processes
    lo, hi = rank_slice(len(prompts), rank, world_size)
    with _build_lock(folder, rank if world_size > 1 else None):
        started = time.perf_counter()
        warnings: list[str] = []
        partial = folder / (PARTIAL_FILE if world_size == 1 else f"partial-r{rank:03d}-of{world_size:03d}.safetensors")
        prompts_path = folder / PROMPTS_FILE
        if prompts_path.is_file() and partial.is_file():
            arrow = _read_prompts_table(prompts_path)
            table = TokenTable(arrow.column("prompt").to_pylist(), arrow.column("tokens").to_pylist(),
                               arrow.column("n_content").to_pylist(), arrow.column("truncated").to_pylist())
        else:
            table = tokenize_corpus(adapter, prompts, progress)
            if state.is_main_process:
                _write_prompts_table(prompts_path, table)
        empty = table.empty
        if len(empty) == len(prompts):
            if state.is_main_process:
                shutil.rmtree(folder, ignore_errors=True)
            raise ItdError(f"none of the {len(prompts)} corpus prompts has a token once tokenised (first: {prompts[0][:60]!r}); give prompts with words in them")
        if empty:
            warnings.append(f"{len(empty)} prompt(s) tokenise to nothing and were skipped (first: #{empty[0]} {prompts[empty[0]][:60]!r})")
        truncated = sum(table.truncated)
        if truncated:
            warnings.append(f"{truncated} prompt(s) exceed {adapter.max_length} tokens and were truncated, as the pipeline does")
        skip = np.zeros(len(prompts), dtype=bool)
        skip[empty] = True

        accumulator = StatsAccumulator(sae.n_latents, top_k)
        start = lo
        if partial.is_file():
            try:
                arrays, meta = _load_arrays(partial)
                if meta.get("key") == key:
                    accumulator.load_arrays(arrays, int(meta["n_tokens"]))
                    start = int(meta["prompts_done"])
            except ItdError as error:
                warnings.append(f"ignored an unreadable checkpoint ({error}); starting over")
                start = lo
                accumulator = StatsAccumulator(sae.n_latents, top_k)
        resumed_from = start - lo
        tokens_at_start = accumulator.n_tokens

        def checkpoint(done: int) -> None:
            _save_arrays(partial, accumulator.arrays(), {"key": key, "prompts_done": str(done), "n_tokens": str(accumulator.n_tokens)})

        if cache is not None:
            lengths = np.array([len(t) for t in table.tokens], dtype=np.int64) if adapter.uses_attention_mask else None
            blocks = _cache_blocks(cache, start, hi, batch_size * max(1, adapter.max_length - 1), skip, lengths)
        else:
            blocks = _encoder_blocks(adapter, prompts, start, hi, batch_size, skip)
        last_checkpoint = pass_started = time.perf_counter()
        done = start
        for block in blocks:
            values, indices = _encode_block(sae, block)
            accumulator.update(values, indices, block.prompt_ids, block.positions)
            done = block.prompts_done
            if progress:
                progress("statistics", done - lo, hi - lo)
            if stop_after_prompts is not None and done - start >= stop_after_prompts and done < hi:
                checkpoint(done)
                raise ItdError(f"stopped after {done - lo} of {hi - lo} prompts as asked; rerun to resume")
            if time.perf_counter() - last_checkpoint > checkpoint_seconds and done < hi:
                checkpoint(done)
                last_checkpoint = time.perf_counter()
        if done < hi:
            raise ItdError(f"the activation source ended after {done} of {hi} prompts")
        pass_seconds = time.perf_counter() - pass_started
        new_tokens = accumulator.n_tokens - tokens_at_start
        if world_size > 1:
            # Each process leaves its slice's statistics; the main process merges them in rank order.
            _save_arrays(_slice_file(folder, rank, world_size), accumulator.arrays(),
                         {"key": key, "n_tokens": str(accumulator.n_tokens), "new_tokens": str(new_tokens), "pass_seconds": repr(pass_seconds)})
            state.wait_for_everyone()
            if state.is_main_process:
                accumulator, new_tokens, pass_seconds = _merge_slices(folder, key, world_size, sae.n_latents, top_k)
        if state.is_main_process:
            if progress:
                progress("finalize", 0, 2)
            arrays = accumulator.arrays()
            _save_arrays(folder / FEATURES_FILE, {**arrays, "hist_edges": hist_edges()}, {"key": key, "fingerprint": fingerprint})
            _write_top_tokens(folder / TOP_TOKENS_FILE, arrays["top_prompt"], arrays["top_position"], table, adapter)
            if progress:
                progress("finalize", 1, 2)
            manifest = {
                "format": STATS_FORMAT, "version": STATS_VERSION, "key": key, "fingerprint": fingerprint,
                "n_latents": sae.n_latents, "d_model": sae.d_model, "k": sae.k,
                "corpus_hash": corpus_hash, "n_prompts": len(prompts), "n_empty_prompts": len(empty), "n_truncated_prompts": truncated,
                "n_tokens": accumulator.n_tokens, "top_k": top_k,
                "histogram": {"bins": HIST_BINS, "log10_range": list(HIST_LOG10_RANGE)},
                "positions": rule, "layer": adapter.layer_name, "encoder": identity,
                "pad_token": adapter.tokenizer.pad_token, "family": adapter.family,
                "special_tokens": sorted(set(adapter.tokenizer.all_special_tokens)),
                "source": f"activation-cache:{cache.root}" if cache is not None else "encoder",
                "processes": world_size,
                "seconds": None, "pass_seconds": round(pass_seconds, 3), "resumed_from": resumed_from,
                "tokens_per_second": round(new_tokens / pass_seconds, 1) if pass_seconds > 0 else None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            manifest["seconds"] = round(time.perf_counter() - started, 3)
            write_json(folder / MANIFEST, manifest)
            if progress:
                progress("finalize", 2, 2)
            for slice_rank in range(world_size if world_size > 1 else 0):
                _slice_file(folder, slice_rank, world_size).unlink(missing_ok=True)
        state.wait_for_everyone()
        partial.unlink(missing_ok=True)
    manifest = read_json(folder / MANIFEST, "statistics manifest")
    return BuildReport(folder=str(folder), key=key, reused=False, resumed_from=resumed_from, n_prompts=len(prompts), n_empty_prompts=len(empty),
                       n_tokens=manifest["n_tokens"], seconds=manifest["seconds"], pass_seconds=manifest["pass_seconds"],
                       tokens_per_second=manifest["tokens_per_second"], warnings=warnings)


def _slice_file(folder: Path, rank: int, world_size: int) -> Path:
    return folder / f"slice-r{rank:03d}-of{world_size:03d}.safetensors"


def _merge_slices(folder: Path, key: str, world_size: int, n_latents: int, top_k: int) -> tuple[StatsAccumulator, int, float]:
    """The statistics of every process's slice, merged in rank order; the new tokens of this run; its longest pass."""
    merged, new_tokens, pass_seconds = None, 0, 0.0
    for rank in range(world_size):
        arrays, meta = _load_arrays(_slice_file(folder, rank, world_size))
        if meta.get("key") != key:
            raise ItdError(f"{_slice_file(folder, rank, world_size)} belongs to another build; delete it and rerun")
        part = StatsAccumulator(n_latents, top_k)
        part.load_arrays(arrays, int(meta["n_tokens"]))
        new_tokens += int(meta["new_tokens"])
        pass_seconds = max(pass_seconds, float(meta["pass_seconds"]))
        if merged is None:
            merged = part
        else:
            merged.merge_later(part)
    return merged, new_tokens, pass_seconds


def _token_lookup(table: TokenTable, family: str, pad_token: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat arrays of every stored token's display form and word; offsets and lengths per prompt."""
    flat_tokens, flat_words, offsets, lengths = [], [], [], []
    for tokens in table.tokens:
        offsets.append(len(flat_tokens))
        lengths.append(len(tokens))
        flat_tokens += [normalize_token(t) for t in tokens]
        flat_words += word_of_tokens(tokens, family)
    flat_tokens.append(normalize_token(pad_token or ""))
    flat_words.append(normalize_token(pad_token or ""))
    return np.array(flat_tokens, dtype=object), np.array(flat_words, dtype=object), np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64)


def _write_top_tokens(path: Path, top_prompt: np.ndarray, top_position: np.ndarray, table: TokenTable, adapter: TextEncoderAdapter) -> None:
    import pandas as pd
    import pyarrow as pa

    flat_tokens, flat_words, offsets, lengths = _token_lookup(table, adapter.family, adapter.tokenizer.pad_token)
    valid = top_prompt >= 0
    features = np.nonzero(valid)[0].astype(np.int32)
    p = top_prompt[valid].astype(np.int64)
    pos = top_position[valid].astype(np.int64)
    where = np.where(pos < lengths[p], offsets[p] + pos, len(flat_tokens) - 1)
    frame = pd.DataFrame({"feature": features, "token": flat_tokens[where], "word": flat_words[where]})
    counts = frame.groupby(["feature", "token", "word"], sort=True).size().reset_index(name="count")
    counts = counts.sort_values(["feature", "count"], ascending=[True, False], kind="stable")
    arrow = pa.table({
        "feature": pa.array(counts["feature"].to_numpy(np.int32)),
        "token": pa.array(counts["token"].astype(str).tolist(), pa.string()).dictionary_encode(),
        "word": pa.array(counts["word"].astype(str).tolist(), pa.string()).dictionary_encode(),
        "count": pa.array(counts["count"].to_numpy(np.int32)),
    })
    _write_parquet_atomic(arrow, path)


# --------------------------------------------------------------------------- reading


class Example(BaseModel):
    """One top-activating example of a feature: a corpus prompt and the token where the feature peaks."""

    rank: int
    value: float
    prompt_index: int
    position: int = Field(description="token position in the pipeline's padded sequence")
    prompt: str
    token: str = Field(description="the peak token as the tokenizer writes it")
    is_special: bool = Field(description="BOS/EOS/padding (CLIP's padding positions carry the prompt's meaning)")
    pieces: list[str] = Field(description="the prompt's tokens for display (with leading spaces at word starts); padding folded into one EOS")
    peak: int = Field(description="index into pieces of the peak token")
    left: str = Field(description=f"up to {CONTEXT_TOKENS} tokens of text before the peak token")
    right: str = Field(description=f"up to {CONTEXT_TOKENS} tokens of text after it")


class FeatureStatistics(BaseModel):
    id: int
    n_tokens: int = Field(description="ItD-position tokens in the corpus")
    n_prompts: int
    fire_count: int
    frequency: float = Field(description="fire_count / n_tokens")
    prompt_count: int
    prompt_frequency: float = Field(description="share of corpus prompts where the feature fires somewhere")
    max_activation: float
    mean_activation: float | None = Field(description="mean over the tokens where it fires (None if it never fires)")
    histogram_edges: list[float]
    histogram_counts: list[int]
    top_tokens: list[tuple[str, int]] = Field(default_factory=list, description="peak tokens of the top examples, with counts")

    @property
    def dead(self) -> bool:
        return self.fire_count == 0


@dataclass
class CorpusStats:
    """A complete statistics folder, loaded (arrays in memory, prompt table as Arrow)."""

    folder: Path
    manifest: dict
    arrays: dict[str, np.ndarray]
    _prompts: object = None
    _top_tokens: object = None
    _specials: set = field(default_factory=set)

    @classmethod
    def open(cls, folder: str | Path, fingerprint: str, n_latents: int) -> "CorpusStats":
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise ItdError(f"no complete statistics in {folder} (no {MANIFEST}); run `itd index build` (an interrupted build resumes)")
        manifest = read_json(folder / MANIFEST, "statistics manifest")
        if manifest.get("format") != STATS_FORMAT or manifest.get("version") != STATS_VERSION:
            raise ItdError(f"{folder} holds statistics of format {manifest.get('format')!r} v{manifest.get('version')!r}; this tool reads {STATS_FORMAT} v{STATS_VERSION}")
        check_fingerprint(manifest.get("fingerprint"), fingerprint, "the corpus statistics", folder)
        arrays, meta = _load_arrays(folder / FEATURES_FILE)
        check_fingerprint(meta.get("fingerprint"), fingerprint, "the statistics arrays", folder)
        for name in StatsAccumulator.ARRAYS:
            if name not in arrays or arrays[name].shape[0] != n_latents:
                raise ItdError(f"{folder / FEATURES_FILE} lacks {name} for {n_latents} features; delete {folder} and rebuild")
        stats = cls(folder, manifest, arrays)
        stats._specials = set(manifest.get("special_tokens", []))
        return stats

    # facts
    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def n_prompts(self) -> int:
        return int(self.manifest["n_prompts"])

    @property
    def top_k(self) -> int:
        return int(self.manifest["top_k"])

    def frequencies(self) -> np.ndarray:
        """Firing frequency per feature. shape ``[n]``"""
        return self.arrays["fire_count"] / max(1, self.n_tokens)

    @property
    def prompts(self):
        if self._prompts is None:
            self._prompts = _read_prompts_table(self.folder / PROMPTS_FILE)
        return self._prompts

    @property
    def top_token_table(self):
        """Arrow table (feature, token, word, count), sorted by feature then count."""
        if self._top_tokens is None:
            import pyarrow.parquet as pq

            try:
                self._top_tokens = pq.read_table(self.folder / TOP_TOKENS_FILE)
            except Exception as error:  # noqa: BLE001 - a third-party reader's errors, translated into ItdError below
                raise ItdError(f"cannot read {self.folder / TOP_TOKENS_FILE} ({type(error).__name__}); delete {self.folder} and rebuild") from None
        return self._top_tokens

    def feature(self, feature_id: int) -> FeatureStatistics:
        a = self.arrays
        fire = int(a["fire_count"][feature_id])
        return FeatureStatistics(
            id=feature_id, n_tokens=self.n_tokens, n_prompts=self.n_prompts, fire_count=fire,
            frequency=fire / max(1, self.n_tokens),
            prompt_count=int(a["prompt_count"][feature_id]),
            prompt_frequency=int(a["prompt_count"][feature_id]) / max(1, self.n_prompts),
            max_activation=float(a["act_max"][feature_id]),
            mean_activation=float(a["act_sum"][feature_id]) / fire if fire else None,
            histogram_edges=a["hist_edges"].tolist(), histogram_counts=a["hist"][feature_id].tolist(),
            top_tokens=self.top_tokens(feature_id),
        )

    def top_tokens(self, feature_id: int, limit: int = 10) -> list[tuple[str, int]]:
        from collections import Counter

        counts: Counter = Counter()
        for example in self._raw_examples(feature_id, self.top_k):
            counts[normalize_token(example[3])] += 1
        return counts.most_common(limit)

    def _raw_examples(self, feature_id: int, k: int) -> list[tuple[float, int, int, str, bool, list[str]]]:
        values = self.arrays["top_values"][feature_id]
        prompt_ids = self.arrays["top_prompt"][feature_id]
        positions = self.arrays["top_position"][feature_id]
        tokens_column = self.prompts.column("tokens")
        pad = self.manifest.get("pad_token") or ""
        rows = []
        for value, p, pos in zip(values[:k].tolist(), prompt_ids[:k].tolist(), positions[:k].tolist()):
            if p < 0:
                break
            tokens = tokens_column[p].as_py()
            token = tokens[pos] if pos < len(tokens) else pad
            rows.append((value, p, pos, token, pos >= len(tokens) or token in self._specials, tokens))
        return rows

    def examples(self, feature_id: int, k: int = DEFAULT_TOP_K) -> list[Example]:
        prompt_column = self.prompts.column("prompt")
        family = self.manifest.get("family", "clip")
        pad = self.manifest.get("pad_token") or ""
        out, seen = [], set()
        for value, p, pos, token, special, tokens in self._raw_examples(feature_id, self.top_k):
            if len(out) == k:
                break
            if (tuple(tokens), pos) in seen:  # prompts that differ only where the tokenizer does not look ("A"/"a")
                continue
            seen.add((tuple(tokens), pos))
            rank = len(out)
            shown = list(tokens)
            peak = pos
            if pos >= len(tokens):  # a padding position: shown as one EOS after the prompt
                shown = tokens + [pad]
                peak = len(tokens)
            pieces = display_pieces(shown, family, self._specials)
            out.append(Example(
                rank=rank, value=value, prompt_index=p, position=pos, prompt=prompt_column[p].as_py(), token=token,
                is_special=special, pieces=pieces, peak=peak,
                left="".join(pieces[max(0, peak - CONTEXT_TOKENS):peak]).lstrip(),
                right="".join(pieces[peak + 1:peak + 1 + CONTEXT_TOKENS]),
            ))
        return out
