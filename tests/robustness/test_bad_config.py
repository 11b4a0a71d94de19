"""Bad config values fail before any training, with one message naming the key, no traceback."""

import pytest
import yaml

import run_recbole_tpad as cli
from tests.stages.stage_keys import STAGE_KEYS


@pytest.mark.parametrize(
    "override, named",
    [
        ("--feature_backbone=no-such-backbone", "feature_backbone"),
        ("--stage2_amie_weight=-1", "stage2_amie_weight"),
        ("--feature_backbone=causal", "feature_llm_path"),  # with a path that does not exist, below
        ("--ITEM_TEXT_FIELDS=['title','no_such_field']", "no_such_field"),
        ("--session_encoder=LSTM", "session_encoder"),
        ("--backbone=LSTM", "session_encoder"),  # the old name, still read
        ("--view_adapter=conv", "view_adapter"),
        ("--views=['id','sound']", "views"),
    ],
)
def test_bad_value_names_its_key(tiny_dataset, tmp_path, capsys, override, named):
    root, config = tiny_dataset
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(dict(config, **STAGE_KEYS, feature_cache_dir=str(tmp_path / "cache"))))
    argv = ["--model=TPAD", "--dataset=tiny", f"--config_files={config_file}", "--feature_llm_path=/no/such/model/folder"]
    code = cli.main(argv + [override])
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err and "Traceback" not in err
