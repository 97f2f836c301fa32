"""Brute-force statistics for checking feature_index.stats: dense codes, plain Python loops."""

from __future__ import annotations

import numpy as np
import torch


def encoder_blocks(adapter, prompts, batch_size, skip=()):
    """(activations [N, d], prompt ids [N], positions [N]) per batch, ItD positions as the stats pass takes them."""
    blocks = []
    for offset, (batch, activations) in enumerate(adapter.iter_capture(list(prompts), batch_size)):
        keep = torch.ones_like(batch.input_ids, dtype=torch.bool)
        keep[:, 0] = False
        if adapter.uses_attention_mask:
            keep &= batch.attention_mask.bool()
        for i in range(len(batch)):
            if offset * batch_size + i in skip:
                keep[i] = False
        rows, cols = keep.nonzero(as_tuple=True)
        blocks.append((activations[rows, cols], rows + offset * batch_size, cols))
    return blocks


@torch.no_grad()
def brute_force_stats(sae, blocks, n_prompts, top_k, edges):
    n = sae.n_latents
    dense_rows, prompt_rows, position_rows = [], [], []
    for activations, prompt_ids, positions in blocks:
        code = sae.encode(activations.to(sae.W_enc.dtype))
        dense = torch.zeros(activations.shape[0], n).scatter_(1, code.indices, code.values.float())
        dense_rows.append(dense.numpy())
        prompt_rows.append(prompt_ids.numpy())
        position_rows.append(positions.numpy())
    dense = np.concatenate(dense_rows)
    prompt_of = np.concatenate(prompt_rows)
    position_of = np.concatenate(position_rows)
    fires = dense > 0
    result = {
        "n_tokens": dense.shape[0],
        "fire_count": fires.sum(0),
        "act_sum": np.where(fires, dense, 0).astype(np.float64).sum(0),
        "act_max": dense.max(0, initial=0.0),
        "prompt_count": np.zeros(n, dtype=np.int64),
        "hist": np.zeros((n, len(edges) - 1), dtype=np.int64),
        "top": [],
    }
    for f in range(n):
        values = dense[fires[:, f], f]
        bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        np.add.at(result["hist"][f], bins, 1)
        peaks = {}
        for row in np.flatnonzero(fires[:, f]):
            p = int(prompt_of[row])
            if p not in peaks or dense[row, f] > peaks[p][0]:  # strictly greater: the earliest position wins ties
                peaks[p] = (float(dense[row, f]), int(position_of[row]))
        result["prompt_count"][f] = len(peaks)
        ranked = sorted(peaks.items(), key=lambda item: (-item[1][0], item[0]))[:top_k]
        result["top"].append([(value, p, pos) for p, (value, pos) in ranked])
    return result
