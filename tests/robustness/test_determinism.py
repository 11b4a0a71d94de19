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
