"""``itd index ...``: build and query a feature index from the command line.

Hooked into the ``itd`` parser by :func:`add_index_commands` (called from :func:`itd_cli.main.build_parser`).
Like every ``itd`` command: ``--json`` prints one JSON document on stdout, progress goes to stderr,
bad input raises :class:`ItdError` (stderr, exit status 1).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from itd_cli.common import add_bundle_options, add_json_option, bundle_from_args, emit
from itd_core.defaults import DEFAULT_TOP_K, DEFAULT_TOP_N
from itd_core.errors import ItdError


def _add_index_options(parser) -> None:
    add_bundle_options(parser)
    parser.add_argument("--index-dir", help="the index folder (default: $ITD_INDEX_DIR/<SAE fingerprint[:16]>, "
                                            "ITD_INDEX_DIR defaulting to ~/.cache/itd-explorer/index)")
    add_json_option(parser)


def _open_index(args):
    from feature_index.index import FeatureIndex

    return FeatureIndex.open(bundle_from_args(args), args.index_dir)


def _feature_id(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ItdError(f"FEATURE_ID must be an integer, got {text!r}") from None


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise ItdError(f"{name} must be at least 1, got {value}")
    return value


class _StderrProgress:
    """tqdm bars on stderr, one per stage."""

    def __init__(self):
        self.bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


# --------------------------------------------------------------------------- handlers


def cmd_index_build(args) -> None:
    from itd_core.distributed import distributed_state
    from itd_core.prompts import read_prompt_files

    _positive(args.top_k, "--top-k")
    _positive(args.batch_size, "--batch-size")
    prompts = read_prompt_files(args.corpus)
    index = _open_index(args)
    main_process = distributed_state().is_main_process  # under `accelerate launch`, the other processes stay quiet
    progress = _StderrProgress() if main_process else None
    try:
        report = index.build(prompts, progress=progress, top_k=args.top_k, batch_size=args.batch_size, activation_cache=args.activation_cache,
                             faiss_factory=None if args.faiss == "auto" else args.faiss, feature_map=args.map)
    finally:
        if progress:
            progress.close()
    if not main_process:
        return
    for warning in report.stats.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    s = report.stats
    text = (f"index {report.folder}\n"
            f"statistics: {'reused' if s.reused else 'built'} for {s.n_prompts} prompts ({s.n_empty_prompts} empty), {s.n_tokens} tokens"
            + (f", {s.tokens_per_second:.0f} tokens/s" if s.tokens_per_second else "") + "\n"
            f"FAISS: {report.faiss['factory']} over {report.faiss['n_features']} x {report.faiss['dimension']} ({'reused' if report.faiss.get('reused') else 'built'})"
            + (f"\nmap: {report.feature_map['method']} ({report.feature_map['seconds']} s)" if report.feature_map else ""))
    emit(args, report.model_dump(), text)


def cmd_index_similar(args) -> None:
    feature = _feature_id(args.feature_id)
    k = _positive(args.k, "-k")
    index = _open_index(args)
    neighbors = index.similar(feature, k)
    label = index.labels.get(feature)
    document = {"feature": feature, "label": label, "k": k, "index": index.ensure_decoder_index()["factory"], "similar": [n.model_dump() for n in neighbors]}
    lines = [f"features most similar to {feature}" + (f" ({label})" if label else "") + " by decoder cosine:"]
    lines += [f"{n.id:>8}  {n.cosine:+.4f}  {n.label or ''}" for n in neighbors]
    emit(args, document, "\n".join(lines))


def cmd_index_search(args) -> None:
    limit = _positive(args.limit, "--limit")
    index = _open_index(args)
    hits = index.search_text(args.query, limit=limit)
    document = {"query": args.query, "hits": [h.model_dump() for h in hits], "has_stats": index.has_stats}
    lines = [f"{len(hits)} feature(s) for {args.query!r}" + ("" if index.has_stats else " (labels only: no corpus statistics yet)")]
    lines += [f"{h.feature:>8}  {h.score:5.2f}  {'+'.join(h.matched):<12} {h.label or ''}  {' '.join(h.tokens)}" for h in hits]
    emit(args, document, "\n".join(lines))


def cmd_index_top_examples(args) -> None:
    feature = _feature_id(args.feature_id)
    k = _positive(args.k, "-k")
    index = _open_index(args)
    stats = index.stats(feature)
    examples = index.top_examples(feature, k)
    document = {"feature": feature, "stats": stats.model_dump(), "examples": [e.model_dump() for e in examples]}
    mean = f"{stats.mean_activation:.3f}" if stats.mean_activation is not None else "-"
    named = stats.label or (stats.auto_label.describe() if stats.auto_label else "")
    lines = [f"feature {feature}" + (f" ({named})" if named else "") +
             f": fires on {100 * stats.frequency:.3f}% of tokens, {100 * stats.prompt_frequency:.1f}% of prompts; max {stats.max_activation:.3f}, mean {mean}"]
    for e in examples:
        lines.append(f"{e.value:8.3f}  #{e.prompt_index:<6} {e.left[-40:]:>40} [{e.pieces[e.peak].strip()}]{e.right[:40]}")
    emit(args, document, "\n".join(lines))


def cmd_index_label(args) -> None:
    feature = _feature_id(args.feature_id)
    index = _open_index(args)
    if args.delete:
        index.labels.delete(feature, args.author)
    elif args.label is None:
        pass
    else:
        index.labels.set(feature, args.label, args.author)
    label = index.labels.get(feature)
    emit(args, {"feature": feature, "label": label}, f"{feature}: {label or '(no label)'}")


def cmd_index_concept(args) -> None:
    from itd_core.prompts import read_prompt_files, read_prompts

    if args.prompts:
        concept = read_prompt_files(args.prompts)
    else:
        concept = args.concept
    templates = read_prompts(args.templates) if args.templates else None
    retain = read_prompt_files(args.retain)
    index = _open_index(args)
    result = index.concept_search(concept, retain, top_n=_positive(args.top_n, "--top-n"), templates=templates, name=args.concept, rank_by=args.rank_by)
    lines = [f"{result.name}: {len(result.features)} features (of {result.candidates} candidates; {result.removed_by_retain} removed by the retain set; "
             f"retain profile {'cached' if result.retain_cached else 'computed'}; {result.seconds:.2f} s)",
             f"{'id':>8} {'hits':>5} {'mean':>8} {'retain%':>8} {'corpus%':>8}  tokens / label"]
    for f in result.features[:args.limit]:
        corpus = f"{100 * f.corpus_prompt_rate:7.2f}%" if f.corpus_prompt_rate is not None else f"{'-':>8}"
        lines.append(f"{f.id:>8} {f.concept_hits:>5} {f.mean_activation:>8.3f} {100 * f.retain_fire_rate:>7.1f}% {corpus}  {' '.join(f.peak_tokens)}  {f.label or ''}")
    emit(args, result.model_dump(), "\n".join(lines))


def cmd_index_export_list(args) -> None:
    from itd_core.atomic import atomic_write_text

    index = _open_index(args)
    document = index.lists.export(args.name)
    if args.output:
        atomic_write_text(args.output, json.dumps(document, indent=2) + "\n")
    emit(args, document, f"list {args.name!r}: {len(document['features'])} feature(s)" + (f", written to {args.output}" if args.output else "\n" + json.dumps(document, indent=2)))


def cmd_index_import_list(args) -> None:
    path = Path(args.file)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ItdError(f"list file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ItdError(f"{path} is not a JSON list document: {error}") from None
    index = _open_index(args)
    imported = index.lists.import_(document, name=args.name, allow_other_sae=args.allow_other_sae)
    emit(args, imported.model_dump(), f"list {imported.name!r} now has {len(imported.items)} feature(s)")


# --------------------------------------------------------------------------- parser


def add_index_commands(commands) -> None:
    """Add ``itd index ...`` to the ``itd`` sub-command parsers."""
    index = commands.add_parser("index", help="feature index: corpus statistics, similar features, search, labels")
    sub = index.add_subparsers(dest="index_command", required=True)

    build = sub.add_parser("build", help="corpus statistics + FAISS decoder index (+ feature map); reuses or resumes earlier work")
    _add_index_options(build)
    build.add_argument("--corpus", action="extend", nargs="+", required=True, metavar="FILE", help="prompt files (.txt one per line, or .csv with a 'prompt' column)")
    build.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"top examples kept per feature (default: {DEFAULT_TOP_K})")
    build.add_argument("--batch-size", type=int, default=32, help="prompts per encoder batch")
    build.add_argument("--activation-cache", metavar="DIR", help="read activations from this activation cache of the same prompts")
    build.add_argument("--faiss", default="auto", choices=["auto", "Flat", "SQ8", "SQfp16"],
                       help="FAISS index type (auto: Flat up to 131072 features, SQ8 above; results are re-ranked exactly)")
    build.add_argument("--map", default="pca", choices=["none", "pca", "umap"], help="feature map to compute (umap: minutes at 524k)")
    build.set_defaults(handler=cmd_index_build)

    similar = sub.add_parser("similar", help="features with the closest decoder directions")
    similar.add_argument("feature_id", metavar="FEATURE_ID")
    similar.add_argument("-k", type=int, default=10)
    _add_index_options(similar)
    similar.set_defaults(handler=cmd_index_similar)

    search = sub.add_parser("search", help="features whose label or top tokens match a text")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--limit", type=int, default=20)
    _add_index_options(search)
    search.set_defaults(handler=cmd_index_search)

    top = sub.add_parser("top-examples", help="a feature's statistics and top activating corpus prompts")
    top.add_argument("feature_id", metavar="FEATURE_ID")
    top.add_argument("-k", type=int, default=DEFAULT_TOP_K)
    _add_index_options(top)
    top.set_defaults(handler=cmd_index_top_examples)

    label = sub.add_parser("label", help="show, set or delete a feature's label")
    label.add_argument("feature_id", metavar="FEATURE_ID")
    label.add_argument("label", nargs="?", help="new label (omit to show the current one)")
    label.add_argument("--delete", action="store_true")
    label.add_argument("--author")
    _add_index_options(label)
    label.set_defaults(handler=cmd_index_label)

    concept = sub.add_parser("concept", help="concept search: the ItD selection (as `itd concept select`) with corpus evidence")
    concept.add_argument("--concept", required=True, help="a word or name (expanded with --templates or the default templates)")
    concept.add_argument("--prompts", action="extend", nargs="+", metavar="FILE", help="concept prompts instead of templates")
    concept.add_argument("--templates", metavar="FILE", help="templates with '{}' for the name")
    concept.add_argument("--retain", action="extend", nargs="+", required=True, metavar="FILE")
    concept.add_argument("--top-n", type=int, default=DEFAULT_TOP_N)
    concept.add_argument("--rank-by", default="itd", choices=["itd", "specificity"])
    concept.add_argument("--limit", type=int, default=30, help="rows shown in the text output")
    _add_index_options(concept)
    concept.set_defaults(handler=cmd_index_concept)

    export = sub.add_parser("export-list", help="a named list as Neuronpedia-style JSON")
    export.add_argument("name")
    export.add_argument("-o", "--output")
    _add_index_options(export)
    export.set_defaults(handler=cmd_index_export_list)

    imp = sub.add_parser("import-list", help="merge a Neuronpedia-style JSON list into the store")
    imp.add_argument("file")
    imp.add_argument("--name", help="list name (default: the document's)")
    imp.add_argument("--allow-other-sae", action="store_true", help="import although the list was exported from another SAE")
    _add_index_options(imp)
    imp.set_defaults(handler=cmd_index_import_list)
