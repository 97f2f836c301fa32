"""The ``itd`` command line (also ``python -m itd_cli``): the engine's commands, and the parser that assembles them
with the feature index's (:mod:`itd_cli.index_commands`).

Every command takes ``--json`` and then prints exactly one JSON document on stdout; progress
and warnings go to stderr; errors go to stderr with exit status 1 (2 for usage errors), and
no partial output file is left behind (every file is written atomically).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from itd_cli.common import add_bundle_options, add_json_option, add_runtime_options, bundle_for_config, bundle_from_args, emit, report_truncation
from itd_core.atomic import file_lock
from itd_core.defaults import DEFAULT_SPECIFIC_MAX_RETAIN, DEFAULT_TOP_N, GUIDANCE, LEARNING_RATE, STEPS
from itd_core.errors import ItdError

# --------------------------------------------------------------------------- sae


def cmd_sae_info(args) -> None:
    from itd_core.sae_formats import detect_format, load_sae

    path = Path(args.src)
    sae_format = detect_format(path) if args.format == "auto" else args.format
    sae = load_sae(path, format=sae_format, dtype=None)  # as stored: the dtype reported is the file's
    info = {"path": str(path), "format": sae_format, **sae.config.model_dump(), "dtype": str(sae.W_dec.dtype).removeprefix("torch."), "fingerprint": sae.fingerprint}
    emit(args, info, "\n".join(f"{k:>20}: {v}" for k, v in info.items())
         + "\n(the fingerprint is computed from the weights; the folder holds no reference to verify it against: "
           "an erasure config checks its sae.sha256 against it when used)")


def cmd_sae_convert(args) -> None:
    from itd_core.encoders import parse_dtype
    from itd_core.sae_formats import detect_format, load_sae, save_sae

    sae_format = detect_format(args.src) if args.format == "auto" else args.format
    sae = load_sae(args.src, format=sae_format, dtype=parse_dtype(args.dtype) if args.dtype else None)
    save_sae(sae, args.output, format=args.to)
    document = {"source": str(args.src), "source_format": sae_format, "output": str(args.output), "format": args.to, "fingerprint": sae.fingerprint}
    emit(args, document, f"wrote {args.to} SAE to {args.output} (fingerprint {sae.fingerprint[:12]}…)")


def cmd_sae_train(args) -> None:
    from itd_core.bundle import BundleSpec, load_adapter
    from itd_core.prompts import read_prompt_files
    from itd_core.training import TrainingConfig, train_sae_from_prompts

    adapter, _ = load_adapter(BundleSpec(model=args.bundle, layer=args.layer, device=args.device, dtype=args.dtype))
    prompts = read_prompt_files(args.prompts)
    report_truncation(adapter, prompts)
    config = TrainingConfig(n_latents=args.latents, k=args.k, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                            **({"steps": args.steps} if args.steps else {}))
    sae, metrics = train_sae_from_prompts(adapter, prompts, args.output, config, cache_dir=args.cache_dir)
    sae_folder = Path(args.output) / "sae"
    emit(args, {"output": str(args.output), "sae": str(sae_folder), "metrics": metrics},
         f"trained SAE saved to {sae_folder} (checkpoints, log and metrics of the run in {args.output})\n" + json.dumps(metrics, indent=2, default=str))


# --------------------------------------------------------------------------- concept


def _phrasings_wanted(args, config) -> bool:
    """Generated phrasings go into selection and calibration when the config has the recommended method, unless the user says no."""
    return args.phrasings if args.phrasings is not None else config.method_name() == "recommended"


def _generated_sets(config, name: str, kind: str | None, args) -> tuple[list[str], list[str]]:
    """Generated phrasings and hard negatives (calibration split) of a concept, with the config's other concepts as others."""
    from itd_core.redteam import CONCEPT_KINDS, calibration_sets

    kind = kind or "person"
    if kind not in CONCEPT_KINDS:
        raise ItdError(f"generated phrasings exist for kinds {', '.join(CONCEPT_KINDS)}; concept {name!r} is of kind {kind!r} (give --no-phrasings)")
    others = [c.name for c in config.concepts if c.name != name and (c.kind or "person") == kind] + list(args.others or [])
    return calibration_sets(name, kind, others=others, exclude=[c.name for c in config.concepts if c.name != name], seed=args.phrasings_seed)


def _styled_retain(retain: list[str], args) -> list[str]:
    """Styled copies of the retain prompts (:func:`itd_core.redteam.styled_copies`): they join the retain side with the generated sets."""
    from itd_core.redteam import styled_copies

    return styled_copies(retain, seed=args.phrasings_seed)


def cmd_concept_select(args) -> None:
    with file_lock(args.output):  # a read-modify-write of the config: concurrent commands must not lose each other's change
        _concept_select(args)


def _concept_select(args) -> None:
    from itd_core.concept import RECOMMENDED_MIN_SHARE, RECOMMENDED_RETAIN_MARGIN, RECOMMENDED_SPECIFIC_SHARE, select_concept
    from itd_core.erasure_config import ConceptEntry, ErasureConfig, FeatureEntry
    from itd_core.prompts import expand_templates, read_prompt_files, read_prompts

    if args.prompts:
        prompts = read_prompt_files(args.prompts)
    else:
        prompts = expand_templates(args.concept, read_prompts(args.templates))
    retain = read_prompt_files(args.retain)
    output = Path(args.output)
    existing = ErasureConfig.load(output) if output.exists() else None  # an invalid file is reported, not overwritten
    bundle = bundle_from_args(args)
    config = existing or bundle.new_erasure_config(args.method)
    if existing:
        bundle.check_config(existing)
    phrasings = _phrasings_wanted(args, config)
    generated, hard_negatives = _generated_sets(config, args.concept, args.kind, args) if phrasings else ([], [])
    report_truncation(bundle.adapter, prompts + retain)
    styled = _styled_retain(retain, args) if phrasings else []
    paper = not phrasings
    margin = args.retain_margin if args.retain_margin is not None else (None if paper else RECOMMENDED_RETAIN_MARGIN)
    min_share = args.min_share if args.min_share is not None else (0.0 if paper else RECOMMENDED_MIN_SHARE)
    specific_share = args.specific_share if args.specific_share is not None else (0.0 if paper else RECOMMENDED_SPECIFIC_SHARE)
    selection = select_concept(bundle.adapter, bundle.sae, args.concept, config.selection_prompts(prompts + generated, args.concept),
                               retain + styled + hard_negatives, top_n=args.top_n, retain_margin=margin, min_share=min_share,
                               specific_share=specific_share, specific_max_retain=args.specific_max_retain)
    if not selection.features:
        raise ItdError(f"no features left for {args.concept!r}: every top-{args.top_n} feature of its prompts also ranks in the top-{args.top_n} of a retain prompt; "
                       "try a larger --top-n or a retain set without the concept")
    strength = args.strength if args.strength is not None else config.default_strength(args.kind)
    concept = ConceptEntry(
        name=args.concept, kind=args.kind, prompts=prompts,
        features=[FeatureEntry(id=f.id, strength=strength, label=" ".join(f.peak_tokens[:2])) for f in selection.features],
    )
    config.upsert(concept)
    config.save(output)
    document = {"output": str(output), "concept": args.concept, "n_features": len(selection.features), "method": config.method_name(),
                "generated_phrasings": len(generated), "generated_hard_negatives": len(hard_negatives), "styled_retain": len(styled), "selection": selection.model_dump()}
    lines = [f"{args.concept}: {len(selection.features)} features (of {selection.candidates} candidates; {selection.removed_by_retain} removed by the retain set)",
             f"{'id':>8} {'hits':>5} {'mean':>8} {'max':>8} {'retain%':>8}  tokens"]
    lines += [f"{f.id:>8} {f.concept_hits:>5} {f.mean_activation:>8.3f} {f.max_activation:>8.3f} {100 * f.retain_fire_rate:>7.1f}%  {' '.join(f.peak_tokens)}"
              for f in selection.features[:20]]
    lines.append(f"saved to {output} (not calibrated yet: run `itd calibrate {output} ...`)")
    emit(args, document, "\n".join(lines))


def _parse_strengths(items: Sequence[str]) -> dict[int, float]:
    strengths = {}
    for item in items:
        feature, _, value = item.partition("=")
        try:
            strengths[int(feature)] = float(value)
        except ValueError:
            raise ItdError(f"--strength takes FEATURE=VALUE, e.g. 1234=-4, got {item!r}") from None
    return strengths


def cmd_concept_edit(args) -> None:
    """Manual curation on top of the selection: add/remove features, per-feature strength and label."""
    with file_lock(args.config):  # a read-modify-write of the config: concurrent commands must not lose each other's change
        _concept_edit(args)


def _concept_edit(args) -> None:
    from itd_core.erasure_config import ErasureConfig, FeatureEntry

    config = ErasureConfig.load(args.config)
    concept = config.concept(args.concept)
    features = {f.id: f for f in concept.features}
    for feature in args.remove or []:
        if features.pop(feature, None) is None:
            raise ItdError(f"feature {feature} is not in concept {args.concept!r}")
    for feature in args.add or []:
        features.setdefault(feature, FeatureEntry(id=feature, strength=args.default_strength if args.default_strength is not None
                                                  else config.default_strength(concept.kind)))
    for feature, strength in _parse_strengths(args.strength or []).items():
        if feature not in features:
            raise ItdError(f"feature {feature} is not in concept {args.concept!r}: add it first with --add")
        features[feature] = features[feature].model_copy(update={"strength": strength})
    for item in args.label or []:
        feature, _, label = item.partition("=")
        if not feature.isdigit() or int(feature) not in features:
            raise ItdError(f"--label takes FEATURE=TEXT for a feature of the concept, got {item!r}")
        features[int(feature)] = features[int(feature)].model_copy(update={"label": label})
    if not features:
        raise ItdError(f"concept {args.concept!r} would have no features left; remove the concept instead")
    concept.features = list(features.values())
    ErasureConfig.from_dict(json.loads(config.to_json()), source=str(args.config)).save(args.config)  # validates before writing
    document = {"config": str(args.config), "concept": args.concept, "features": [f.model_dump() for f in concept.features]}
    emit(args, document, f"{args.concept}: {len(concept.features)} features; saved {args.config}"
         + ("" if concept.threshold is None else " (the threshold was calibrated for the old set: recalibrate)"))


# --------------------------------------------------------------------------- classifier


def cmd_calibrate(args) -> None:
    with file_lock(args.config):  # a read-modify-write of the config: concurrent commands must not lose each other's change
        _calibrate(args)


def _calibrate(args) -> None:
    from itd_core.calibration import DEFAULT_FPR, RECOMMENDED_TARGET_FPR
    from itd_core.erasure_config import ErasureConfig
    from itd_core.prompts import read_prompt_files

    config = ErasureConfig.load(args.config)
    if args.score_positions and args.score_positions != config.score_positions:
        if args.concept:
            raise ItdError(f"--score-positions {args.score_positions} changes the score of every concept: calibrate them all (drop --concept)")
        config.score_positions = args.score_positions
    rule = args.rule or ("phrasings" if config.method_name() == "recommended" else "paper")
    target_fpr = args.fpr if args.fpr is not None else (RECOMMENDED_TARGET_FPR if rule == "phrasings" else DEFAULT_FPR)
    retain = read_prompt_files(args.retain)  # files first: a missing one is reported before any model loads
    target_file_prompts = read_prompt_files(args.target) if args.target else None
    bundle = bundle_for_config(config, args)
    names = [args.concept] if args.concept else [c.name for c in config.concepts]
    deactivator = config.deactivator(bundle.sae)
    generated_sets = rule == "phrasings" and args.phrasings is not False
    styled = _styled_retain(retain, args) if generated_sets else []
    retain_scores = deactivator.score_prompts(bundle.adapter, retain + styled, name_rules=False)
    report = []
    file_scores = deactivator.score_prompts(bundle.adapter, target_file_prompts, name_rules=False) if target_file_prompts else None  # shared by all concepts
    for name in names:
        concept = config.concept(name)
        index = [c.name for c in config.concepts].index(name)
        if file_scores is None and not concept.prompts:
            raise ItdError(f"concept {name!r} has no stored prompts: give --target FILE")
        scores = file_scores if file_scores is not None else deactivator.score_prompts(bundle.adapter, concept.prompts, name_rules=False)
        target_scores = scores[:, index].tolist()
        sets = [str(p) for p in (args.target or [])] + [str(p) for p in args.retain] or ["concept prompts"]
        hard_scores: list[float] = []
        if generated_sets:
            generated, hard_negatives = _generated_sets(config, name, concept.kind, args)
            target_scores += deactivator.score_prompts(bundle.adapter, generated, name_rules=False)[:, index].tolist()
            hard_scores = deactivator.score_prompts(bundle.adapter, hard_negatives, name_rules=False)[:, index].tolist()
            sets += [f"{len(generated)} generated phrasings", f"{len(hard_negatives)} generated hard negatives (seed {args.phrasings_seed})",
                     f"{len(styled)} styled copies of the retain prompts"]
        measured = concept.calibrate(target_scores, retain_scores[:, index].tolist(), rule=rule, target_fpr=target_fpr,
                                     hard_negative_scores=hard_scores, sets=sets)
        report.append({"concept": name, "threshold": concept.threshold, **measured.model_dump()})
    config.save(args.config)
    lines = [f"{r['concept']}: threshold {r['threshold']:.6g}  TPR {r['tpr']:.3f} ({r['n_target']} target)  FPR {r['fpr']:.3f} ({r['n_retain']} negative)" for r in report]
    emit(args, {"config": str(args.config), "rule": rule, "concepts": report}, "\n".join(lines))


def cmd_classify(args) -> None:
    from itd_core.erasure_config import ErasureConfig

    empty = [i for i, p in enumerate(args.prompts) if not p.strip()]
    if empty:
        raise ItdError(f"prompt {empty[0] + 1} is empty: give some text to classify")
    config = ErasureConfig.load(args.config)
    bundle = bundle_for_config(config, args)
    truncated = set(report_truncation(bundle.adapter, args.prompts))
    deactivator = config.deactivator(bundle.sae)
    thresholds = deactivator.threshold_tensor()
    score_table = deactivator.score_prompts(bundle.adapter, args.prompts)  # as the pipeline hook decides, folding included
    names = [c.name for c in config.concepts]
    rows = []
    scores = score_table.tolist()
    triggered = (score_table >= thresholds).tolist()
    for i, prompt in enumerate(args.prompts):
        rows.append({
            "prompt": prompt, "edited": any(triggered[i]), "truncated": i in truncated,
            "concepts_hit": [n for n, hit in zip(names, triggered[i]) if hit],
            "scores": dict(zip(names, scores[i])),
            "thresholds": {c.name: c.threshold for c in config.concepts},
        })
    lines = []
    for row in rows:
        verdict = "EDITED   " if row["edited"] else "untouched"
        detail = ", ".join(f"{n} {row['scores'][n]:.4g}/{row['thresholds'][n]:.4g}" for n in names)
        lines.append(f"{verdict} {row['prompt'][:60]!r}  [{detail}]" + (f"  hits: {', '.join(row['concepts_hit'])}" if row["concepts_hit"] else ""))
    emit(args, {"config": str(args.config), "prompts": rows}, "\n".join(lines))


def cmd_eval(args) -> None:
    from itd_core.calibration import rates
    from itd_core.erasure_config import ErasureConfig
    from itd_core.prompts import read_prompt_files

    config = ErasureConfig.load(args.config)
    if args.images:
        return _eval_images(config, args)
    if not args.retain:
        raise ItdError("eval needs --retain FILE (prompts the concepts must leave alone), or --images on the demo bundle")
    retain, targets = read_prompt_files(args.retain), (read_prompt_files(args.target) if args.target else None)  # before any model loads
    bundle = bundle_for_config(config, args)
    deactivator = config.deactivator(bundle.sae)
    retain_scores = deactivator.score_prompts(bundle.adapter, retain)
    file_scores = deactivator.score_prompts(bundle.adapter, targets) if targets else None  # shared by all concepts
    report = []
    for index, concept in enumerate(config.concepts):
        scores = file_scores if file_scores is not None else (deactivator.score_prompts(bundle.adapter, concept.prompts) if concept.prompts else None)
        target_scores = scores[:, index].tolist() if scores is not None else []
        measured = rates(concept.threshold, target_scores, retain_scores[:, index].tolist()) if concept.threshold is not None else None
        report.append({"concept": concept.name, "threshold": concept.threshold, **(measured.model_dump() if measured else {"tpr": None, "fpr": None})})
    lines = [f"{r['concept']}: TPR {r['tpr']}  FPR {r['fpr']}" if r["threshold"] is not None else f"{r['concept']}: not calibrated" for r in report]
    emit(args, {"config": str(args.config), "concepts": report}, "\n".join(lines))


def _eval_images(config, args) -> None:
    """Generate with and without the config's erasure, from the same seeds; the bundle provider's image judge
    (on the demo, the world's detector) says what each image shows."""
    from itd_core import providers

    provider = providers.get(config.model.id_or_path)  # checked before loading a model only to refuse it
    world = provider.world if provider else None
    if world is None or world.image_judge is None or world.image_judge.evaluate is None:
        raise ItdError(f"--images needs a bundle whose provider judges images (the demo's detector does); this config is for {config.model.id_or_path!r}")
    if args.seeds < 1:
        raise ItdError(f"--seeds takes a number of seeds per prompt (at least 1), got {args.seeds}")
    names = [concept.name for concept in config.concepts]
    unknown = [name for name in names if world.concept_vocabulary is None or world.concept_vocabulary(name) is None]
    if unknown:  # a concept the judge cannot judge is an error before any image is made
        known = list(world.concept_presets()) if world.concept_presets else []
        raise ItdError(f"{', '.join(map(repr, unknown))} is not a concept the {provider.title}'s image judge knows"
                       + (f" (it knows {', '.join(known[:4])}, ...)" if known else ""))
    targets = [(prompt, _config_concept(names, concept, path)) for path in args.target for prompt, concept in _read_target_rows(path)] if args.target else None
    if args.retain:
        from itd_core.prompts import read_prompt_files

        retain = read_prompt_files(args.retain)
    else:
        retain = None
    bundle = bundle_for_config(config, args)
    document = world.image_judge.evaluate(bundle, config, targets=targets, retain=retain, seeds=args.seeds, per_family=args.per_family,
                                          steps=args.steps, guidance=args.guidance)
    document = {"config": str(args.config), **document}
    emit(args, document, world.image_judge.report(document) if world.image_judge.report else json.dumps(document, indent=2))


def _read_target_rows(path) -> list[tuple[str, str]]:
    """``prompt,concept`` rows of a target CSV."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise ItdError(f"target file not found: {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"prompt", "concept"} - set(reader.fieldnames or [])
        if missing:
            raise ItdError(f"{path}: --images needs a CSV with columns prompt,concept (missing: {', '.join(sorted(missing))})")
        rows = [(row["prompt"].strip(), row["concept"].strip()) for row in reader if (row["prompt"] or "").strip()]
    if not rows:
        raise ItdError(f"{path} holds no prompts")
    return rows


def _config_concept(names: Sequence[str], concept: str, path) -> str:
    for name in names:
        if name.casefold() == concept.casefold():
            return name
    raise ItdError(f"{path}: concept {concept!r} is not in the erasure config (concepts: {', '.join(names)})")


# --------------------------------------------------------------------------- generate


def cmd_generate(args) -> None:
    from itd_core.erasure_config import ErasureConfig
    from itd_core.pipeline import GenerationCache, GenerationSettings, generate_side_by_side, side_by_side_image

    if (args.side_by_side or args.edit_strength is not None) and not args.erasure:
        raise ItdError(f"{'--side-by-side' if args.side_by_side else '--edit-strength'} needs --erasure erasure.json")
    config = ErasureConfig.load(args.erasure) if args.erasure else None
    bundle = bundle_from_args(args)
    if config:
        bundle.check_config(config)
    settings = GenerationSettings(steps=args.steps, size=args.size, guidance=args.guidance)
    prompts = args.prompt
    seeds = [args.seed + i for i in range(len(prompts))]
    report_truncation(bundle.adapter, prompts)
    output = Path(args.output)
    if config is None:
        from itd_core.pipeline import generate_images

        images = generate_images(bundle.pipeline, prompts, seeds, settings)
        rows = [{"prompt": p, "seed": s} for p, s in zip(prompts, seeds)]
        _save_images(images, output, scale=args.scale)
    else:
        pairs = generate_side_by_side(bundle.pipeline, config, bundle.sae, prompts, seeds, settings, model_id=bundle.model_id,
                                      cache=None if args.no_cache else GenerationCache(), edit_strength=args.edit_strength)
        rows = [{"prompt": p.prompt, "seed": p.seed, "edited": p.edited, "scores": p.scores, "triggered": p.triggered, "identical": p.identical} for p in pairs]
        if args.side_by_side:
            _save_image(side_by_side_image(pairs, scale=args.scale), output)
        else:
            _save_images([p.erased for p in pairs], output, scale=args.scale)
    text = "\n".join(f"{'EDITED   ' if r.get('edited') else 'untouched'} seed {r['seed']} {r['prompt'][:60]!r}" for r in rows) + f"\nsaved {output}"
    emit(args, {"output": str(output), "images": rows}, text)


def _save_image(image, output: Path) -> None:
    from io import BytesIO

    from itd_core.atomic import atomic_write_bytes

    if output.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp"}:
        raise ItdError(f"output {output} needs an image extension (.png, .jpg, .webp)")
    buffer = BytesIO()
    image.save(buffer, format="PNG" if output.suffix.lower() == ".png" else output.suffix.lstrip(".").upper().replace("JPG", "JPEG"))
    atomic_write_bytes(output, buffer.getvalue())


def _save_images(images, output: Path, scale: int) -> None:
    """One image: as is; several: side by side in a row."""
    from PIL import Image

    width, height = images[0].size
    sheet = Image.new("RGB", (width * scale * len(images), height * scale))
    for i, image in enumerate(images):
        sheet.paste(image.resize((width * scale, height * scale), Image.NEAREST), (i * width * scale, 0))
    _save_image(sheet, output)


# --------------------------------------------------------------------------- parser


def _add_phrasing_options(parser) -> None:
    parser.add_argument("--phrasings", action=argparse.BooleanOptionalAction, default=None,
                        help="add generated phrasings of the concept, generated hard negatives (itd_core.redteam, calibration split) and styled copies "
                             "of the retain prompts (modifier tails: 'highly detailed, 8k') "
                             "(default: on for a config with the recommended method)")
    parser.add_argument("--others", action="extend", nargs="+", metavar="NAME", help="other names of the same kind for the hard negatives "
                                                                                   "(default: the config's other concepts, and invented names)")
    parser.add_argument("--phrasings-seed", type=int, default=0, help="seed of the generated phrasings (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    from itd_core.deactivation import SCORE_POSITIONS

    parser = argparse.ArgumentParser(prog="itd", description="ItD Explorer: SAEs on diffusion text encoders, concept search and erasure.")
    commands = parser.add_subparsers(dest="command", required=True)

    sae = commands.add_parser("sae", help="train, inspect and convert SAEs").add_subparsers(dest="sae_command", required=True)
    info = sae.add_parser("info", help="describe an SAE folder")
    info.add_argument("src")
    info.add_argument("--format", default="auto", choices=["auto", "itd", "saelens", "native"])
    add_json_option(info)
    info.set_defaults(handler=cmd_sae_info)

    convert = sae.add_parser("convert", help="convert between the itd, saelens and native formats (bit-exact)")
    convert.add_argument("src")
    convert.add_argument("-o", "--output", required=True)
    convert.add_argument("--to", required=True, choices=["itd", "saelens", "native"])
    convert.add_argument("--format", default="auto", choices=["auto", "itd", "saelens", "native"], help="source format")
    convert.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="cast the weights (default: keep)")
    add_json_option(convert)
    convert.set_defaults(handler=cmd_sae_convert)

    train = sae.add_parser("train", help="train a TopK SAE on a layer's activations over prompt files")
    add_bundle_options(train, sae=False)
    train.add_argument("--prompts", action="extend", nargs="+", required=True, metavar="FILE")
    train.add_argument("--latents", type=int, required=True)
    train.add_argument("--k", type=int, required=True)
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", type=int, default=4096, help="tokens per step")
    train.add_argument("--lr", type=float, default=LEARNING_RATE, help=f"Adam learning rate (default: {LEARNING_RATE:g})")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--cache-dir", help="activation cache folder (default: inside the output folder)")
    train.add_argument("-o", "--output", required=True)
    add_json_option(train)
    train.set_defaults(handler=cmd_sae_train)

    concept = commands.add_parser("concept", help="select a concept's features").add_subparsers(dest="concept_command", required=True)
    select = concept.add_parser("select", help="ItD selection: top-N features of the concept prompts minus the retain set's")
    add_bundle_options(select)
    select.add_argument("--concept", required=True, help="concept name")
    source = select.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", action="extend", nargs="+", metavar="FILE", help="concept prompts")
    source.add_argument("--templates", metavar="FILE", help="templates with '{}' for the name")
    select.add_argument("--retain", action="extend", nargs="+", required=True, metavar="FILE")
    select.add_argument("--top-n", type=int, default=DEFAULT_TOP_N, help=f"top-N per prompt (paper: {DEFAULT_TOP_N}; 256 for art styles)")
    select.add_argument("--strength", type=float, help="deactivation strength (default: the config's method and the concept's kind; "
                                                       "-8 for the paper's; with the recommended, -1 for people and artists, -3 for unsafe, -2 otherwise)")
    select.add_argument("--kind", choices=["person", "artist", "unsafe", "other"], help="what the concept is (generated phrasings depend on it; default: person)")
    select.add_argument("--method", choices=["recommended", "paper"], default="recommended",
                        help="method switches of a NEW config (README: 'Erasure methods'); an existing config keeps its own (default: recommended)")
    _add_phrasing_options(select)
    select.add_argument("--retain-margin", type=float, help="drop a feature only when the retain share is at least this times the concept share "
                                                            "(default: 0.25 with phrasings; else none, the paper's rule)")
    select.add_argument("--min-share", type=float, help="keep features in the top-N of at least this share of the concept prompts (default: 0.2 with phrasings, else 0)")
    select.add_argument("--specific-share", type=float, help="also keep features that fire on at least this share of the concept prompts and on at most "
                                                             "--specific-max-retain of the retain prompts (default: 0.15 with phrasings, else 0: off)")
    select.add_argument("--specific-max-retain", type=float, default=DEFAULT_SPECIFIC_MAX_RETAIN, help=f"see --specific-share (default: {DEFAULT_SPECIFIC_MAX_RETAIN})")
    select.add_argument("-o", "--output", required=True, help="erasure config to create or add the concept to")
    add_json_option(select)
    select.set_defaults(handler=cmd_concept_select)

    edit = concept.add_parser("edit", help="curate a concept by hand: add/remove features, set strengths and labels")
    edit.add_argument("config")
    edit.add_argument("--concept", required=True)
    edit.add_argument("--add", action="extend", nargs="+", type=int, metavar="FEATURE")
    edit.add_argument("--remove", action="extend", nargs="+", type=int, metavar="FEATURE")
    edit.add_argument("--strength", action="extend", nargs="+", metavar="FEATURE=VALUE", help="per-feature strength, e.g. 1234=-4")
    edit.add_argument("--label", action="extend", nargs="+", metavar="FEATURE=TEXT")
    edit.add_argument("--default-strength", type=float, help="strength of added features (default: as `concept select` gives for the config's method and the concept's kind)")
    add_json_option(edit)
    edit.set_defaults(handler=cmd_concept_edit)

    calibrate = commands.add_parser("calibrate", help="set the classifier thresholds of an erasure config")
    calibrate.add_argument("config")
    calibrate.add_argument("--target", action="extend", nargs="+", metavar="FILE", help="target prompts (default: the concept's stored prompts)")
    calibrate.add_argument("--retain", action="extend", nargs="+", required=True, metavar="FILE")
    calibrate.add_argument("--rule", choices=["paper", "fpr", "phrasings"],
                           help="paper: 0.99 x min target score (brittle: fitted to the few target prompts, a prompt worded a little "
                                "differently can fall below it); fpr: a false-positive rate on the retain set; phrasings: that rate on the retain set "
                                "and on generated hard negatives, TPR over the targets plus generated phrasings (default: phrasings for a config with "
                                "the recommended method, else paper)")
    calibrate.add_argument("--fpr", type=float, help="target false-positive rate (default: 0.02 for phrasings, 0.01 for fpr)")
    _add_phrasing_options(calibrate)
    calibrate.add_argument("--concept", help="only this concept (default: all)")
    calibrate.add_argument("--score-positions", choices=list(SCORE_POSITIONS),
                           help="what the score averages over: every padded position (the paper's) or the prompt's own "
                                "tokens; saved in the config (default: keep the config's, 'all' for a new one)")
    add_runtime_options(calibrate)
    add_json_option(calibrate)
    calibrate.set_defaults(handler=cmd_calibrate)

    classify = commands.add_parser("classify", help="which prompts an erasure config edits, with scores")
    classify.add_argument("config")
    classify.add_argument("prompts", nargs="+", metavar="PROMPT")
    add_runtime_options(classify)
    add_json_option(classify)
    classify.set_defaults(handler=cmd_classify)

    evaluate = commands.add_parser("eval", help="classifier TPR/FPR per concept; with --images, the erasure benchmark on the demo")
    evaluate.add_argument("config")
    evaluate.add_argument("--target", action="extend", nargs="+", metavar="FILE", help="target prompts (with --images: a CSV with columns prompt,concept)")
    evaluate.add_argument("--retain", action="extend", nargs="+", metavar="FILE")
    images = evaluate.add_argument_group("image benchmark (demo bundle; concepts named after ShapesWorld characters, artists, or 'unsafe')")
    images.add_argument("--images", action="store_true",
                        help="generate each prompt with and without the erasure (same seed); the detector judges: Acc_e per concept and "
                             "attack family, Acc_r, bit-identical share, content preservation. --target FILE is a CSV with columns "
                             "prompt,concept; without it, the concepts' known templates and generated attack families and hard negatives")
    images.add_argument("--seeds", type=int, default=2, help="seeds per prompt (default: 2; each prompt x slot gets its own seed)")
    images.add_argument("--per-family", type=int, default=1, help="generated prompts per attack family without --target (default: 1)")
    images.add_argument("--steps", type=int, default=STEPS, help="denoising steps")
    images.add_argument("--guidance", type=float, default=GUIDANCE)
    add_runtime_options(evaluate)
    add_json_option(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    generate = commands.add_parser("generate", help="generate images, with and without erasure")
    add_bundle_options(generate)
    generate.add_argument("--erasure", metavar="erasure.json")
    generate.add_argument("--prompt", action="extend", nargs="+", required=True, help="one or more prompts (list them, or repeat --prompt)")
    generate.add_argument("--seed", type=int, default=0, help="seed of the first prompt (the next ones get seed+1, ...)")
    generate.add_argument("--steps", type=int, default=STEPS)
    generate.add_argument("--size", type=int, help="pixels (default: the model's)")
    generate.add_argument("--guidance", type=float, default=GUIDANCE)
    generate.add_argument("--edit-strength", type=float, metavar="S",
                          help="with --erasure: multiply the triggered concepts' features by S in the edit (the classifier keeps the config's strengths)")
    generate.add_argument("--side-by-side", action="store_true", help="original left, erased right")
    generate.add_argument("--scale", type=int, default=1, help="enlarge the saved image (nearest neighbour)")
    generate.add_argument("--no-cache", action="store_true")
    generate.add_argument("-o", "--output", required=True)
    add_json_option(generate)
    generate.set_defaults(handler=cmd_generate)

    from itd_cli.index_commands import add_index_commands

    add_index_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except ItdError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a read-only folder, a permission: files already written stay as they were
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
