"""The on-disk activation cache: values, token metadata, resume, batch order."""

from __future__ import annotations

import json

import pytest
import torch

from itd_core.activation_cache import ActivationCache, build_activation_cache
from itd_core.errors import ItdError
from itd_core.prompts import prompts_hash

PROMPTS = [
    "a photo of a cat", "a painting of a dog in the style of van gogh", "tom cruise", "", "an astronaut riding a horse",
    "café au lait 😀", "a red cube next to a blue sphere", "portrait of a woman", "sunset over the sea", "a bowl of fruit",
]


@pytest.fixture(scope="module")
def clip_cache(tiny_clip_adapter, tmp_path_factory):
    # 76 tokens per prompt (positions 1..76), 200-token shards -> 2 prompts per shard -> 5 shards
    return build_activation_cache(tiny_clip_adapter, PROMPTS, tmp_path_factory.mktemp("cache") / "clip",
                                  batch_size=3, shard_tokens=200, progress=False)


def test_clip_cache_matches_direct_capture(tiny_clip_adapter, clip_cache):
    batch = tiny_clip_adapter.tokenize(PROMPTS)
    direct = tiny_clip_adapter.capture(batch)  # [10, 77, 32]
    shards = list(clip_cache.iter_shards())
    assert len(shards) == 5 and clip_cache.n_tokens == len(PROMPTS) * 76
    acts = torch.cat([s.activations for s in shards])
    assert acts.dtype == torch.float16 and acts.shape == (len(PROMPTS) * 76, 32)
    assert torch.equal(acts, direct[:, 1:].reshape(-1, 32).half())
    prompt_index = torch.cat([s.prompt_index for s in shards])
    position = torch.cat([s.position for s in shards])
    token_id = torch.cat([s.token_id for s in shards])
    assert prompt_index.dtype == position.dtype == token_id.dtype == torch.int32
    assert torch.equal(prompt_index, torch.arange(len(PROMPTS)).repeat_interleave(76).int())
    assert torch.equal(position, torch.arange(1, 77).repeat(len(PROMPTS)).int())
    assert torch.equal(token_id, batch.input_ids[:, 1:].reshape(-1).int())


def test_manifest(tiny_clip_adapter, clip_cache):
    manifest = json.loads((clip_cache.root / "manifest.json").read_text())
    assert manifest["layer"] == "encoder.layers.1" and manifest["d_model"] == 32 and manifest["dtype"] == "float16"
    assert manifest["n_tokens"] == 760 and manifest["n_prompts"] == 10
    assert manifest["prompts_hash"] == prompts_hash(PROMPTS)
    assert manifest["positions"] == "all-except-0"
    assert manifest["encoder"]["class"] == "CLIPTextModel" and len(manifest["encoder"]["weights_fingerprint"]) == 16
    assert [s["file"] for s in manifest["shards"]] == [f"shard-r000-{i:05d}.safetensors" for i in range(5)]
    assert [(s["prompt_start"], s["prompt_end"]) for s in manifest["shards"]] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]


def test_masked_encoder_stores_every_itd_position_padding_included(tiny_bert_adapter, tmp_path):
    """The UNet reads padding positions too, and ItD scores and edits them: the SAE must model them."""
    cache = build_activation_cache(tiny_bert_adapter, PROMPTS, tmp_path / "bert", batch_size=4, shard_tokens=16, progress=False)
    batch = tiny_bert_adapter.tokenize(PROMPTS)
    direct = tiny_bert_adapter.capture(batch)
    keep = torch.ones_like(batch.attention_mask, dtype=torch.bool)
    keep[:, 0] = False
    shards = list(cache.iter_shards())
    assert cache.manifest["positions"] == "all-except-0"
    assert cache.n_tokens == len(PROMPTS) * (tiny_bert_adapter.max_length - 1)
    assert torch.equal(torch.cat([s.activations for s in shards]), direct[keep].half())
    rows, cols = keep.nonzero(as_tuple=True)
    assert torch.equal(torch.cat([s.prompt_index for s in shards]), rows.int())
    assert torch.equal(torch.cat([s.position for s in shards]), cols.int())
    assert all(len(s) <= 2 * (tiny_bert_adapter.max_length - 1) for s in shards) and len(shards) > 1


def test_resume_skips_complete_shards(tiny_clip_adapter, tmp_path):
    out = tmp_path / "resume"
    first = build_activation_cache(tiny_clip_adapter, PROMPTS, out, shard_tokens=200, progress=False)
    reference = [s.activations for s in first.iter_shards()]
    # simulate a crash: the manifest (written last) and one shard are missing, a temp file lingers
    (out / "manifest.json").unlink()
    (out / "shard-r000-00003.safetensors").unlink()
    (out / ".shard-r000-00003.safetensors.123.tmp").write_bytes(b"half a file")
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors")}
    second = build_activation_cache(tiny_clip_adapter, PROMPTS, out, shard_tokens=200, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.safetensors") if p.name in kept} == kept
    assert (out / "shard-r000-00003.safetensors").is_file()
    assert all(torch.equal(a, s.activations) for a, s in zip(reference, second.iter_shards()))
    # a complete cache is reopened as is; other prompts in the same folder are refused
    assert build_activation_cache(tiny_clip_adapter, PROMPTS, out, shard_tokens=200, progress=False).n_tokens == 760
    with pytest.raises(ItdError, match="other data"):
        build_activation_cache(tiny_clip_adapter, PROMPTS[:3], out, progress=False)


def test_iter_batches_order_resume_and_rank_split(clip_cache):
    batches = list(clip_cache.iter_batches(64, seed=3, epochs=2, buffer_tokens=300))
    per_epoch = clip_cache.num_batches_per_epoch(64, buffer_tokens=300)
    assert len(batches) == 2 * per_epoch and all(b.shape == (64, 32) and b.dtype == torch.float32 for b in batches)
    # an epoch draws tokens without replacement: no row more often than the cache holds it
    # (rows do repeat in the cache: CLIP is causal, so "a photo" and "a painting" share position 1)
    cache_rows = torch.cat([s.activations for s in clip_cache.iter_shards()]).float()
    stored = {tuple(r): c for r, c in zip(*(t.tolist() for t in torch.unique(cache_rows, dim=0, return_counts=True)))}
    drawn = torch.unique(torch.cat(batches[:per_epoch]), dim=0, return_counts=True)
    assert all(c <= stored[tuple(r)] for r, c in zip(*(t.tolist() for t in drawn)))
    assert not torch.equal(batches[0], list(clip_cache.iter_batches(64, seed=4, epochs=1, buffer_tokens=300))[0])
    again = list(clip_cache.iter_batches(64, seed=3, epochs=2, buffer_tokens=300))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    # start_batch continues the same stream, also across the epoch boundary
    tail = list(clip_cache.iter_batches(64, seed=3, epochs=2, buffer_tokens=300, start_batch=per_epoch - 2))
    assert len(tail) == per_epoch + 2 and all(torch.equal(a, b) for a, b in zip(batches[per_epoch - 2:], tail))
    # two ranks each get half of every global batch
    halves = [list(clip_cache.iter_batches(64, seed=3, epochs=1, buffer_tokens=300, rank=r, world_size=2)) for r in (0, 1)]
    assert all(torch.equal(torch.cat([h0, h1]), full) for h0, h1, full in zip(*halves, batches[:per_epoch]))
    with pytest.raises(ItdError, match="fewer than one batch"):
        next(clip_cache.iter_batches(10_000))


def test_sample_is_deterministic(clip_cache):
    a = clip_cache.sample(100, seed=1)
    assert a.shape == (100, 32) and torch.equal(a, clip_cache.sample(100, seed=1))
    assert not torch.equal(a, clip_cache.sample(100, seed=2))
    assert clip_cache.sample(10_000).shape == (760, 32)


def test_open_errors(tmp_path):
    with pytest.raises(ItdError, match="no activation cache"):
        ActivationCache.open(tmp_path)
