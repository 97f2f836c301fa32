"""ShapesWorld as the default ItD bundle (``--bundle demo``): its text encoder, hooked layer,
SAE folder and pipeline, as :mod:`itd_core.bundle` asks for them. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from shapesworld import text_encoder as te
from shapesworld.errors import asset_error

HOOK_LAYER = te.HOOK_LAYER
SAE_DIR = Path(__file__).parent / "assets" / "sae"
TRAIN_SAE_COMMAND = "python -m shapesworld.train_sae"


def load_text_encoder_and_tokenizer():
    return te.load_text_encoder(), te.load_tokenizer()


def sae_folder() -> Path:
    """The demo SAE (native format), checked to exist."""
    for name in ("sae_config.json", "sae.safetensors"):
        if not (SAE_DIR / name).is_file():
            raise asset_error(SAE_DIR / name, TRAIN_SAE_COMMAND, "file not found")
    return SAE_DIR


def load_pipeline(text_encoder=None, tokenizer=None, device: str = "cpu"):
    from shapesworld.pipeline import load_pipeline as load

    return load(device=device, text_encoder=text_encoder, tokenizer=tokenizer)
