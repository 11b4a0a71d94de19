"""Same config and seed, same test metrics: our models end to end on CPU, run twice."""

import pytest

from recbole_tpad.quick_start import run_recbole_tpad
from tests.stages.stage_keys import STAGE_KEYS


@pytest.mark.parametrize("model", ["KDSR", "TPAD"])
def test_same_seed_same_metrics(tiny_dataset, tmp_path, model):
    _, config = tiny_dataset
    small = {"embedding_size": 16, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256}
    config = dict(config, epochs=2, **STAGE_KEYS, **small)
    # Separate caches: the second run recomputes stages and features instead of reading the first's.
    first = run_recbole_tpad(model, "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "a")))
    second = run_recbole_tpad(model, "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "b")))
    assert first["test_result"] == second["test_result"]
