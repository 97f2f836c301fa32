"""The app's defaults, read from environment variables, and the folders it writes to.

Environment variables (all optional; the defaults open the ShapesWorld demo):

===================== ========================================================= ==================
variable              meaning                                                   default
===================== ========================================================= ==================
``ITD_APP_MODEL``     sidebar's model: ``demo``, a diffusers folder or a hub id ``demo``
``ITD_APP_SAE``       SAE folder or hub repo (needed unless the model is demo)   (none)
``ITD_APP_SAE_SUBFOLDER`` subfolder inside a hub SAE repo                        (none)
``ITD_APP_SAE_FORMAT`` ``auto``, ``itd``, ``saelens`` or ``native``              ``auto``
``ITD_APP_LAYER``     hooked layer: index or path                               the bundle's own
``ITD_APP_DEVICE``    ``cpu``, ``cuda``, ...                                    ``cpu``
``ITD_APP_DTYPE``     ``fp32``, ``bf16`` or ``fp16``                            ``fp32``
``ITD_SETS_DIR``      root of the saved deactivation sets                       ``~/.cache/itd-explorer/sets``
``ITD_INDEX_DIR``     root of the feature indexes                               ``~/.cache/itd-explorer/index``
``ITD_CACHE_DIR``     generation cache (read by :class:`itd_core.pipeline.GenerationCache`) ``~/.cache/itd-explorer``
``ITD_APP_ROOTS``     folders the sidebar may load models and SAEs from,        the project, the HF
                      separated by ``:``                                         cache, the home folder
===================== ========================================================= ==================

A folder typed in the sidebar is opened only when it resolves (symbolic links followed) inside one of
``ITD_APP_ROOTS``; anything else is refused with one message that says nothing about the path (whether
it exists, what it is). A hub id (``owner/name``) is fetched into the Hugging Face cache, which is a root.

Sets and indexes live in one subfolder per SAE: the first 16 hex digits of the bundle's
weights fingerprint, so a set made for one SAE never shows up for another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from itd_core.bundle import BundleSpec
from itd_core.erasure_config import describe_validation_error
from itd_core.errors import ItdError

ENV_MODEL = "ITD_APP_MODEL"
ENV_SAE = "ITD_APP_SAE"
ENV_SAE_SUBFOLDER = "ITD_APP_SAE_SUBFOLDER"
ENV_SAE_FORMAT = "ITD_APP_SAE_FORMAT"
ENV_LAYER = "ITD_APP_LAYER"
ENV_DEVICE = "ITD_APP_DEVICE"
ENV_DTYPE = "ITD_APP_DTYPE"
ENV_SETS_DIR = "ITD_SETS_DIR"
ENV_ROOTS = "ITD_APP_ROOTS"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

SAE_FORMATS = ("auto", "itd", "saelens", "native")
DTYPES = ("fp32", "bf16", "fp16")


def _cache_root(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("ITD_CACHE_DIR") or Path.home() / ".cache" / "itd-explorer").expanduser()


def default_spec(environ: Mapping[str, str] | None = None) -> BundleSpec:
    """The bundle the sidebar starts with."""
    environ = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None

    try:
        return BundleSpec(
            model=get(ENV_MODEL) or "demo",
            sae=get(ENV_SAE),
            sae_subfolder=get(ENV_SAE_SUBFOLDER),
            sae_format=get(ENV_SAE_FORMAT) or "auto",
            layer=get(ENV_LAYER),
            device=get(ENV_DEVICE) or "cpu",
            dtype=get(ENV_DTYPE) or "fp32",
        )
    except ValidationError as error:
        raise ItdError(f"bad app setting in the environment: {describe_validation_error(error)}") from None


def spec_from_form(model: str, sae: str, sae_subfolder: str, sae_format: str, layer: str, device: str, dtype: str,
                   bf16_screen: bool = False) -> BundleSpec:
    """A spec from the sidebar's text fields (blank fields mean 'not given'); raises ItdError on bad input."""
    model = model.strip()
    if not model:
        raise ItdError("give a model: 'demo', a local diffusers folder, or a hub id like 'CompVis/stable-diffusion-v1-4'")
    if sae_format not in SAE_FORMATS:
        raise ItdError(f"unknown SAE format {sae_format!r}; use one of {', '.join(SAE_FORMATS)}")
    if dtype not in DTYPES:
        raise ItdError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if bf16_screen and dtype != "fp32":
        raise ItdError(f"the bf16 screen serves fp32 weights (it gives their exact result faster): choose the dtype fp32, not {dtype}")
    spec = BundleSpec(
        model=model, sae=sae.strip() or None, sae_subfolder=sae_subfolder.strip() or None, sae_format=sae_format,
        layer=layer.strip() or None, device=device.strip() or "cpu", dtype=dtype, bf16_screen=bf16_screen,
    )
    if spec.provider is None and spec.sae is None:
        raise ItdError("an SAE is needed for a model other than the demo: give the SAE folder (or hub repo)")
    for what, value in (("model", None if spec.provider else spec.model), ("SAE", spec.sae)):
        if value is not None:
            check_readable(value, what)
    return spec


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def allowed_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders the app may load models and SAEs from (``ITD_APP_ROOTS``, see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_ROOTS):
        return [Path(part).expanduser().resolve() for part in environ[ENV_ROOTS].split(os.pathsep) if part.strip()]
    hf_cache = Path(environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    return [PROJECT_ROOT.resolve(), hf_cache.resolve(), Path.home().resolve()]


def check_readable(value: str, what: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise unless ``value`` is a hub id or a path inside :func:`allowed_roots`; the message is the same whether the path exists or not."""
    path = Path(value).expanduser()
    resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
    roots = allowed_roots(environ)
    if any(resolved.is_relative_to(root) for root in roots):
        return
    if not path.is_absolute() and ".." not in path.parts and _HUB_ID.fullmatch(value):
        return  # a hub id: fetched into the Hugging Face cache
    raise ItdError(f"the {what} must be a hub id or a folder inside the app's folders ({', '.join(map(str, roots))}); "
                   f"{ENV_ROOTS} sets them")


def sets_folder(fingerprint: str, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    root = Path(environ[ENV_SETS_DIR]).expanduser() if environ.get(ENV_SETS_DIR) else _cache_root(environ) / "sets"
    return root / fingerprint[:16]

