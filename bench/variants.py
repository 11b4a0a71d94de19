"""Which models the benchmark runs, TPAD's ablation rows, and the smoke-run settings.

Stock models keep RecBole's own hyper-parameters; only the data, split, evaluation and epoch
settings of ``properties/overall.yaml`` apply to all of them.
"""

STOCK_MODELS = ["GRU4Rec", "NARM", "STAMP", "SRGNN", "GCSAN", "SASRec", "BERT4Rec", "FDSA"]
# Rows run with every seed (mean and std in the headline table); the rest with the first seed.
HEADLINE_MODELS = {"GRU4Rec", "SASRec", "SRGNN", "KDSR", "TPAD"}


def tpad_variants(has_images):
    """TPAD's ablations, ``name -> config overrides`` (rows named ``TPAD-<name>``)."""
    variants = {
        "no_gen": {"stage_generation_task": False},  # no generation task in either stage
        "no_amie": {"stage_amie": False},  # no aligning MI estimator (no distillation into K)
        "no_hmie": {"stage_hmie": False},  # no feature disentanglement
        "no_distill": {"stage_distillation": False},  # Knowledge Acquisition Stage only
        # one modality: no other view, and no neighbour term on another view (hm-fashion's is fused)
        "text_only": {"views": ["id", "text"], "neighbour_views": []},  # ID + text view
        "id_only": {"views": ["id"], "neighbour_views": []},  # the downstream model on ID embeddings alone
    }
    if has_images:
        variants["image_only"] = {"views": ["id", "image"], "neighbour_views": []}
    return variants


# Settings of every row of one dataset's benchmark, beside the YAML defaults, so that it fits the
# 2-core CPU; the Markdown header states them. amazon-beauty: bf16 autocast (RecBole's enable_amp,
# TPAD's default) for every model, about 2-3x faster on this CPU (docs/results.md), and an epoch limit.
DATASET_SETTINGS = {
    "amazon-beauty": {"enable_amp": True, "epochs": 10},
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
