"""Red-team image benchmark on ShapesWorld: the paper's ItD against the recommended settings, for every concept kind.

    python bench/bench_redteam.py                  # full table: 14 characters, 8 artists, unsafe (README)
    python bench/bench_redteam.py --quick          # 2 characters, 2 artists, unsafe; fewer prompts
    python bench/bench_redteam.py --json out.json  # also write every figure
    python bench/bench_redteam.py --together       # one config per method erasing every concept at once
    python bench/bench_redteam.py --known-only --known-seeds 10   # the known templates alone, on more seeds

Each concept is erased on its own (one config per concept and method, as a user erases one concept). Its
target prompts are its known templates (2 seed slots) and every generated attack family of
:mod:`itd_core.redteam` (evaluation split; the recommended method calibrates on the calibration split,
whose templates, languages and invented names are disjoint); its non-target prompts are generated hard
negatives and retain prompts (two other concepts' known templates, object prompts and six COCO captions). All images come
from the same seeds with no erasure and with each method; the detector judges (see
:mod:`shapesworld.redteam_benchmark`). With ``--together`` one config per method erases every concept at once, and the
non-target prompts that name one of them (other concepts' templates, hard negatives with their names) are left out.
Two columns measure what a perfect name eraser would leave on the known templates, with no erasure: each template with
the concept's name deleted, and with it replaced by invented names (:func:`itd_core.redteam.invented_names`), each from
the known template's own initial noise (a demo UNet that draws a world style for any artist-like name counts there).
The optimisation attack has its own script: ``python -m shapesworld.attack``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapesworld import redteam_benchmark as rb  # noqa: E402
from shapesworld import world  # noqa: E402

METHODS = ("paper", "recommended")
INVENTED_NAMES = 2  # stand-ins per known template in the "invented name" column
QUICK_CONCEPTS = ["Mira Castellane", "Doran Velt", "Ilsa Marvaine", "Odile Fenwright", "unsafe"]


def concept_items(name: str, *, per_family: int, known_seeds: tuple[int, ...], known_only: bool = False) -> list[rb.Item]:
    """Targets (known templates + attack families), hard negatives and retain prompts of one concept."""
    items = [rb.Item(p, "target", rb.world_name(name), "known", known_seeds) for p in rb.known_prompts(name)]
    if known_only:
        return items
    items += rb.redteam_items(name, split="evaluation", per_family=per_family, negatives_per_family=1)
    others = [n for n in rb.other_names(name) if n in world.IDENTITIES + world.ARTISTS][:2] or world.IDENTITIES[:2]
    items += [rb.Item(p, "retain", None, "retain") for n in others for p in rb.known_prompts(n)[:3]]
    items += [rb.Item(r["prompt"], "retain", None, "object") for r in world.erasure_prompts(n_retain=4)["retain"]]
    items += [rb.Item(p, "retain", None, "general") for p in general_prompts()]
    return items


def name_stand_ins(name: str, known: list[rb.Item]) -> dict[str, list[tuple[rb.Item, rb.Item]]]:
    """A character's or artist's known templates with the name deleted, and with it replaced by invented names, each
    paired with the template whose seeds it takes; none for unsafe, which has no name."""
    from itd_core import redteam

    if rb.concept_kind(name) == "unsafe":
        return {"name deleted": [], "invented name": []}
    spelled = rb.world_name(name)
    deleted = [(replace(i, prompt=" ".join(i.prompt.replace(spelled, " ").split()), seed_prompt=i.prompt), i) for i in known]
    invented = [(replace(i, prompt=i.prompt.replace(spelled, other), seed_prompt=i.prompt), i)
                for other in redteam.invented_names(spelled, INVENTED_NAMES) for i in known]
    return {"name deleted": deleted, "invented name": invented}


def stand_in_judgements(bundle, stand_ins: list[tuple[rb.Item, rb.Item]]) -> list[rb.Judged]:
    """Each stand-in image judged as its known template's (so Acc_e counts it where the template's own image shows the concept)."""
    judged, _ = rb.run_items(bundle, [stand_in for stand_in, _ in stand_ins])
    original = {(stand_in.prompt, stand_in.seed_prompt): known for stand_in, known in stand_ins}
    return [replace(j, item=original[(j.item.prompt, j.item.seed_prompt)]) for j in judged]


def names_one_of(prompt: str, concepts: list[str]) -> bool:
    """Whether ``prompt`` holds the name of one of the (character and artist) ``concepts``."""
    text = prompt.casefold()
    return any(rb.world_name(name).casefold() in text for name in concepts if rb.concept_kind(name) != "unsafe")


def general_prompts(start: int = 3000, n: int = 6) -> list[str]:
    """Ordinary prompts the world does not know (shipped COCO captions, far from the ones on the retain side of a selection)."""
    from itd_core.assets import prompt_set
    from itd_core.prompts import read_prompts

    return read_prompts(prompt_set("coco_5k"))[start:start + n]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 concepts, one prompt per family")
    parser.add_argument("--concepts", nargs="+", help="concept names (default: every character and artist, and unsafe)")
    parser.add_argument("--per-family", type=int, help="attack prompts per family (default 2; --quick 1)")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--together", action="store_true", help="erase every concept with one config per method")
    parser.add_argument("--known-seeds", type=int, default=2, help="seed slots per known template (default 2)")
    parser.add_argument("--known-only", action="store_true", help="only the known templates: no attack families, "
                        "hard negatives or retain prompts")
    args = parser.parse_args(argv)
    if args.known_seeds < 1:
        parser.error("--known-seeds must be at least 1")

    from itd_core.bundle import load_bundle

    concepts = args.concepts or (QUICK_CONCEPTS if args.quick else world.IDENTITIES + world.ARTISTS + ["unsafe"])
    per_family = args.per_family or (1 if args.quick else 2)
    bundle = load_bundle("demo")
    started = time.monotonic()
    known_seeds = tuple(range(args.known_seeds))
    items = {name: concept_items(name, per_family=per_family, known_seeds=known_seeds, known_only=args.known_only) for name in concepts}
    if args.together:
        items = {name: [i for i in its if i.group == "target" or not names_one_of(i.prompt, concepts)] for name, its in items.items()}
    everything = [item for name in concepts for item in items[name]]
    unique = list({(i.prompt, i.seeds): i for i in everything}.values())
    print(f"no erasure: {sum(len(i.seeds) for i in unique)} images", file=sys.stderr)
    baseline, reference = rb.run_items(bundle, unique, None, progress=rb.EtaProgress("none"))
    by_prompt = {(j.item.prompt, j.seed): j for j in baseline}
    results: dict[str, dict] = {}
    for method in METHODS:
        judged_all, build_seconds = [], 0.0
        if args.together:
            t = time.monotonic()
            config = rb.build_config(bundle, concepts, method)
            build_seconds = time.monotonic() - t
            judged, _ = rb.run_items(bundle, unique, config, reference=reference, progress=rb.EtaProgress(f"{method}, all at once"))
            by_image = {(j.item.prompt, j.seed): j for j in judged}
            judged_all = [replace(by_image[(i.prompt, s)], item=i) for name in concepts for i in items[name] for s in i.seeds]
        else:
            for index, name in enumerate(concepts):
                t = time.monotonic()
                config = rb.build_config(bundle, [name], method)
                build_seconds += time.monotonic() - t
                judged, _ = rb.run_items(bundle, items[name], config, reference=reference,
                                         progress=rb.EtaProgress(f"{method} {index + 1}/{len(concepts)} {name}"))
                judged_all += judged
        results[method] = {"judged": judged_all, "build_seconds": build_seconds}
    # A prompt can play several parts (a target of one concept, a retain prompt of another): judge it in each.
    baseline_judged = [replace(by_prompt[(i.prompt, s)], item=i) for name in concepts for i in items[name] for s in i.seeds]
    shown = rb.shown_without(baseline_judged)
    summaries = {"none": rb.summarize(baseline_judged)} | {m: rb.summarize(r["judged"], shown) for m, r in results.items()}
    stand_ins = [name_stand_ins(name, [i for i in items[name] if i.group == "target" and i.family == "known"]) for name in concepts]
    for column in ("name deleted", "invented name"):
        pairs = [pair for by_column in stand_ins for pair in by_column[column]]
        if pairs:
            summaries[column] = rb.summarize(stand_in_judgements(bundle, pairs), shown)
    elapsed = time.monotonic() - started
    table = markdown(concepts, summaries, elapsed, per_family, args.known_seeds)
    print(("Every concept erased at once, one config per method. " if args.together else "") + table)
    if args.json:
        Path(args.json).write_text(json.dumps({"concepts": concepts, "together": args.together, "per_family": per_family, "seconds": elapsed,
                                               "summaries": {m: vars(s) for m, s in summaries.items()},
                                               "build_seconds": {m: r["build_seconds"] for m, r in results.items()}}, indent=2))
    return 0


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def markdown(concepts, summaries, elapsed, per_family, known_seeds=2) -> str:
    kinds = {name: rb.concept_kind(name) for name in concepts}
    lines = [f"{len(concepts)} concepts, {per_family} prompt(s) per attack family, {known_seeds} seed slots per known template, "
             f"{elapsed / 60:.1f} min. The 'none' column gives "
             "the share of target images that show the concept without erasure; the methods' Acc_e counts only those images. 'name "
             "deleted' and 'invented name': the known templates without the name, no erasure, from the same noise.", "",
             "| | " + " | ".join(summaries) + " |", "|---|" + "---:|" * len(summaries)]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    for kind in ("person", "artist", "unsafe"):
        names = [n for n in concepts if kinds[n] == kind]
        if names:
            row(f"Acc_e known templates, {kind} (worst concept)", [_mean_and_worst([s.acc_e_known.get(n) for n in names])
                                                                    for s in summaries.values()])
    families = sorted({f for s in summaries.values() for f in s.acc_e_by_family if f != "known"})
    for family in families:
        row(f"Acc_e {family}", [_pct(s.acc_e_by_family.get(family)) for s in summaries.values()])
    row("Acc_r (retain prompts: named labels right)", [_pct(s.acc_r) for s in summaries.values()])
    row("non-target images bit-identical", [_pct(s.bit_identical) for s in summaries.values()])
    row("hard negatives edited (FPR), all families", [_pct(s.negative_edited) for s in summaries.values()])
    for family in sorted({f for s in summaries.values() for f in s.negative_edited_by_family}):
        row(f"hard negatives edited: {family}", [_pct(s.negative_edited_by_family.get(family)) for s in summaries.values()])
    row("retain prompts edited", [_pct(s.retain_edited) for s in summaries.values()])
    row("content preserved (targets naming shape/colour)", [_pct(s.content_preserved) for s in summaries.values()])
    return "\n".join(lines)


def _mean_and_worst(values) -> str:
    values = [v for v in values if v is not None]
    return f"{_pct(_mean(values))} ({_pct(max(values))})" if values else ""


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
