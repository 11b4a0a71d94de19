"""Which models the benchmark runs, TPAD's ablation rows, and the smoke-run settings.

Stock models keep RecBole's own hyper-parameters; only the data, split, evaluation and epoch
settings of ``properties/overall.yaml`` apply to all of them.
"""

STOCK_MODELS = ["GRU4Rec", "NARM", "STAMP", "SRGNN", "GCSAN", "SASRec", "BERT4Rec", "FDSA"]
# Rows run with every seed (mean and std in the headline table), as does the best other stock model
# (best_other_stock, below); the rest with the first seed.
HEADLINE_MODELS = {"GRU4Rec", "SASRec", "SRGNN", "KDSR", "TPAD"}
# TPAD's stage ablations: with every seed, so that a part's effect is read against seed noise.
SEEDED_VARIANTS = {"no_gen", "no_amie", "no_hmie", "no_distill", "no_transition", "session_item_bias"}
# The rows that add a part to TPAD's defaults instead of removing one (the ablation table reads them the
# other way round: the variant is TPAD with the part, TPAD is without it). The output-side rows run with
# the first seed only: on amazon-beauty each traded recall@20 for the rank of the session's own items
# (docs/results.md), so three seeds of each on both datasets would not pay for their hours.
ADDED_PARTS = {"session_item_bias", "untied_output", "untied_views", "output_map"}
# Settings that decide whether TPAD trains without its transition score (transition_fusion: validation);
# where the benchmark sets none of them, TPAD-no_transition is TPAD's trained model tested with the
# term off (bench/run_benchmark.py, derived_rows) instead of a second training of the same weights.
TRANSITION_KEYS = {"transition_score", "transition_fusion", "stage_distillation", "stage2_epochs"}
# The learning curve of the Transition Distillation Stage: rows TPAD-pairs_N train stage 2 on N
# training pairs (every seed); TPAD-no_distill is its point 0 and TPAD its default (1,024). At 64 pairs T
# has barely trained, so that point separates what the transition head's fit (on every pair, before T's
# first step) brings from what T's own steps add. The curve stops at 4,096: there stage 2 alone took
# 1,629-2,389 s on one thread, so `make run`'s hour on the 2-core CPU has no room for more; at 16,384 T's
# steps alone would take 100-110 min (0.36-0.40 s a pair).
STAGE2_CURVE_PAIRS = (64, 256, 4096)


def tpad_variants(has_images):
    """TPAD's ablations, ``name -> config overrides`` (rows named ``TPAD-<name>``)."""
    variants = {
        "no_gen": {"stage_generation_task": False},  # no generation task in either stage
        "no_amie": {"stage_amie": False},  # no aligning MI estimator (no distillation into K)
        "no_hmie": {"stage_hmie": False},  # no feature disentanglement
        "no_distill": {"stage_distillation": False},  # Knowledge Acquisition Stage only (so no T, no transition score)
        "no_transition": {"transition_score": False},  # stage 2 as it is, T's transition score not fused downstream
        # an addition, not a part of the paper: a learned offset on the session's own items (docs/downstream.md)
        "session_item_bias": {"session_item_bias": True},
        # additions, not parts of the paper: items scored with their own ID table and view adapters, or
        # with their own view adapters and the shared ID table
        "untied_output": {"tied_output": False},
        "untied_views": {"tied_output": ["id"]},
        "output_map": {"output_map": True},  # each view scored through a learned map from the identity
        # one modality: no other view, and no neighbour or transition term beside it (hm-fashion's neighbour is fused)
        "text_only": {"views": ["id", "text"], "neighbour_views": [], "transition_score": False},  # ID + text view
        "id_only": {"views": ["id"], "neighbour_views": [], "transition_score": False},  # ID embeddings alone
        # the downstream session encoder of STAMP, the stock model with amazon-beauty's best first-seed MRR@20
        "stamp_encoder": {"session_encoder": "STAMP"},
    }
    if has_images:
        variants["image_only"] = {"views": ["id", "image"], "neighbour_views": [], "transition_score": False}
    for pairs in STAGE2_CURVE_PAIRS:
        variants[f"pairs_{pairs}"] = {"stage2_sessions_per_epoch": pairs}
    return variants


def variant_seeds(name, seeds):
    """The seeds a TPAD variant row runs with."""
    return seeds if name in SEEDED_VARIANTS or name.startswith("pairs_") else seeds[:1]


# Settings of every row of one dataset's benchmark, beside the YAML defaults, so that it fits the
# 2-core CPU; the Markdown header states them. amazon-beauty: bf16 autocast (RecBole's enable_amp,
# TPAD's default) for every model, about 2-3x faster on this CPU (docs/results.md). No epoch cap: every
# row trains to early stopping (the capped tables of earlier sessions were far from converged).
DATASET_SETTINGS = {
    "amazon-beauty": {"enable_amp": True},
}

# --quick: a few minutes on a small sample; a smoke test of the whole harness, not results.
QUICK_OVERRIDES = {
    "epochs": 1,
    "feature_backbone": "tiny-llama",
    "feature_image_encoder": "tiny",
    "stage1_items_per_epoch": 16,
    "stage2_sessions_per_epoch": 16,
    "kmeans_pairs": 2000,
}

# The model the benchmark's paired tests compare against each other headline model (bench/report.py).
SIGNIFICANCE_REFERENCE = "TPAD"


def best_other_stock(rows, first_seed):
    """The stock model outside ``HEADLINE_MODELS`` with the best test MRR@20 of the first seed among the
    finished ``rows`` (dicts), or None before any has run. It gets every seed, as the headline models do: the
    strongest baseline besides them is the one TPAD's margins must hold against (chosen on its own
    result, so the choice can only favour the baseline)."""
    scores = {row["model"]: row["mrr@20"] for row in rows
              if row["model"] in STOCK_MODELS and row["model"] not in HEADLINE_MODELS and row["seed"] == first_seed
              and not row.get("error") and isinstance(row.get("mrr@20"), (int, float))}
    return max(scores, key=scores.get) if scores else None
