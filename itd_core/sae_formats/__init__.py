"""Load and save a :class:`~itd_core.sae.TopKSAE` in several on-disk formats, plus a format-free fingerprint.

Every checkpoint is a folder. The format is told by the files in it (:func:`detect_format`). Each format is one
module that registers itself by name (:mod:`~itd_core.sae_formats.registry`), so a new format is one more module
imported below:

* ``itd`` (:mod:`~itd_core.sae_formats.itd`): the ItD / OpenAI ``sparse_autoencoder`` format of the paper's
  released checkpoints, ``config.json`` + ``state_dict.pth``;
* ``saelens`` (:mod:`~itd_core.sae_formats.saelens`): SAELens, architecture ``"topk"``, ``cfg.json`` +
  ``sae_weights.safetensors``;
* ``native`` (:mod:`~itd_core.sae_formats.native`): ours, ``sae_config.json`` + ``sae.safetensors``.

All weights are copied as stored (fp32/bf16/fp16), so round trips between the formats are bit-exact. Loading
streams the weights in row blocks (:mod:`~itd_core.sae_formats.streaming`), so peak memory stays close to the
loaded weights' size; saving builds the folder under a temporary name and swaps it into place
(:func:`itd_core.atomic.atomic_folder`). The fingerprint (:func:`weights_fingerprint`,
:mod:`~itd_core.sae_formats.fingerprint`) is a sha256 over the weights as float32 in one canonical layout: the same
in every format and at every load dtype.
"""

# isort: off
# The formats register themselves when imported, in the order messages list them.
from itd_core.sae_formats import itd, saelens, native  # noqa: F401
# isort: on

from itd_core.sae_formats.api import detect_format, load_sae, resolve_sae_path, save_sae
from itd_core.sae_formats.fingerprint import weights_fingerprint
from itd_core.sae_formats.registry import SaeFormat, SaeFormatHandler, formats, register

__all__ = [
    "SaeFormat",
    "SaeFormatHandler",
    "detect_format",
    "formats",
    "load_sae",
    "register",
    "resolve_sae_path",
    "save_sae",
    "weights_fingerprint",
]
