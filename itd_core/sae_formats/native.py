"""``native`` - ours::

    sae_config.json   {"format": "itd-explorer-sae", "format_version": 1, <the SAEConfig fields>}
    sae.safetensors   W_enc [n, d], W_dec [n, d], b_lat [n], b_pre [d], stats_last_nonzero [n] int64
"""

from __future__ import annotations

from pathlib import Path

import torch

from itd_core.errors import ItdError
from itd_core.sae import TopKSAE
from itd_core.sae_formats.fingerprint import WEIGHT_NAMES
from itd_core.sae_formats.registry import SaeFormatHandler, make_config, read_json, register, require_files, write_json
from itd_core.sae_formats.safetensors_file import Stored, check_tensor_names, safetensors_sources, write_safetensors
from itd_core.sae_formats.streaming import Checkpoint

CONFIG_FILENAME = "sae_config.json"
WEIGHTS_FILENAME = "sae.safetensors"
FORMAT_NAME = "itd-explorer-sae"
FORMAT_VERSION = 1


def read(folder: Path) -> Checkpoint:
    config_file, weights_file = require_files(folder, "native")
    raw = dict(read_json(config_file))
    if raw.pop("format", None) != FORMAT_NAME:
        raise ItdError(f"{config_file}: 'format' is not {FORMAT_NAME!r}")
    version = raw.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise ItdError(
            f"{config_file}: format_version {version!r} is not supported (this version reads "
            f"{FORMAT_VERSION}); a newer ItD Explorer may have written it"
        )
    config = make_config(config_file, **raw)
    stored = safetensors_sources(weights_file)
    check_tensor_names(weights_file, stored, required=set(WEIGHT_NAMES), optional={"stats_last_nonzero"})
    return Checkpoint(config, weights_file, {name: stored[name] for name in WEIGHT_NAMES}, stored.get("stats_last_nonzero"))


def write(sae: TopKSAE, folder: Path) -> None:
    write_json(
        folder / CONFIG_FILENAME,
        {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **sae.config.model_dump()},
    )
    tensors = {name: Stored(getattr(sae, name).detach()) for name in WEIGHT_NAMES}
    tensors["stats_last_nonzero"] = Stored(sae.stats_last_nonzero.detach().to(torch.int64))
    write_safetensors(folder / WEIGHTS_FILENAME, tensors)


register(SaeFormatHandler("native", (CONFIG_FILENAME, WEIGHTS_FILENAME), read, write))
