"""ShapesWorld's concept detector: a small CNN that judges generated images.

It is the demo's counterpart of the paper's celebrity detector (GCD), style
classifier and NudeNet. One shared trunk, five heads:

* ``shape``    -- one of ``world.SHAPES`` or ``"none"`` (unsafe scenes);
* ``colour``   -- one of ``world.COLOUR_NAMES`` or ``"none"``;
* ``style``    -- ``"none"`` or an artist's style; reported as the artist's name under ``artist``;
* ``identity`` -- ``"none"`` or one of ``world.IDENTITIES``;
* ``unsafe``   -- ``False`` / ``True``.

``detect(images)`` takes ``[n, 64, 64, 3]`` uint8 (numpy, torch or PIL images) and
returns one dict per image: ``{"shape": ..., "shape_conf": ..., ...}``.
Weights: ``assets/detector/model.safetensors`` (fp16) + ``config.json``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import world
from .errors import asset_error

ASSET_DIR = Path(__file__).parent / "assets" / "detector"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

HEADS: dict[str, list] = {
    "shape": world.SHAPES + ["none"],
    "colour": world.COLOUR_NAMES + ["none"],
    "style": ["none"] + world.STYLES,
    "identity": ["none"] + world.IDENTITIES,
    "unsafe": [False, True],
}
STYLE_TO_ARTIST = {v: k for k, v in world.ARTIST_STYLES.items()}


def targets_from_labels(labels: dict) -> dict[str, int]:
    """Class index per head for a world ``Sample.labels``."""
    return {
        "shape": HEADS["shape"].index(labels["shape"] or "none"),
        "colour": HEADS["colour"].index(labels["colour"] or "none"),
        "style": HEADS["style"].index(labels["style"] or "none"),
        "identity": HEADS["identity"].index(labels["identity"] or "none"),
        "unsafe": int(bool(labels["unsafe"])),
    }


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Detector(nn.Module):
    """CNN trunk (64 -> 8 px: a 4x4 stride-2 stem, then 3x3 convs; ``width``..``4*width`` channels) + one linear head per concept kind.

    ``forward(x)``: ``x`` is ``[b, 3, 64, 64]`` in [-1, 1]; returns ``{head: logits [b, n_classes]}``.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.width = w
        self.trunk = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)),  # 32 px
            _block(w, 2 * w, 1), _block(2 * w, 2 * w, 2),  # 16 px
            _block(2 * w, 4 * w, 1), _block(4 * w, 4 * w, 2),  # 8 px
            _block(4 * w, 4 * w, 1),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(8 * w, len(v)) for k, v in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # [b, 8w]
        return {k: head(h) for k, head in self.heads.items()}


def to_tensor(images) -> torch.Tensor:
    """uint8 images (``[n,64,64,3]`` array, list of arrays or PIL images) -> ``[n,3,64,64]`` float in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        arr = images.cpu().numpy()
    elif isinstance(images, np.ndarray):
        arr = images
    else:
        arr = np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in images])
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[1:] != (64, 64, 3):
        raise ValueError(f"detector expects images of shape [n, 64, 64, 3], got {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).float().permute(0, 3, 1, 2)
    return x / 127.5 - 1.0


def save(model: Detector, folder: Path, metrics: dict | None = None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, str(folder / WEIGHTS_NAME))
    cfg = {"width": model.width, "heads": {k: [str(c) for c in v] for k, v in HEADS.items()}}
    if metrics:
        cfg["metrics"] = metrics
    (folder / CONFIG_NAME).write_text(json.dumps(cfg, indent=1))


def load(folder: Path | str = ASSET_DIR) -> Detector:
    """Load the detector (float32, eval). Raises a clear error naming the missing/corrupt file."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise asset_error(cfg_path, "python -m shapesworld.train_detector", exc) from exc
    heads = {k: [str(c) for c in v] for k, v in HEADS.items()}
    if cfg.get("heads") != heads:
        raise asset_error(cfg_path, "python -m shapesworld.train_detector",
                          "its class lists differ from shapesworld.world's (the world changed since training)")
    model = Detector(width=cfg["width"])
    try:
        sd = load_file(str(w_path))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except Exception as exc:  # safetensors raises several types for truncated/corrupt files
        raise asset_error(w_path, "python -m shapesworld.train_detector", exc) from exc
    return model.eval()


@lru_cache(maxsize=2)
def _default(folder: str) -> Detector:
    return load(folder)


@torch.no_grad()
def detect(images, model: Detector | None = None, batch_size: int = 256) -> list[dict]:
    """Labels + confidences for each image.

    Returns per image: ``shape``, ``colour``, ``artist`` (artist name or ``None``),
    ``style``, ``identity`` (name or ``None``), ``unsafe`` (bool), each with ``<head>_conf``
    (softmax probability of the chosen class; ``unsafe_conf`` is P(unsafe)).
    """
    model = model or _default(str(ASSET_DIR))
    x = to_tensor(images)
    out: list[dict] = []
    for i in range(0, len(x), batch_size):
        probs = {k: v.softmax(-1) for k, v in model(x[i:i + batch_size]).items()}
        for j in range(len(probs["shape"])):
            d: dict = {}
            for head, p in probs.items():
                c = int(p[j].argmax())
                d[head] = HEADS[head][c]
                d[f"{head}_conf"] = float(p[j, c]) if head != "unsafe" else float(p[j, 1])
            for head in ("shape", "colour", "identity"):
                if d[head] == "none":
                    d[head] = None
            d["style"] = None if d["style"] == "none" else d["style"]
            d["artist"] = STYLE_TO_ARTIST.get(d["style"])
            d["artist_conf"] = d["style_conf"]
            out.append(d)
    return out
