"""On-disk activation cache: one text-encoder layer's activations at the ItD positions, sharded, fp16.

Layout of a cache folder::

    manifest.json                              # written last: its presence means "complete"
    shard-r000-00000.safetensors               # rank 0's first shard, ...
    shard-r001-00000.safetensors               # rank 1's (when built by several processes)

Each shard holds, for ``N`` tokens (shape in brackets)::

    activations  [N, d_model] float16
    prompt_index [N] int32      # index into the full prompt list given to the build
    position     [N] int32      # token position in the pipeline's padded sequence (never 0)
    token_id     [N] int32

and the header metadata records the prompt range it covers and the build key, so a rerun skips
shards that are already complete (each is written to a temp file, then ``os.replace``-d).

Which tokens: the ItD positions, i.e. every position the pipeline hands to the UNet except 0
(BOS/CLS), padding included. The UNet cross-attends to every position (diffusers passes no
encoder mask to it), padding positions carry the prompt's meaning (they attend to its tokens, even
when the encoder masks padding as keys), and ItD scores and edits them: so the SAE must model them,
for CLIP and for masked BERT-family encoders alike.

Several processes: under ``accelerate launch --num_processes N`` each process encodes a contiguous,
disjoint slice of the prompts and writes its own shards (rank in the file name); the main process
writes the manifest after ``wait_for_everyone()``. Commands are in :mod:`itd_core.training`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from itd_core.atomic import atomic_write_json
from itd_core.distributed import distributed_state, rank_slice
from itd_core.encoders import TextEncoderAdapter, TokenizedPrompts
from itd_core.errors import ItdError
from itd_core.prompts import prompts_hash

CACHE_FORMAT = "itd-activation-cache"
CACHE_VERSION = 1
MANIFEST_NAME = "manifest.json"
CACHE_DTYPE = torch.float16
DEFAULT_SHARD_TOKENS = 2**16
_SHARD_RE = re.compile(r"^shard-r(\d{3,})-(\d{5,})\.safetensors$")
_FP16_MAX = torch.finfo(torch.float16).max


def shard_name(rank: int, index: int) -> str:
    return f"shard-r{rank:03d}-{index:05d}.safetensors"


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the manifest lists it."""

    file: str
    rank: int
    n_tokens: int
    prompt_start: int  # first prompt (global index) of the shard
    prompt_end: int  # one past the last prompt

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Shard:
    """A loaded shard. shape: activations ``[N, d_model]``; the others ``[N]`` (int32)."""

    activations: torch.Tensor
    prompt_index: torch.Tensor
    position: torch.Tensor
    token_id: torch.Tensor

    def __len__(self) -> int:
        return self.activations.shape[0]


def encoder_identity(adapter: TextEncoderAdapter) -> dict:
    """What produced the activations: family, class, model path, hooked layer, and a cheap weight
    fingerprint (sha256 over the config and the first 4096 values of every parameter), so that a
    cache built from other weights -- another seed of a tiny test model included -- is told apart."""
    encoder = adapter.text_encoder
    digest = hashlib.sha256()
    config = getattr(encoder, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, param in encoder.named_parameters():
        head = param.detach().flatten()[:4096].to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
        digest.update(head.numpy().tobytes())
    return {
        "family": adapter.family,
        "class": type(encoder).__name__,
        "name_or_path": getattr(config, "_name_or_path", "") or None,
        "layer": adapter.layer_name,
        "weights_fingerprint": digest.hexdigest()[:16],
    }


POSITIONS_RULE = "all-except-0"  # every position but BOS, for every encoder


def _build_key(identity: dict, phash: str, n_prompts: int, shard_tokens: int, world_size: int, positions: str) -> str:
    payload = json.dumps([CACHE_VERSION, identity, phash, n_prompts, shard_tokens, world_size, positions], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _select_positions(batch: TokenizedPrompts) -> torch.Tensor:
    """Boolean ``[B, T]`` of the positions to store: the ItD positions."""
    keep = torch.ones_like(batch.input_ids, dtype=torch.bool)
    keep[:, 0] = False
    return keep


def _plan_shards(adapter: TextEncoderAdapter, start: int, end: int, shard_tokens: int) -> list[tuple[int, int]]:
    """Cut prompts ``[start, end)`` into consecutive ranges of at most ``shard_tokens`` tokens (every prompt
    stores ``max_length - 1`` positions; a single prompt longer than that gets a shard to itself)."""
    per_prompt = adapter.max_length - 1
    plan, first, total = [], start, 0
    for index in range(start, end):
        if total and total + per_prompt > shard_tokens:
            plan.append((first, index))
            first, total = index, 0
        total += per_prompt
    if total:
        plan.append((first, end))
    return plan


def _read_shard_metadata(path: Path) -> dict | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception:  # noqa: BLE001 - a foreign or corrupt file: treat as absent, it gets rewritten
        return None


def _write_shard_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temp), metadata=metadata)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _encode_range(adapter: TextEncoderAdapter, prompts: Sequence[str], start: int, end: int, batch_size: int, bar) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {"activations": [], "prompt_index": [], "position": [], "token_id": []}
    for offset, (batch, acts) in enumerate(adapter.iter_capture(list(prompts[start:end]), batch_size=batch_size)):
        keep = _select_positions(batch)
        rows, cols = keep.nonzero(as_tuple=True)
        selected = acts[rows.to(acts.device), cols.to(acts.device)].float()
        overflow = selected.abs().amax(dim=1) > _FP16_MAX
        if overflow.any():
            row = int(overflow.nonzero()[0])
            prompt = batch.prompts[int(rows[row])]
            raise ItdError(f"activation magnitude {selected[row].abs().max().item():.4g} overflows the cache's fp16 "
                           f"(max {_FP16_MAX:.0f}) for prompt {prompt[:60]!r} at position {int(cols[row])}")
        parts["activations"].append(selected.to("cpu", CACHE_DTYPE))
        parts["prompt_index"].append((rows + start + offset * batch_size).to(torch.int32))
        parts["position"].append(cols.to(torch.int32))
        parts["token_id"].append(batch.input_ids[rows, cols].to(torch.int32))
        if bar is not None:
            bar.update(len(batch))
    return {name: torch.cat(values).contiguous() for name, values in parts.items()}


def build_activation_cache(
    adapter: TextEncoderAdapter,
    prompts: Sequence[str],
    out_dir: str | Path,
    *,
    batch_size: int = 32,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    progress: bool = True,
) -> "ActivationCache":
    """Encode ``prompts`` through ``adapter`` and store the ItD-position activations under ``out_dir``.

    Resumable: shards already on disk from an identical build are kept; a complete cache (manifest
    present and matching) is opened as is. A folder holding a complete cache of *other* prompts or
    another encoder is refused with an :class:`ItdError` (nothing is overwritten). Under
    ``accelerate launch`` every process must call this with the same arguments; each encodes its
    slice, the main process writes the manifest, and every process gets the opened cache back.
    Put the adapter on the process's device yourself (``accelerator.device``) before calling.
    """
    prompts = [str(p) for p in prompts]
    if not prompts:
        raise ItdError("no prompts to build an activation cache from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    out_dir = Path(out_dir)
    state = distributed_state()
    rank, world_size = state.process_index, state.num_processes
    identity = encoder_identity(adapter)
    phash = prompts_hash(prompts)
    positions = POSITIONS_RULE
    key = _build_key(identity, phash, len(prompts), shard_tokens, world_size, positions)

    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        if manifest.get("build_key") == key or _same_content(manifest, identity, phash, len(prompts), positions):
            return ActivationCache.open(out_dir)
        raise ItdError(
            f"{out_dir} already holds an activation cache of other data (prompts {manifest.get('prompts_hash')} from "
            f"{manifest.get('encoder', {}).get('name_or_path')!r} layer {manifest.get('layer')!r}; this build: prompts {phash} from "
            f"{identity['name_or_path']!r} layer {identity['layer']!r}); choose another folder or delete that one")
    out_dir.mkdir(parents=True, exist_ok=True)

    start, end = rank_slice(len(prompts), rank, world_size)
    plan = _plan_shards(adapter, start, end, shard_tokens) if end > start else []
    todo = []
    for index, (first, last) in enumerate(plan):
        path = out_dir / shard_name(rank, index)
        meta = _read_shard_metadata(path) if path.is_file() else None
        if meta and meta.get("build_key") == key and meta.get("prompt_start") == str(first) and meta.get("prompt_end") == str(last):
            continue
        todo.append((index, first, last))
    bar = None
    if progress and todo and state.is_local_main_process:
        total = sum(last - first for _, first, last in todo)
        bar = tqdm(total=total, desc=f"caching activations ({adapter.layer_name})", unit="prompt")
    try:
        for index, first, last in todo:
            tensors = _encode_range(adapter, prompts, first, last, batch_size, bar)
            metadata = {"format": CACHE_FORMAT, "version": str(CACHE_VERSION), "build_key": key,
                        "rank": str(rank), "prompt_start": str(first), "prompt_end": str(last)}
            _write_shard_atomic(out_dir / shard_name(rank, index), tensors, metadata)
    finally:
        if bar is not None:
            bar.close()

    state.wait_for_everyone()
    if state.is_main_process:
        shards = _collect_shards(out_dir, key, len(prompts))
        manifest = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "layer": adapter.layer_name,
            "d_model": adapter.d_model,
            "dtype": "float16",
            "positions": positions,
            "n_tokens": sum(s.n_tokens for s in shards),
            "n_prompts": len(prompts),
            "prompts_hash": phash,
            "max_length": adapter.max_length,
            "encoder": identity,
            "build_key": key,
            "shard_tokens": shard_tokens,
            "world_size": world_size,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "shards": [s.to_dict() for s in shards],
        }
        atomic_write_json(manifest_path, manifest)
    state.wait_for_everyone()
    return ActivationCache.open(out_dir)


def _same_content(manifest: dict, identity: dict, phash: str, n_prompts: int, positions: str) -> bool:
    """A complete cache of the same prompts and encoder, built with another shard size or process count."""
    return (manifest.get("prompts_hash") == phash and manifest.get("n_prompts") == n_prompts
            and manifest.get("encoder") == identity and manifest.get("positions") == positions)


def _collect_shards(out_dir: Path, key: str, n_prompts: int) -> list[ShardInfo]:
    """The shards of this build, in prompt order; shards of an abandoned build (other key) are deleted."""
    shards = []
    for path in sorted(out_dir.iterdir()):
        match = _SHARD_RE.match(path.name)
        if not match:
            continue
        meta = _read_shard_metadata(path)
        if not meta or meta.get("build_key") != key:
            path.unlink()
            continue
        with safe_open(str(path), framework="pt") as handle:
            n_tokens = handle.get_slice("activations").get_shape()[0]
        shards.append(ShardInfo(path.name, int(match.group(1)), int(n_tokens), int(meta["prompt_start"]), int(meta["prompt_end"])))
    shards.sort(key=lambda s: s.prompt_start)
    covered = 0
    for shard in shards:
        if shard.prompt_start != covered:
            raise ItdError(f"activation cache in {out_dir} misses prompts {covered}..{shard.prompt_start - 1}; rerun the build")
        covered = shard.prompt_end
    if covered != n_prompts:
        raise ItdError(f"activation cache in {out_dir} misses prompts {covered}..{n_prompts - 1}; rerun the build")
    return shards


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ItdError(f"unreadable activation-cache manifest {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        raise ItdError(f"{path} is not an activation-cache manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != CACHE_VERSION:
        raise ItdError(f"activation cache {path.parent} has version {manifest.get('version')!r}; this tool reads version {CACHE_VERSION}")
    return manifest


def _derive_seed(*parts: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class ActivationCache:
    """A complete cache folder (see the module docstring). Open with :meth:`open`."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest
        self.shards = [ShardInfo(**s) for s in manifest["shards"]]

    @classmethod
    def open(cls, path: str | Path) -> "ActivationCache":
        root = Path(path)
        manifest_path = root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ItdError(f"no activation cache in {root} (no {MANIFEST_NAME}; an interrupted build resumes when rerun)")
        manifest = _read_manifest(manifest_path)
        missing = [s["file"] for s in manifest["shards"] if not (root / s["file"]).is_file()]
        if missing:
            raise ItdError(f"activation cache {root} lacks {len(missing)} shard file(s), e.g. {missing[0]}; rebuild it")
        return cls(root, manifest)

    # --- facts -----------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    def __len__(self) -> int:
        return self.n_tokens

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def n_prompts(self) -> int:
        return int(self.manifest["n_prompts"])

    @property
    def layer(self) -> str:
        return self.manifest["layer"]

    @property
    def prompts_hash(self) -> str:
        return self.manifest["prompts_hash"]

    def __repr__(self) -> str:
        return f"ActivationCache({str(self.root)!r}, layer={self.layer!r}, n_tokens={self.n_tokens}, d_model={self.d_model}, shards={len(self.shards)})"

    # --- reading ---------------------------------------------------------------------------
    def load_shard(self, index: int, *, activations_only: bool = False) -> Shard | torch.Tensor:
        """One shard; ``activations_only`` returns just the ``[N, d_model]`` fp16 tensor."""
        path = self.root / self.shards[index].file
        try:
            with safe_open(str(path), framework="pt") as handle:
                if activations_only:
                    return handle.get_tensor("activations")
                return Shard(*(handle.get_tensor(name) for name in ("activations", "prompt_index", "position", "token_id")))
        except ItdError:
            raise
        except Exception as error:  # noqa: BLE001 - a third-party reader's errors, translated into ItdError below
            raise ItdError(f"cannot read activation-cache shard {path}: {error}") from None

    def iter_shards(self) -> Iterator[Shard]:
        """Every shard in prompt order."""
        for index in range(len(self.shards)):
            yield self.load_shard(index)

    def sample(self, n_tokens: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Up to ``n_tokens`` random token activations (deterministic for a seed): shards are drawn in
        random order until enough tokens are in hand, then rows are drawn from them. shape ``[n, d_model]``"""
        generator = torch.Generator().manual_seed(_derive_seed(seed, "sample"))
        order = torch.randperm(len(self.shards), generator=generator).tolist()
        chunks, total = [], 0
        for index in order:
            if total >= n_tokens:
                break
            chunks.append(self.load_shard(index, activations_only=True))
            total += chunks[-1].shape[0]
        pool = torch.cat(chunks)
        pick = torch.randperm(pool.shape[0], generator=generator)[:n_tokens].sort().values
        return pool[pick].to(dtype)

    def num_batches_per_epoch(self, batch_size: int, *, buffer_tokens: int = 2**20) -> int:
        return sum(n // batch_size for n in self._window_sizes(batch_size, buffer_tokens))

    def _windows(self, epoch: int, seed: int, batch_size: int, buffer_tokens: int) -> list[list[int]]:
        """The epoch's shard order, cut into windows of at least ``max(buffer_tokens, batch_size)``
        tokens (a short tail joins the last window)."""
        generator = torch.Generator().manual_seed(_derive_seed(seed, epoch, "shards"))
        order = torch.randperm(len(self.shards), generator=generator).tolist()
        target = max(buffer_tokens, batch_size)
        windows: list[list[int]] = []
        current, tokens = [], 0
        for index in order:
            current.append(index)
            tokens += self.shards[index].n_tokens
            if tokens >= target:
                windows.append(current)
                current, tokens = [], 0
        if current:
            if windows:
                windows[-1].extend(current)
            else:
                windows.append(current)
        return windows

    def _window_sizes(self, batch_size: int, buffer_tokens: int, epoch: int = 0, seed: int = 0) -> list[int]:
        return [sum(self.shards[i].n_tokens for i in window) for window in self._windows(epoch, seed, batch_size, buffer_tokens)]

    def iter_batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        epochs: int | None = 1,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        buffer_tokens: int = 2**20,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[torch.Tensor]:
        """Random-order training batches. shape: each ``[batch_size // world_size, d_model]``.

        Each epoch shuffles the shard order, loads the shards a window at a time (``buffer_tokens``,
        at least one batch), permutes the window's tokens and cuts full batches (a window's last
        ``< batch_size`` tokens are skipped this epoch; other epochs cut elsewhere). Everything is
        a function of ``seed`` and the batch counter, so ``start_batch=n`` continues exactly where a
        run that consumed ``n`` batches stopped, reading only the windows it needs. ``epochs=None``
        repeats forever. Data parallel: every rank walks the same global batches and takes slice
        ``rank`` of each, so the global batch does not depend on the number of processes.
        """
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch split: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} is not divisible by world_size={world_size}")
        if self.n_tokens < batch_size:
            raise ItdError(f"the activation cache holds {self.n_tokens} tokens, fewer than one batch of {batch_size}; "
                           "use more prompts or a smaller batch")
        local = batch_size // world_size
        counter, epoch = 0, 0
        while epochs is None or epoch < epochs:
            for w, window in enumerate(self._windows(epoch, seed, batch_size, buffer_tokens)):
                n_window = sum(self.shards[i].n_tokens for i in window)
                n_batches = n_window // batch_size
                if counter + n_batches <= start_batch:
                    counter += n_batches
                    continue
                data = torch.cat([self.load_shard(i, activations_only=True) for i in window])
                generator = torch.Generator().manual_seed(_derive_seed(seed, epoch, w, "tokens"))
                perm = torch.randperm(n_window, generator=generator)
                for b in range(n_batches):
                    if counter >= start_batch:
                        begin = b * batch_size + rank * local
                        yield data[perm[begin:begin + local]].to(dtype)
                    counter += 1
                del data
            epoch += 1
