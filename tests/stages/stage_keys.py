"""Stage settings at their smallest, shared by the stage tests."""

STAGE_KEYS = {  # the stages at their smallest on the tiny random backbone
    "feature_backbone": "tiny-llama",
    "stage1_items_per_epoch": 16,
    "stage1_batch_size": 8,
    "stage2_sessions_per_epoch": 16,
    "stage2_batch_size": 8,
    "stage1_projector_items": 8,
    "stage1_heldout_items": 4,
    "stage2_heldout_pairs": 8,
    "stage2_head_epochs": 1,
    "stage2_head_batch_size": 16,
    "stage_hmie_tokens": 32,
}
