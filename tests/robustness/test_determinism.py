"""Same config and seed, same test metrics: our models end to end on CPU (exactly) and GPU, run twice."""

import pytest
import torch

from recbole_tpad.quick_start import run_recbole_tpad
from tests.stages.stage_keys import STAGE_KEYS

# On a GPU, kernels may sum in another order from run to run (atomics in scatter / index_add
# backward), so exactness is not promised: each metric must agree within one unit of RecBole's
# 4th decimal (docs/robustness.md). Session 1 measured exact equality on an H100.
GPU_TOLERANCE = 1e-4


def _run_twice(tiny_dataset, tmp_path, model, **overrides):
    _, config = tiny_dataset
    small = {"embedding_size": 16, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256}
    config = dict(config, epochs=2, **STAGE_KEYS, **small, **overrides)
    # Separate caches: the second run recomputes stages and features instead of reading the first's.
    first = run_recbole_tpad(model, "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "a")))
    second = run_recbole_tpad(model, "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "b")))
    return first, second


@pytest.mark.parametrize("model", ["KDSR", "TPAD"])
def test_same_seed_same_metrics(tiny_dataset, tmp_path, model):
    first, second = _run_twice(tiny_dataset, tmp_path, model)
    assert first["test_result"] == second["test_result"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model", ["KDSR", "TPAD"])
def test_same_seed_same_metrics_on_gpu(tiny_dataset, tmp_path, model):
    first, second = _run_twice(tiny_dataset, tmp_path, model, use_gpu=True, gpu_id="0")
    assert first["config"]["device"].type == "cuda"  # RecBole's model and trainer, and the stages with it
    assert first["test_result"].keys() == second["test_result"].keys()
    for metric, value in first["test_result"].items():
        assert abs(value - second["test_result"][metric]) <= GPU_TOLERANCE, (metric, value, second["test_result"])


def test_run_killed_during_downstream_training_reruns_to_the_same_result(tiny_dataset, tmp_path, monkeypatch):
    from recbole.trainer import Trainer

    _, config = tiny_dataset
    config = dict(config, epochs=2, **STAGE_KEYS)
    clean = run_recbole_tpad("TPAD", "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "a")))

    train_epoch, calls = Trainer._train_epoch, []

    def dies_in_second_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or SIGINT would, after stages and one epoch
        return train_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_recbole_tpad("TPAD", "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "b")))
    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)
    again = run_recbole_tpad("TPAD", "tiny", config_dict=dict(config, feature_cache_dir=str(tmp_path / "b")))
    assert again["test_result"] == clean["test_result"]
