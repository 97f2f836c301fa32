"""Tiny, seeded, real components (diffusers' get_dummy_components habit): a tiny CLIP text model
behind the real SD 1.x tokenizer, a tiny UNet/VAE in a real StableDiffusionPipeline, a tiny TopK SAE."""

from __future__ import annotations

import torch

TINY_WIDTH = 32
TINY_LAYER = "encoder.layers.1"


def build_tiny_clip_text_model(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        hidden_size=TINY_WIDTH, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
        vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    return CLIPTextModel(config).eval()


def build_tiny_pipeline(seed: int = 0):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from itd_core.assets import clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_WIDTH, norm_num_groups=2, attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=build_tiny_clip_text_model(seed), tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sae(seed: int = 0, n_latents: int = 256, k: int = 8):
    from itd_core.sae import SAEConfig, TopKSAE

    return TopKSAE.random(SAEConfig(d_model=TINY_WIDTH, n_latents=n_latents, k=k, hook_layer=TINY_LAYER), seed=seed)
