"""Erasure-path benchmark at the paper's sizes, with random weights.

CLIP ViT-L/14 text tower (built from its config, layer 8), SAE 768 x 524,288 with k=64, one
batch of prompts padded to 77 tokens. Compares the vectorised engine (itd_core.deactivation)
with the approach of the paper's public code (``bench.reference_itd.public_erasure``: one batched
encode into a dense top-k code, one dense decode, a loop over prompts choosing original or edited),
checks that both take the same decisions, and reports what bf16/fp16 SAE weights give.
Also reports the erasure overhead as a fraction of one SD-1.5-size UNet step at 256 px.

    python bench/bench_erasure.py                      # CPU, full sizes (~5 GB RAM)
    python bench/bench_erasure.py --latents 32768      # quick
    python bench/bench_erasure.py --device cuda        # on a GPU machine
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import peak_extra_bytes  # noqa: E402
from bench.reference_itd import public_erasure  # noqa: E402
from itd_core.deactivation import ConceptFeatures, Deactivator  # noqa: E402
from itd_core.sae import SAEConfig, TopKSAE  # noqa: E402

PROMPTS = [
    "A portrait of Tom Cruise", "An oil painting of a lighthouse at dusk", "Painting in the style of Van Gogh",
    "a cat sitting on a red sofa", "Tom Cruise in an official photo", "a bowl of fruit on a wooden table",
    "An image capturing Tom Cruise at a public event", "a city street at night in the rain",
]


def timed(fn, repeats: int, device: str) -> tuple[float, object]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def time_split(sae: TopKSAE, activations: torch.Tensor, total: float, repeats: int, device: str) -> dict[str, float]:
    """The engine's fp32 call in parts: the encode's matrix products (block by block, as TopKSAE.encode does), the
    blocks' top-k, and the rest (the sparse decode, the concept terms, the edit)."""
    import torch.nn.functional as F

    from itd_core.sae import ENCODE_BLOCK

    centred = activations[:, 1:].to(sae.W_enc.dtype) - sae.b_pre
    starts = range(0, sae.n_latents, ENCODE_BLOCK if sae.n_latents > 2 * ENCODE_BLOCK else sae.n_latents)

    def products():
        return [F.linear(centred, sae.W_enc[s:s + ENCODE_BLOCK], sae.b_lat[s:s + ENCODE_BLOCK]) for s in starts]

    matmul, blocks = timed(products, repeats, device)
    top_k, _ = timed(lambda: [torch.topk(block, sae.k, dim=-1, sorted=False) for block in blocks], repeats, device)
    return {"matrix products": matmul, "top-k": top_k, "the rest": max(total - matmul - top_k, 0.0)}


def real_prompts(n: int) -> list[str]:
    """``n`` shipped real prompts: a quarter each from the paper's celebrity targets and retain names, COCO and DiffusionDB."""
    from itd_core.assets import prompt_set
    from itd_core.prompts import read_prompts

    names = ["celebrity_target", "celebrity_remain", "coco_5k", "diffusiondb_5k"]
    return [p for name in names for p in read_prompts(prompt_set(name))[: n // len(names)]]


def reduced_precision_decisions(sae: TopKSAE, device: str, n_prompts: int, batch: int = 32) -> None:
    """Decisions of bf16 SAE weights, and of the fp32 SAE behind a bf16 screen (``TopKSAE.screen_in_bf16``), against
    the plain fp32 ones on real prompts through the random-weight tower: one concept from the celebrity set's first
    name (its 5 templates' top-128 features), thresholds by the paper's rule on those templates, and, as a stress
    test, between the two middle scores (the most prompts near the threshold)."""
    prompts = real_prompts(n_prompts)
    templates = [p for p in prompts if p.endswith("Adam Driver") or "Adam Driver " in p][:5]
    template_acts = clip_large_activations(device, templates)
    totals = torch.zeros(sae.n_latents, device=device)
    for row in template_acts:
        code = sae.encode(row[1:])
        totals.index_add_(0, code.indices.flatten(), code.values.flatten().float())
    concept = ConceptFeatures.uniform("Adam Driver", totals.topk(128).indices.tolist())
    batches = [clip_large_activations(device, prompts[begin:begin + batch]) for begin in range(0, len(prompts), batch)]

    def scored(model: TopKSAE) -> tuple[torch.Tensor, float]:
        deactivator = Deactivator(model, [concept])
        started = time.perf_counter()
        rows = [deactivator.scores(a)[:, 0].float().cpu() for a in batches]
        return torch.cat(rows), time.perf_counter() - started

    fp32, fp32_seconds = scored(sae)
    bf16, bf16_seconds = scored(sae.copy_as(torch.bfloat16))
    screened, screened_seconds = scored(sae.screen_in_bf16())
    sae.screen_in_bf16(False)
    errors = {name: (scores - fp32).abs() / fp32.abs().clamp_min(1e-12) for name, scores in (("bf16", bf16), ("screened", screened))}
    print(f"\nDecisions on {len(prompts)} real prompts (celebrity target/retain, COCO, DiffusionDB), random tower, SAE 768 x "
          f"{sae.n_latents:,}, against plain fp32. Relative score error: bf16 median {errors['bf16'].median():.1e}, max "
          f"{errors['bf16'].max():.1e}; bf16-screened fp32 max {errors['screened'].max():.1e}. Scoring all of them took "
          f"{fp32_seconds:.0f} s in fp32, {bf16_seconds:.0f} s in bf16 ({fp32_seconds / bf16_seconds:.2f}x), "
          f"{screened_seconds:.0f} s in fp32 behind the bf16 screen ({fp32_seconds / screened_seconds:.2f}x)\n")
    print("| threshold | prompts triggered (fp32) | bf16: decisions differing | bf16-screened fp32: decisions differing |")
    print("|---|---:|---:|---:|")
    middle = float(fp32.sort().values[len(fp32) // 2 - 1: len(fp32) // 2 + 1].mean())
    paper = 0.99 * float(Deactivator(sae, [concept]).scores(template_acts).min())
    for name, threshold in [("paper's rule on the concept's templates", paper), ("between the two middle scores (stress)", middle)]:
        decided = fp32 >= threshold
        print(f"| {name}: {threshold:.4g} | {int(decided.sum())} | {int(((bf16 >= threshold) != decided).sum())} / {len(prompts)} | "
              f"{int(((screened >= threshold) != decided).sum())} / {len(prompts)} |")


def clip_large_activations(device: str, prompts: list[str]) -> torch.Tensor:
    return clip_large_adapter(device).capture(prompts)


@functools.cache
def clip_large_adapter(device: str):
    from transformers import CLIPTextConfig, CLIPTextModel

    from itd_core.assets import clip_tokenizer
    from itd_core.encoders import TextEncoderAdapter

    torch.manual_seed(0)
    config = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                            projection_dim=768, max_position_embeddings=77, vocab_size=49408,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return TextEncoderAdapter(CLIPTextModel(config), clip_tokenizer(), "text_model.encoder.layers.8").to(device=device)


def unet_step_seconds(device: str, repeats: int) -> float:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # SD 1.5's UNet config
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8,
    ).to(device).eval()
    latents = torch.randn(2, 4, 32, 32, device=device)  # 256 px, classifier-free guidance batch
    text = torch.randn(2, 77, 768, device=device)
    with torch.no_grad():
        seconds, _ = timed(lambda: unet(latents, 500, encoder_hidden_states=text).sample, repeats, device)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=524288)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--concepts", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-unet", action="store_true")
    parser.add_argument("--decision-prompts", type=int, default=0,
                        help="also compare bf16 and fp32 decisions on this many shipped real prompts (1,100: ~15 min on 2 cores at 524k)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    prompts = (PROMPTS * ((args.prompts + len(PROMPTS) - 1) // len(PROMPTS)))[: args.prompts]
    activations = clip_large_activations(args.device, prompts)
    sae = TopKSAE.random(SAEConfig(d_model=768, n_latents=args.latents, k=args.k), seed=0).to(args.device)

    # Concepts: features of the "Tom Cruise" prompts; thresholds between the scores, so decisions are mixed.
    code = sae.encode(activations[0, 1:])
    ids = code.indices.flatten().unique()[: 128 * args.concepts].tolist()
    concepts = [ConceptFeatures.uniform(f"concept{c}", ids[c::args.concepts]) for c in range(args.concepts)]
    scores = Deactivator(sae, concepts).scores(activations)
    middle = scores.sort(dim=0).values[len(prompts) // 2 - 1: len(prompts) // 2 + 1].mean(0)  # between two prompts' scores
    concepts = [c.with_threshold(float(middle[i])) for i, c in enumerate(concepts)]

    rows = []
    reference_seconds, (reference_output, _, reference_triggered) = timed(lambda: public_erasure(sae, activations, concepts), args.repeats, args.device)
    reference_peak = peak_extra_bytes(lambda: public_erasure(sae, activations, concepts), args.device)
    rows.append(("paper's public code path (batched dense encode and decode, loop over prompts)", "fp32", reference_seconds, 1.0, 0, reference_peak))
    fast_seconds = None
    engine = f"itd_core Deactivator ({args.concepts} concept(s))"
    variants = [(engine, "fp32", lambda: sae), (engine + ", bf16 screen (exact fp32 result)", "fp32", lambda: sae.screen_in_bf16()),
                (engine, "bf16", lambda: sae.copy_as(torch.bfloat16)), (engine, "fp16", lambda: sae.copy_as(torch.float16))]
    for name, dtype_name, make_sae in variants:
        deactivator = Deactivator(make_sae(), concepts)
        seconds, result = timed(lambda deactivator=deactivator: deactivator.apply(activations), args.repeats, args.device)
        disagreements = int((result.triggered != reference_triggered).sum())
        if name == engine and dtype_name == "fp32":
            fast_seconds = seconds
            assert disagreements == 0, "the fp32 engine must take the public code's decisions"
        peak = peak_extra_bytes(lambda deactivator=deactivator: deactivator.apply(activations), args.device)
        sae.screen_in_bf16(False)
        rows.append((name, dtype_name, seconds, reference_seconds / seconds, disagreements, peak))

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nErasure path: {args.prompts} prompts x 77 tokens, SAE 768 x {args.latents:,}, k={args.k}, {device_name}\n")
    print("| method | SAE dtype | median s | speed-up vs the public code | decisions differing from its fp32 ones | peak extra memory of one call |")
    print("|---|---|---:|---:|---:|---:|")
    for name, dtype_name, seconds, ratio, disagreements, peak in rows:
        print(f"| {name} | {dtype_name} | {seconds:.3f} | {ratio:.2f}x | {disagreements} / {len(prompts) * args.concepts} | {peak / 2**20:,.0f} MiB |")
    split = time_split(sae, activations, fast_seconds, args.repeats, args.device)
    print("\nWhere the fp32 engine's time goes (each part timed on its own): " +
          ", ".join(f"{name} {seconds:.3f} s ({100 * seconds / fast_seconds:.0f}%)" for name, seconds in split.items()))
    if args.decision_prompts:
        reduced_precision_decisions(sae, args.device, args.decision_prompts)
    if not args.skip_unet:
        unet_seconds = unet_step_seconds(args.device, max(1, args.repeats - 1))
        print(f"\nOne SD-1.5-size UNet step at 256 px (batch 2 for guidance): {unet_seconds:.3f} s; "
              f"erasure (fp32) = {100 * fast_seconds / unet_seconds:.1f}% of one step, "
              f"{100 * fast_seconds / (unet_seconds * 20):.2f}% of a 20-step generation (the encoder runs once per image)")


if __name__ == "__main__":
    main()
