"""TopK SAE training: the recipe's pieces, learning on data from a known sparse dictionary,
determinism, resume, the prompt-to-SAE runner, and a 2-process data-parallel run via accelerate."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from itd_core.errors import ItdError
from itd_core.sae import TopKSAE
from itd_core.training import (
    SAETrainer,
    TopKTrainingModule,
    TrainingConfig,
    checkpoint_dirs,
    evaluate_sae,
    geometric_median,
    init_from_data_,
    mse_scale_of,
    normalize_decoder_,
    project_decoder_grad_,
    split_prompts,
    train_sae_from_prompts,
)
from tests.distributed import launch_two_cpu_processes

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [f"a {adj} {noun} {place}" for adj in ("red", "small", "shiny", "old") for noun in ("cat", "car", "tree", "house", "robot")
           for place in ("at night", "on the beach")]  # 40 prompts x 76 tokens


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster, and far faster when the 2 cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sparse_data(n_tokens: int, *, d: int = 32, n_true: int = 64, k_true: int = 3, seed: int = 0) -> torch.Tensor:
    """Tokens made of ``k_true`` of ``n_true`` unit directions (fixed by seed 123) with values in [0.5, 2.5], plus an offset."""
    dictionary = torch.randn(n_true, d, generator=torch.Generator().manual_seed(123))
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n_tokens, n_true, generator=g).topk(k_true, dim=1).indices
    vals = torch.rand(n_tokens, k_true, generator=g) * 2 + 0.5
    return torch.zeros(n_tokens, n_true).scatter_(1, idx, vals) @ dictionary + 0.3


def batch_stream(data: torch.Tensor, batch_size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    while True:
        yield data[torch.randint(0, data.shape[0], (batch_size,), generator=g)]


def make_trainer(config: TrainingConfig, data: torch.Tensor, *, seed: int = 0) -> SAETrainer:
    sae = TopKSAE.random(config.sae_config(data.shape[1]), seed=seed)
    init_from_data_(sae, data[:4096], seed=seed)
    return SAETrainer(sae, config, mse_scale=mse_scale_of(data[:4096]))


# --- pieces of the recipe ----------------------------------------------------------------------

def test_geometric_median_fermat_point():
    # right isosceles triangle: the Fermat point sits on the diagonal at t = (3 - sqrt 3) / 6
    triangle = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = (3 - 3**0.5) / 6
    assert torch.allclose(geometric_median(triangle), torch.tensor([t, t]), atol=1e-5)
    # robust where the mean is not: 99 points near the origin, one far away
    cloud = torch.cat([torch.randn(99, 8, generator=torch.Generator().manual_seed(0)) * 0.01, torch.full((1, 8), 1000.0)])
    assert geometric_median(cloud).abs().max() < 0.05 < cloud.mean(0).abs().max()
    with pytest.raises(ValueError):
        geometric_median(torch.empty(0, 3))


def test_init_from_data():
    data = sparse_data(2048)
    cfg = TrainingConfig(n_latents=1024, k=32)
    sae = TopKSAE.random(cfg.sae_config(32), seed=0)
    init_from_data_(sae, data)
    assert torch.allclose(sae.b_pre, geometric_median(data), atol=1e-6)
    ratio = sae.W_enc / sae.W_dec  # encoder = decoder (same [n, d] layout), uniformly rescaled
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)
    probe = torch.randn(1024, 32, generator=torch.Generator().manual_seed(99))  # not the init's own probes
    probe = probe / probe.norm(dim=1, keepdim=True) + sae.b_pre
    assert (sae(probe) - sae.b_pre).norm(dim=1).mean().item() == pytest.approx(1.0, rel=0.1)


def test_decoder_gradient_projection_and_normalisation():
    sae = TopKSAE.random(TrainingConfig(n_latents=16, k=2).sae_config(8), seed=0)
    sae.W_dec.grad = torch.randn(16, 8)
    project_decoder_grad_(sae)
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs().max() < 1e-6
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(16, 1) + 0.5)
    normalize_decoder_(sae)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16), atol=1e-6)


def test_sparse_encoder_backward_matches_dense_autograd():
    """The training forward's sparse encoder gradient equals plain autograd through topk."""
    torch.manual_seed(0)
    data = sparse_data(64)
    cfg = TrainingConfig(n_latents=48, k=5, auxk=None)
    sae = TopKSAE.random(cfg.sae_config(32), seed=1)
    with torch.no_grad():
        sae.b_lat.normal_()
        sae.b_pre.normal_()
    out = TopKTrainingModule(sae)(data)
    target = torch.randn_like(out.recons)
    (out.recons * target).sum().backward()
    sparse = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    reference = sae(data)  # TopKSAE.forward: dense pre-activations, autograd through topk
    (reference * target).sum().backward()
    assert torch.allclose(out.recons, reference, atol=1e-6)
    for got, want in zip(sparse, (p.grad for p in sae.parameters())):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("n_dead", [8, 30])  # both ways of ranking the dead latents (few / most dead)
def test_auxk_reconstructs_from_the_top_dead_latents(n_dead):
    cfg = TrainingConfig(n_latents=32, k=2, auxk=4, dead_steps_threshold=3)
    sae = TopKSAE.random(cfg.sae_config(16), seed=2)
    with torch.no_grad():
        sae.b_lat.normal_()
        sae.stats_last_nonzero[:n_dead] = 100  # long dead
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(3))
    out = TopKTrainingModule(sae)(x)
    dead = sae.stats_last_nonzero > 3  # after this step's update: latents that fired now are alive again
    assert 0 < int(dead.sum()) <= n_dead and bool((sae.stats_last_nonzero[~dead] <= 1).all())
    assert (2 * int(dead.sum()) <= 32) == (n_dead == 8)
    with torch.no_grad():
        pre = sae.encode_pre_act(x).masked_fill(~dead, float("-inf"))
        top = pre.topk(min(4, int(dead.sum())), dim=-1)
        expected = torch.einsum("bj,bjd->bd", torch.relu(top.values), sae.W_dec[top.indices])
    assert torch.allclose(out.aux_recons, expected, atol=1e-5)


# --- learning -------------------------------------------------------------------------------

def test_training_learns_a_sparse_dictionary():
    data = sparse_data(32768)
    cfg = TrainingConfig(n_latents=256, k=8, auxk=64, dead_steps_threshold=50, lr=3e-3, warmup_steps=20,
                         batch_size=512, steps=300, log_every=25)
    trainer = make_trainer(cfg, data)
    test_data = sparse_data(4096, seed=7)
    before = evaluate_sae(trainer.sae, test_data, mse_scale=trainer.mse_scale)
    logs = []
    trainer.fit(batch_stream(data, 512), cfg.steps, progress=False, on_log=logs.append)
    assert logs[-1]["loss"] < logs[0]["loss"]
    held_out = evaluate_sae(trainer.sae, test_data, mse_scale=trainer.mse_scale)
    assert held_out["normalized_mse"] < 0.25 * before["normalized_mse"]
    assert held_out["explained_variance"] > 0.85
    assert held_out["l0"] == pytest.approx(8.0, abs=0.05)
    assert torch.allclose(trainer.sae.W_dec.norm(dim=1), torch.ones(256), atol=1e-5)
    assert trainer.tokens_seen == 300 * 512 and trainer.step == 300


def test_auxk_revives_dead_latents():
    data = sparse_data(16384)
    cfg = TrainingConfig(n_latents=128, k=4, auxk=32, dead_steps_threshold=5, lr=2e-3, warmup_steps=0,
                         batch_size=256, steps=120, log_every=10)
    results = {}
    for auxk in (32, None):
        trainer = make_trainer(cfg.model_copy(update={"auxk": auxk}), data)
        with torch.no_grad():  # half of the latents: positive but tiny pre-activations, never in the top k
            trainer.sae.W_enc[:64] *= 0.02
        logs = []
        trainer.fit(batch_stream(data, 256), cfg.steps, progress=False, on_log=logs.append)
        results[auxk] = (trainer.dead_fraction(), logs)
    dead_with, logs_with = results[32]
    dead_without, logs_without = results[None]
    assert dead_without >= 0.5  # TopK alone never gives a dead latent a gradient
    assert dead_with < dead_without - 0.2
    assert logs_with[0]["auxk_loss"] > 0 and all(log["auxk_loss"] == 0 for log in logs_without)


def test_determinism_bit_identical():
    data = sparse_data(8192)
    cfg = TrainingConfig(n_latents=64, k=4, auxk=16, dead_steps_threshold=3, batch_size=128, steps=30, lr=1e-3, warmup_steps=5)
    runs = []
    for _ in range(2):
        trainer = make_trainer(cfg, data)
        trainer.fit(batch_stream(data, 128), cfg.steps, progress=False)
        runs.append(trainer.sae.state_dict())
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])


# --- the runner -----------------------------------------------------------------------------

def _runner_config(**overrides) -> TrainingConfig:
    base = dict(n_latents=64, k=4, auxk=16, dead_steps_threshold=4, lr=1e-3, warmup_steps=3, clip_grad=1.0, batch_size=256, steps=12,
                seed=5, checkpoint_every=4, keep_checkpoints=2, log_every=2, eval_fraction=0.1,
                shuffle_buffer_tokens=1024, cache_shard_tokens=400, init_sample_tokens=1000)
    return TrainingConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def runner_run(tiny_clip_adapter, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    cfg = _runner_config()
    sae, metrics = train_sae_from_prompts(tiny_clip_adapter, PROMPTS, root / "full", cfg, cache_dir=root / "cache", progress=False)
    return root, cfg, sae, metrics


def test_runner_outputs(runner_run, tiny_clip_adapter):
    from itd_core.sae_formats import load_sae

    root, cfg, sae, metrics = runner_run
    out = root / "full"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("explained_variance", "l0", "dead_fraction", "normalized_mse", "tokens_seen", "tokens_per_s", "wall_time_s"):
        assert saved[key] is not None, key
    assert saved["tokens_seen"] == 12 * 256 and saved["steps"] == 12 and saved["world_size"] == 1
    assert saved["l0"] <= 4 and saved["eval_split"] == "held-out prompts"
    train, held_out = split_prompts(PROMPTS, cfg.eval_fraction)
    assert held_out and saved["eval_tokens"] == len(held_out) * 76
    loaded = load_sae(out / "sae")
    assert saved["fingerprint"] == sae.fingerprint == loaded.fingerprint
    assert loaded.config.hook_layer == "encoder.layers.1" and loaded.config.n_latents == 64 and loaded.config.k == 4
    assert all(torch.equal(getattr(loaded, n), getattr(sae, n)) for n in ("W_enc", "W_dec", "b_lat", "b_pre", "stats_last_nonzero"))
    assert [p.name for p in checkpoint_dirs(out)] == ["step_000008", "step_000012"]  # keep_checkpoints=2
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == list(range(2, 13, 2))
    assert set(log[0]) >= {"loss", "explained_variance", "l0", "dead_fraction"}


def test_runner_is_deterministic_and_resumes_bit_identically(runner_run, tiny_clip_adapter):
    root, cfg, sae, _ = runner_run
    # same seed and data, fresh folder (shared cache) -> bit-identical weights
    again, _ = train_sae_from_prompts(tiny_clip_adapter, PROMPTS, root / "again", cfg, cache_dir=root / "cache", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(sae.state_dict().values(), again.state_dict().values()))
    # interrupted after 6 steps (checkpoint at 4, the last one at 6), then resumed to 12
    train_sae_from_prompts(tiny_clip_adapter, PROMPTS, root / "resumed", cfg.model_copy(update={"steps": 6}), cache_dir=root / "cache", progress=False)
    assert [p.name for p in checkpoint_dirs(root / "resumed")] == ["step_000004", "step_000006"]
    resumed, metrics = train_sae_from_prompts(tiny_clip_adapter, PROMPTS, root / "resumed", cfg, cache_dir=root / "cache", progress=False)
    assert metrics["resumed_from_step"] == 6 and metrics["tokens_seen"] == 12 * 256
    assert all(torch.equal(a, b) for a, b in zip(sae.state_dict().values(), resumed.state_dict().values()))
    # a changed recipe is not resumed silently
    with pytest.raises(ItdError, match="lr"):
        train_sae_from_prompts(tiny_clip_adapter, PROMPTS, root / "resumed", cfg.model_copy(update={"lr": 5e-3}),
                               cache_dir=root / "cache", progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="exceeds"):
        TrainingConfig(n_latents=4, k=8)
    with pytest.raises(ValueError, match="not both"):
        TrainingConfig(n_latents=8, k=2, steps=3, total_tokens=100)
    with pytest.raises(ValueError):
        TrainingConfig(n_latents=8, k=2, batch_szie=3)


# --- data parallel ----------------------------------------------------------------------------

TWO_PROCESS_SCRIPT = """
import importlib.util, json, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("itd_training_test_conftest", {conftest!r})
builders = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builders)

from accelerate import PartialState
from itd_core.training import TrainingConfig, train_sae_from_prompts

prompts = json.loads(Path({prompts!r}).read_text())
config = TrainingConfig(**json.loads(Path({config!r}).read_text()))
sae, metrics = train_sae_from_prompts(builders.build_tiny_clip_adapter(), prompts, {out!r}, config, progress=False)
state = PartialState()
print(f"RANK {{state.process_index}} OF {{state.num_processes}} DONE steps={{metrics['steps']}}", flush=True)
"""


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path):
    """``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2`` (gloo): both ranks finish,
    both wrote cache shards, and the saved SAE loads."""
    from itd_core.sae_formats import load_sae

    out = tmp_path / "ddp"
    cfg = _runner_config(steps=6, checkpoint_every=3)
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    (tmp_path / "config.json").write_text(cfg.model_dump_json())
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(TWO_PROCESS_SCRIPT.format(
        conftest=str(Path(__file__).with_name("conftest.py")), prompts=str(tmp_path / "prompts.json"),
        config=str(tmp_path / "config.json"), out=str(out))))
    result = launch_two_cpu_processes(script, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank in (0, 1):
        assert f"RANK {rank} OF 2 DONE steps=6" in result.stdout, result.stdout + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["tokens_seen"] == 6 * 256
    sae = load_sae(out / "sae")
    assert sae.config.n_latents == 64 and torch.isfinite(sae.W_dec).all()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    shards = json.loads((out / "activation_cache" / "train" / "manifest.json").read_text())["shards"]
    assert {s["rank"] for s in shards} == {0, 1}
