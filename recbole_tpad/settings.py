"""Settings objects from a resolved RecBole ``Config``: defaults from the YAML only, unread keys warned about.

The plugin's settings objects (:class:`recbole_tpad.features.FeaturesConfig`,
:class:`recbole_tpad.stages.StageConfig`) have no defaults of their own: :func:`read_keys` takes
each key from the run's config, where the plugin's YAML (``properties/``) is layered under the
user's files, and from that YAML file where the config does not hold it (a plain dict in a test or
a script). Each is parsed once per run, where the run prepares its item views, and passed down.

RecBole reads what it knows and ignores the rest silently, so a misspelt key
(``--feature_bakcbone=...``) would change nothing without a word. :func:`warn_unread_keys` names
every key a user sets that neither RecBole nor the plugin reads: not in RecBole's properties or
argument lists, nor in the plugin's YAML, nor among the keys set at run time.
"""

import glob
import os
from functools import lru_cache
from logging import getLogger

import yaml

from recbole_tpad.utils import PROPERTIES_DIR

# keys read from a config that no properties YAML lists: set by RecBole at run time, by the runner
# or the distributed launcher, or read by RecBole's code with a default of its own
RUNTIME_KEYS = (
    "model", "dataset", "data_path", "config_files", "device", "encoding", "local_rank", "nproc", "offset",
    "world_size", "ip", "port", "single_spec", "verbose", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_neg_sample_args",
    "test_neg_sample_args", "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "INVERSE_ITEM_SEQ", "MASK_INDEX", "MASK_ITEM_SEQ",
    "NEG_ITEMS", "POS_ITEMS", "REORDER_ITEM_SEQ", "feature_num", "token_num_threshold",
)


# keys that change how a run is shown or where its processes meet, not what it computes: a comparison's
# settings fingerprint (recbole_tpad.compare) and a train state's settings (recbole_tpad.trainer.train_state)
# leave them out
DISPLAY_KEYS = frozenset({"show_progress", "state", "verbose", "local_rank", "ip", "port", "offset", "train_state_file"})


def yaml_loader():
    """RecBole's YAML loader (its floats: ``1e-12`` is a number, not a string)."""
    from recbole.config import Config

    return Config._build_yaml_loader(None)  # uses nothing of the instance


@lru_cache(maxsize=None)
def yaml_defaults(relative_path):
    """The keys of one of the plugin's properties files, e.g. ``'features.yaml'`` (read once per process)."""
    with open(PROPERTIES_DIR / relative_path, encoding="utf-8") as f:
        return yaml.load(f, Loader=yaml_loader()) or {}


def read_keys(config, keys, defaults_file):
    """``{key: value}`` of ``keys`` from ``config`` (a RecBole ``Config`` or a dict), falling back to
    the properties file ``defaults_file`` for a key the config does not hold."""
    defaults = yaml_defaults(defaults_file)
    missing = [key for key in keys if key not in config and key not in defaults]
    if missing:
        raise KeyError(f"{missing} have no default in properties/{defaults_file}")
    return {key: config[key] if key in config else defaults[key] for key in keys}


@lru_cache(maxsize=None)
def known_keys():
    """Every key RecBole or the plugin reads (see the module docstring)."""
    import recbole
    from recbole.utils import argument_list

    from recbole_tpad.model.renamed_keys import OLD_NAMES

    files = glob.glob(os.path.join(os.path.dirname(recbole.__file__), "properties", "**", "*.yaml"), recursive=True)
    files += glob.glob(str(PROPERTIES_DIR / "**" / "*.yaml"), recursive=True)
    keys = set(RUNTIME_KEYS) | set(OLD_NAMES)
    for path in files:
        with open(path, encoding="utf-8") as f:
            keys.update(yaml.load(f, Loader=yaml_loader()) or {})
    for group in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, group, []))
    return frozenset(keys)


def unread_keys(user_keys):
    """The keys of ``user_keys`` that neither RecBole nor the plugin reads, in order."""
    known = known_keys()
    return [key for key in user_keys if key not in known]


def warn_unread_keys(config_file_list=None, config_dict=None):
    """Log a warning naming each key the user set (files, overrides, command line) that nothing reads;
    return them."""
    from recbole_tpad.model_defaults import user_settings

    unread = unread_keys(user_settings(config_file_list, config_dict))
    for key in unread:
        getLogger().warning(f"config key `{key}` is read by neither RecBole nor recbole-tpad, so it changes "
                            "nothing: check its spelling (the keys are listed in properties/*.yaml).")
    return unread
