"""What every ``itd`` command shares: the bundle options, the ``--json`` switch and one way to print a result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from itd_core.errors import ItdError


def add_bundle_options(parser: argparse.ArgumentParser, *, sae: bool = True) -> None:
    """--bundle, --layer, --device, --dtype, and with ``sae`` the options that name the SAE (a command that makes
    its SAE, ``itd sae train``, does not offer them)."""
    group = parser.add_argument_group("bundle")
    group.add_argument("--bundle", default="demo", help="'demo' (ShapesWorld, shipped) or a diffusers folder / hub id (default: demo)")
    if sae:
        group.add_argument("--sae", help="SAE folder or hub repo (needed unless --bundle demo)")
        group.add_argument("--sae-subfolder", help="subfolder inside a hub repo (the paper's repo has one per checkpoint step)")
        group.add_argument("--sae-format", default="auto", choices=["auto", "itd", "saelens", "native"])
    group.add_argument("--layer", help="hooked layer: index or path (default: the demo's layer; 8 for CLIP)")
    add_runtime_options(group, sae=sae)


def add_runtime_options(parser, *, sae: bool = True) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="weights dtype (default: fp32)")
    if sae:
        parser.add_argument("--bf16-screen", action="store_true",
                            help="encode the fp32 SAE through a bf16 screen: the fp32 result, 2-3x faster for large SAEs on a CPU (README, Benchmarks)")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def bundle_from_args(args):
    from itd_core.bundle import BundleSpec, load_bundle
    from itd_core.distributed import process_device

    spec = BundleSpec(model=args.bundle, sae=args.sae, sae_subfolder=args.sae_subfolder, sae_format=args.sae_format,
                      layer=args.layer, device=process_device(args.device), dtype=args.dtype, bf16_screen=args.bf16_screen)
    return load_bundle(spec)


def bundle_for_config(config, args):
    from itd_core.bundle import bundle_spec_for_config, load_bundle
    from itd_core.distributed import process_device

    bundle = load_bundle(bundle_spec_for_config(config, device=process_device(args.device), dtype=args.dtype, bf16_screen=args.bf16_screen))
    bundle.check_config(config)
    return bundle


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def report_truncation(adapter, prompts: Sequence[str]) -> list[int]:
    """Warn about prompts longer than the encoder's window; returns their indices."""
    truncated = []
    for start in range(0, len(prompts), 256):
        batch = adapter.tokenize(prompts[start:start + 256])
        truncated += [start + i for i, cut in enumerate(batch.truncated) if cut]
    if truncated:
        warn(f"{len(truncated)} prompt(s) exceed {adapter.max_length} tokens and were truncated (first: {prompts[truncated[0]][:60]!r})")
    return truncated


def emit(args, document: dict, text: str) -> None:
    if args.json:
        try:
            print(json.dumps(document, indent=2, default=str, allow_nan=False))  # strict JSON: no bare NaN/Infinity
        except ValueError:
            raise ItdError("the result holds a non-finite number (NaN or infinity), which JSON cannot carry; "
                           "check the erasure config and the SAE") from None
    else:
        print(text)
