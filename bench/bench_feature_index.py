"""Feature-index benchmark: statistics throughput, FAISS build/memory/recall and query latencies.

Part A, paper size with random weights: a 768-wide, 2-layer CLIP text tower (random, SD tokenizer,
layer 1 hooked) and a random TopK SAE of 524,288 latents (k=64). Measures the statistics pass
(tokens/s, end to end through ``build_statistics``, and the SAE-encode share), the FAISS decoder
index (Flat vs SQfp16: build time, memory, recall@20 of SQfp16 against exact, before and after the
exact re-rank FeatureIndex does), and query latencies after loading (similar, top examples, stats,
labels). Random decoders are unclustered: recall on a trained decoder should be measured again.

Part B, the tiny test bundle (and the demo bundle when it loads): concept search for a 5-prompt
concept against a 500-prompt retain set, first (retain profile computed) and then for another
concept (retain profile cached).

Optional part E (--paper-concept-search): concept search at paper size, the random 768-wide tower and
524,288-latent SAE of part A, SAE in fp32 and in bf16: the retain profile once (``--retain-prompts``),
then a 5-prompt concept with the retain side cached (that time does not depend on the retain size).

Optional part C (--umap): UMAP (cosine) fit on a sample of random unit directions (what a random
decoder's rows are), and the placement of a chunk of the rest (kNN by default; --umap-transform also
times UMAP.transform), with the time for all 524k extrapolated (numba compiles for 30-90 s on first
use, reported apart).

    python bench/bench_feature_index.py                       # ~5 min on 2 CPU cores, ~9 GB RAM
    python bench/bench_feature_index.py --latents 65536       # quicker
    python bench/bench_feature_index.py --umap --out bench.json
    python bench/bench_feature_index.py --skip-a --skip-b --umap --umap-sample 10000   # the map alone (~4 min)
    python bench/bench_feature_index.py --skip-a --skip-b --demo-prompts 50000          # part D: the demo's statistics pass
    python bench/bench_feature_index.py --skip-a --skip-b --paper-concept-search        # part E (~10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import status_kib  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from feature_index.faiss_index import RERANK_FACTOR, DecoderIndex, choose_factory, index_bytes, unit_rows  # noqa: E402
from itd_core.errors import ItdError  # noqa: E402
from itd_core.prompts import read_prompts  # noqa: E402

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "itd_core" / "assets" / "prompts"
CONCEPTS = {"Tom Cruise": ["A portrait of Tom Cruise", "Tom Cruise in an official photo", "An oil painting of Tom Cruise",
                            "Tom Cruise at a public event", "A photo of Tom Cruise smiling"],
            "Van Gogh": ["Painting in the style of Van Gogh", "A Van Gogh starry sky", "Sunflowers by Van Gogh",
                         "A landscape in the manner of Van Gogh", "Van Gogh style portrait"]}


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def wide_clip_adapter(width: int = 768, layers: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel

    from itd_core.assets import clip_tokenizer
    from itd_core.encoders import TextEncoderAdapter

    torch.manual_seed(0)
    config = CLIPTextConfig(hidden_size=width, intermediate_size=4 * width, num_attention_heads=12, num_hidden_layers=layers,
                            max_position_embeddings=77, vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return TextEncoderAdapter(CLIPTextModel(config).eval(), clip_tokenizer(), layers - 1)


def bundle_of(adapter, sae, name: str):
    from itd_core.bundle import BundleSpec, ModelBundle
    from itd_core.sae_formats import weights_fingerprint

    if sae.fingerprint is None:
        sae.fingerprint = weights_fingerprint(sae)
    return ModelBundle(BundleSpec(model=name, sae=name), adapter, sae, None, Path(name), "native")


def recall_at(exact_ids: np.ndarray, ids: np.ndarray) -> float:
    return float(np.mean([len(set(e.tolist()) & set(g.tolist())) / len(e) for e, g in zip(exact_ids, ids)]))


def recall_raw_and_reranked(unit: np.ndarray, queries: np.ndarray, exact: np.ndarray, candidates: np.ndarray) -> tuple[float, float]:
    """recall@20 of a quantised index's candidates against exact search, as returned and after the exact re-rank."""
    reranked = []
    for q, cand in zip(queries, candidates):
        cand = cand[cand >= 0]
        reranked.append(cand[np.lexsort((cand, -(unit[cand] @ q)))][:20])
    return recall_at(exact, candidates[:, :20]), recall_at(exact, np.array(reranked))


def demo_decoder_recall(bundle, rows: list, report: dict, n_queries: int = 200) -> None:
    """Recall of the quantised factories on a trained (clustered) decoder: the demo SAE's."""
    decoder = bundle.sae.W_dec.detach().float().numpy()
    unit, _ = unit_rows(decoder)
    queries = unit[np.random.default_rng(0).choice(len(unit), size=n_queries, replace=False)]
    exact = DecoderIndex.build(decoder, bundle.fingerprint, "Flat").search(queries, 20)[1]
    for factory in ("SQfp16", "SQ8"):
        candidates = DecoderIndex.build(decoder, bundle.fingerprint, factory).search(queries, RERANK_FACTOR * 20 + 10)[1]
        raw, reranked = recall_raw_and_reranked(unit, queries, exact, candidates)
        rows.append((f"recall@20 of {factory} on the demo's trained decoder ({len(unit):,} x {unit.shape[1]})",
                     f"{raw:.4f} raw, {reranked:.4f} after the exact re-rank ({n_queries} queries)"))
        report.setdefault("demo_recall", {})[factory] = {"raw": raw, "reranked": reranked}


def part_a(args, rows: list, report: dict, work: Path) -> None:
    from feature_index.index import FeatureIndex
    from itd_core.sae import SAEConfig, TopKSAE

    n, d = args.latents, 768
    print(f"[A] random SAE {n} x {d}, k={args.k}", file=sys.stderr)
    adapter = wide_clip_adapter(d)
    sae = TopKSAE.random(SAEConfig(d_model=d, n_latents=n, k=args.k), seed=0)
    bundle = bundle_of(adapter, sae, f"bench-{n}")
    corpus = read_prompts(PROMPTS_DIR / "coco_5k.csv")[:args.prompts]

    # SAE encode alone (the dominant cost), on random activations
    from feature_index.stats import token_chunk_for

    x = torch.randn(4 * token_chunk_for(n), d)
    start = time.perf_counter()
    with torch.no_grad():
        for begin in range(0, len(x), token_chunk_for(n)):
            sae.encode(x[begin:begin + token_chunk_for(n)])
    encode_tps = len(x) / (time.perf_counter() - start)

    index = FeatureIndex.open(bundle, work / "a")
    start = time.perf_counter()
    built = index.build(corpus, top_k=20, batch_size=8, feature_map="none", faiss_factory="Flat")
    index = None  # free its FAISS copy
    stats_seconds = built.stats.pass_seconds
    n_tokens = built.stats.n_tokens
    report["stats"] = {"prompts": len(corpus), "tokens": n_tokens, "pass_seconds": stats_seconds, "build_seconds": built.stats.seconds, "tokens_per_second": n_tokens / stats_seconds,
                       "sae_encode_tokens_per_second": encode_tps, "build_total_seconds": time.perf_counter() - start}
    rows.append(("statistics pass, 524k SAE (tiny-depth CLIP-768 + SAE encode + accumulate)" if n == 524288 else f"statistics pass, {n} latents",
                 f"{n_tokens / stats_seconds:.0f} tokens/s ({n_tokens} tokens, pass {stats_seconds:.1f} s, whole build incl. writing {built.stats.seconds:.1f} s); SAE encode alone {encode_tps:.0f} tokens/s"))
    per_50k = 50_000 * 76 / (n_tokens / stats_seconds) / 3600
    rows.append(("  → 50k CLIP prompts (3.8M tokens) at this rate", f"{per_50k:.1f} h"))

    # FAISS: Flat vs SQfp16
    decoder = sae.W_dec.detach().numpy()
    unit, _ = unit_rows(decoder)
    rng = np.random.default_rng(0)
    queries = unit[rng.choice(n, size=args.queries, replace=False)]
    import faiss

    factories = ("Flat", "SQfp16", "SQ8")
    results = {}
    for factory in factories:
        before = status_kib("VmRSS") * 1024
        start = time.perf_counter()
        built_index = DecoderIndex.build(decoder, bundle.fingerprint, factory)
        seconds = time.perf_counter() - start
        rss = status_kib("VmRSS") * 1024 - before
        start = time.perf_counter()
        _, ids = built_index.search(queries, 20 if factory == "Flat" else RERANK_FACTOR * 20 + 10)
        batch_seconds = time.perf_counter() - start
        one = median_ms(lambda built_index=built_index: built_index.search(queries[:1], 21), 5)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        one_single_thread = median_ms(lambda built_index=built_index: built_index.search(queries[:1], 21), 5)
        faiss.omp_set_num_threads(threads)
        results[factory] = {"build_seconds": seconds, "index_bytes": index_bytes(built_index.index), "rss_delta": rss, "ids": ids,
                            "batch_query_seconds": batch_seconds, "one_query_ms": one, "one_query_ms_1_thread": one_single_thread}
        built_index = None
    exact = results["Flat"]["ids"][:, :20]
    for factory in factories:
        r = results[factory]
        line = (f"{r['build_seconds']:.1f} s, vectors {r['index_bytes'] / 2**30:.2f} GiB (RSS +{r['rss_delta'] / 2**30:.2f} GiB); "
                f"1 query {r['one_query_ms']:.0f} ms ({r['one_query_ms_1_thread']:.0f} ms on 1 thread)")
        if factory != "Flat":
            r["recall_at_20"], r["recall_at_20_reranked"] = recall_raw_and_reranked(unit, queries, exact, r["ids"])
            line += f"; recall@20 vs exact {r['recall_at_20']:.4f} raw, {r['recall_at_20_reranked']:.4f} after the exact re-rank of its top {RERANK_FACTOR * 20 + 10} ({args.queries} queries)"
        rows.append((f"FAISS {factory} at {n} x {d}", line))
    report["faiss"] = {f: {k: v for k, v in r.items() if k != "ids"} for f, r in results.items()}

    # query latencies through FeatureIndex (loaded from disk, as the app does)
    from feature_index.index import FeatureIndex as FI

    latencies = {}
    for factory in factories:
        fresh = FI.open(bundle, work / "a")
        start = time.perf_counter()
        fresh.ensure_decoder_index(factory=factory)
        load_seconds = time.perf_counter() - start
        features = rng.choice(n, size=10, replace=False).tolist()
        it = iter(features * 10)
        latencies[f"similar_{factory}"] = median_ms(lambda fresh=fresh, it=it: fresh.similar(next(it), 20), 9)
        latencies[f"load_{factory}_seconds"] = load_seconds
        rows.append((f"similar(f, k=20) at {n}, {factory}" + (" (the default here)" if factory == choose_factory(n) else ""),
                     f"{latencies[f'similar_{factory}']:.0f} ms median (target < 150 ms); first load/build {load_seconds:.1f} s"))
    fresh = FI.open(bundle, work / "a")
    fired = np.flatnonzero(fresh.corpus_stats.arrays["fire_count"] > 0)
    sample = rng.choice(fired, size=min(20, len(fired)), replace=False).tolist()
    it = iter(sample * 10)
    fresh.top_examples(sample[0], 20)  # first use loads the arrays and the prompt table
    latencies["top_examples"] = median_ms(lambda: fresh.top_examples(next(it), 20), 15)
    it = iter(sample * 10)
    latencies["stats"] = median_ms(lambda: fresh.stats(next(it)), 15)
    fresh.labels.set(1, "bench label")
    latencies["label_get"] = median_ms(lambda: fresh.labels.get(1), 15)
    counter = iter(range(10**6))
    latencies["label_set"] = median_ms(lambda: fresh.labels.set(next(counter) % n, "bench"), 15)
    latencies["search_text"] = median_ms(lambda: fresh.search_text("table"), 5)
    rows.append((f"top_examples(f, 20) at {n}", f"{latencies['top_examples']:.2f} ms median (target < 20 ms)"))
    rows.append((f"stats(f) at {n} (incl. histogram, top tokens, label)", f"{latencies['stats']:.2f} ms median"))
    rows.append(("labels.get / labels.set (SQLite WAL, FULL sync)", f"{latencies['label_get']:.2f} ms / {latencies['label_set']:.1f} ms median (target < 20 ms)"))
    rows.append((f"search_text('table') at {n}", f"{latencies['search_text']:.1f} ms median"))
    report["latency_ms"] = latencies



def part_b(args, rows: list, report: dict, work: Path) -> None:
    from feature_index.index import FeatureIndex
    from tests.tiny_models import build_tiny_clip_text_model, build_tiny_sae

    retain = read_prompts(PROMPTS_DIR / "coco_5k.csv")[:500]
    bundles = []
    from itd_core.assets import clip_tokenizer
    from itd_core.encoders import TextEncoderAdapter

    tiny = bundle_of(TextEncoderAdapter(build_tiny_clip_text_model(), clip_tokenizer(), 1), build_tiny_sae(), "tiny")
    bundles.append(("tiny bundle (CLIP d=32, 256 latents, top-N 8)", tiny))
    try:
        from itd_core.bundle import load_bundle

        bundles.append(("demo bundle", load_bundle("demo")))
    except (ItdError, OSError) as error:  # the demo's assets are missing or being rebuilt: report, do not fail
        rows.append(("concept search on the demo", f"not measured: the demo bundle does not load yet ({type(error).__name__})"))
    for name, bundle in bundles:
        top_n = 8 if bundle is tiny else 128  # 500 retain prompts x top-128 cover all 256 tiny latents
        index = FeatureIndex.open(bundle, work / f"b-{bundle.fingerprint[:8]}")
        results = {}
        for concept, prompts in CONCEPTS.items():
            start = time.perf_counter()
            result = index.concept_search(prompts, retain, name=concept, top_n=top_n)
            results[concept] = (time.perf_counter() - start, result.retain_cached, len(result.features))
        (first, _, n1), (second, cached, n2) = results["Tom Cruise"], results["Van Gogh"]
        rows.append((f"concept search 5 prompts vs 500 retain, {name}",
                     f"{first:.2f} s first (retain profile computed), {second:.2f} s next concept (cached={cached}); {n1}/{n2} features (target < 2 s on the demo)"))
        report.setdefault("concept_search", {})[name] = {"first_seconds": first, "cached_seconds": second, "cached": cached}
        if bundle is not tiny:
            demo_decoder_recall(bundle, rows, report)


def part_e(args, rows: list, report: dict, work: Path) -> None:
    from feature_index.index import FeatureIndex
    from itd_core.sae import SAEConfig, TopKSAE

    n = args.latents
    adapter = wide_clip_adapter(768)
    retain = read_prompts(PROMPTS_DIR / "coco_5k.csv")[:args.retain_prompts]
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        print(f"[E] concept search at {n} latents, SAE {dtype_name}", file=sys.stderr)
        sae = TopKSAE.random(SAEConfig(d_model=768, n_latents=n, k=args.k), seed=0).to(dtype)
        index = FeatureIndex.open(bundle_of(adapter, sae, f"bench-e-{n}-{dtype_name}"), work / f"e-{dtype_name}")
        timings = {}
        for concept, prompts in CONCEPTS.items():
            start = time.perf_counter()
            result = index.concept_search(prompts, retain, name=concept, top_n=128)
            timings[concept] = (time.perf_counter() - start, result.retain_cached, len(result.features))
        (first, _, _), (cached_seconds, cached, n_features) = timings["Tom Cruise"], timings["Van Gogh"]
        profile_seconds = first - cached_seconds
        rows.append((f"concept search at {n} latents, SAE {dtype_name}: 5 prompts, retain side cached",
                     f"{cached_seconds:.2f} s (cached={cached}, {n_features} features; target < 10 s); retain profile of "
                     f"{len(retain)} prompts ≈ {profile_seconds:.0f} s once ({profile_seconds / len(retain):.2f} s per prompt)"))
        report.setdefault("paper_concept_search", {})[dtype_name] = {"cached_seconds": cached_seconds, "first_seconds": first,
                                                                    "retain_prompts": len(retain), "cached": cached}
        index = sae = None


def part_c(args, rows: list, report: dict) -> None:
    """UMAP on random unit directions (a random decoder's rows are just that): fit on a sample, then place
    a chunk of the rest by kNN (the default) and, with --umap-transform, by UMAP.transform; extrapolate to n."""
    import faiss

    from feature_index.feature_map import compute_feature_map, knn_place, map_params

    n, d = args.latents, 768
    rng = np.random.default_rng(0)
    print(f"[C] UMAP: compile, fit {args.umap_sample}, place {args.umap_chunk}", file=sys.stderr)
    start = time.perf_counter()
    small = rng.standard_normal((300, 16)).astype(np.float32)
    compute_feature_map(small, "umap", params=map_params("umap", sample_size=300))  # first import + numba compile
    compile_seconds = time.perf_counter() - start
    import umap

    sample, _ = unit_rows(rng.standard_normal((args.umap_sample, d)).astype(np.float32))
    chunk, _ = unit_rows(rng.standard_normal((args.umap_chunk, d)).astype(np.float32))
    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=15, min_dist=0.1, random_state=0, low_memory=True)
    start = time.perf_counter()
    fitted = reducer.fit_transform(sample).astype(np.float32)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    index = faiss.IndexFlatIP(d)
    index.add(sample)
    knn_place(index, fitted, chunk, 15)
    knn_seconds = time.perf_counter() - start
    rest = n - args.umap_sample
    rows.append(("UMAP first import + numba compile", f"{compile_seconds:.0f} s"))
    rows.append((f"UMAP (cosine) fit on a sample of {args.umap_sample} x {d}", f"{fit_seconds:.0f} s"))
    rows.append((f"place the other {rest} by kNN (default), measured on {args.umap_chunk}",
                 f"{knn_seconds:.1f} s → all: ~{(fit_seconds + knn_seconds * rest / args.umap_chunk) / 60:.0f} min for the whole 524k map (extrapolated)"))
    report["umap"] = {"compile_seconds": compile_seconds, "fit_seconds": fit_seconds, "fit_n": args.umap_sample,
                      "knn_seconds": knn_seconds, "chunk_n": args.umap_chunk}
    if args.umap_transform:
        start = time.perf_counter()
        reducer.transform(chunk)
        transform_seconds = time.perf_counter() - start
        rows.append((f"place them by UMAP.transform instead, measured on {args.umap_chunk}",
                     f"{transform_seconds:.0f} s → all: ~{(fit_seconds + transform_seconds * rest / args.umap_chunk) / 60:.0f} min (extrapolated)"))
        report["umap"]["transform_seconds"] = transform_seconds


def part_d(args, rows: list, report: dict, work: Path) -> None:
    """Statistics for the demo SAE over a big corpus: generated world captions plus the shipped prompt sets."""
    from feature_index.index import FeatureIndex
    from itd_core.bundle import load_bundle
    from shapesworld.train_sae import corpus

    bundle = load_bundle("demo")
    prompts = corpus(n_world=max(0, args.demo_prompts - 14000))[: args.demo_prompts]
    index = FeatureIndex.open(bundle, work / "demo-stats")
    print(f"[D] demo statistics over {len(prompts)} prompts", file=sys.stderr)
    start = time.perf_counter()
    built = index.build(prompts, feature_map="pca")
    seconds = time.perf_counter() - start
    rows.append((f"statistics + FAISS + PCA map for the demo SAE (8,192 latents) over {len(prompts):,} prompts",
                 f"{seconds / 60:.1f} min ({built.stats.n_tokens:,} tokens; target < 10 min for 50k prompts)"))
    feature = int(index.frequencies().argmax())
    rows.append(("demo: similar(f, 20) / top_examples(f, 20)",
                 f"{median_ms(lambda: index.similar(feature, 20), 20):.2f} ms / {median_ms(lambda: index.top_examples(feature, 20), 20):.3f} ms"))
    report["demo_stats"] = {"prompts": len(prompts), "seconds": seconds, "tokens": built.stats.n_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", type=int, default=524288)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=24, help="corpus prompts for the statistics pass (76 tokens each)")
    parser.add_argument("--queries", type=int, default=100, help="queries for recall@20")
    parser.add_argument("--umap", action="store_true")
    parser.add_argument("--umap-sample", type=int, default=20000, help="features the UMAP is fitted on")
    parser.add_argument("--umap-chunk", type=int, default=10000, help="features placed to time the placement")
    parser.add_argument("--umap-transform", action="store_true", help="also time UMAP.transform (slow: ~2 min per 10k here)")
    parser.add_argument("--skip-a", action="store_true", help="skip the 524k part")
    parser.add_argument("--skip-b", action="store_true", help="skip the concept-search part")
    parser.add_argument("--demo-prompts", type=int, default=0, help="part D: time the demo's statistics pass over this many prompts (e.g. 50000)")
    parser.add_argument("--paper-concept-search", action="store_true", help="part E: concept search at --latents, fp32 and bf16")
    parser.add_argument("--retain-prompts", type=int, default=500, help="part E: retain prompts for the (one-off) profile")
    parser.add_argument("--out", help="also write the measurements as JSON here")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, faiss {__import__('faiss').__version__}, cpus {os.cpu_count()}", file=sys.stderr)
    rows: list[tuple[str, str]] = []
    report: dict = {"args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-fi-") as tmp:
        if not args.skip_a:
            part_a(args, rows, report, Path(tmp))
        if not args.skip_b:
            part_b(args, rows, report, Path(tmp))
        if args.umap:
            part_c(args, rows, report)
        if args.demo_prompts:
            part_d(args, rows, report, Path(tmp))
        if args.paper_concept_search:
            part_e(args, rows, report, Path(tmp))
    print("| measurement | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
