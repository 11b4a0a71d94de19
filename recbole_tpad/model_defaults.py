"""RecBole's own settings for a model where the plugin's shared ones cannot apply to it.

``properties/overall.yaml`` gives every model the benchmark's settings: no sampled negatives (each
model's YAML picks the loss: cross-entropy over all items wherever it can) and full ranking. A
model that trains on sampled negatives (a user's ``--loss_type=BPR``, FPMC's BPR, the own losses of
TransRec, DIN and DIEN) or cannot rank all items (DIN and DIEN) cannot run that way. For the keys
the user did not set, it keeps what RecBole gives it (``Config.internal_config_dict``: RecBole's
defaults, the model's YAML and quick-start settings), so it runs as in plain RecBole; where it
cannot, a ``ConfigError`` names the key to set. The shared settings stay for every other model.
"""

import copy

import yaml
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_tpad.errors import ConfigError

EVALUATION_KEYS = ("eval_args", "metrics", "valid_metric")
SCORE_ALL_ITEMS = ("CE", "NLL")  # losses over every item's score: no sampled negatives


def user_settings(config_file_list=None, config_dict=None):
    """The user's layers merged as RecBole merges them: ``config_file_list`` in order, then ``config_dict``."""
    settings = {}
    for path in config_file_list or []:
        with open(path, encoding="utf-8") as f:
            settings.update(yaml.safe_load(f) or {})
    settings.update(config_dict or {})
    return settings


def ranks_all_items(model_class):
    """Whether the model scores every item at once, as full-ranking evaluation needs."""
    return model_class.full_sort_predict is not AbstractRecommender.full_sort_predict


def trained_loss(config):
    """The loss ``config``'s model trains with: its ``loss_type``, or None for a model with a fixed
    loss of its own (TransRec, DIN, DIEN: no loss_type in RecBole's YAML, an ``input_type`` instead)."""
    if hasattr(config.model_class, "input_type") and "loss_type" not in config.internal_config_dict:
        return None
    return config["loss_type"]


def model_defaults(config, user_keys):
    """Overrides that give ``config``'s model RecBole's settings where the shared ones cannot apply.

    ``user_keys``: the keys the user set (files or overrides); those are never overridden.
    """
    recbole = config.internal_config_dict
    overrides = {}
    # CE and NLL score every item; BPR and the models' own losses train on sampled negatives
    negatives = recbole.get("train_neg_sample_args")
    if trained_loss(config) not in SCORE_ALL_ITEMS and negatives and "train_neg_sample_args" not in user_keys:
        overrides["train_neg_sample_args"] = copy.deepcopy(negatives)

    if "full" in config["eval_args"]["mode"].values() and not ranks_all_items(config.model_class):
        mode = recbole["eval_args"].get("mode", "full")
        if user_keys.intersection(EVALUATION_KEYS) or "full" in str(mode):
            sampled = dict(config["eval_args"], mode="uni100")
            raise ConfigError(
                f"{config['model']} cannot rank all items (it has no full_sort_predict), so eval_args mode "
                f"'full' cannot evaluate it: evaluate it on sampled candidates, e.g. --eval_args=\"{sampled}\" "
                "--metrics=\"['AUC', 'LogLoss']\" --valid_metric=AUC, or leave eval_args, metrics and "
                "valid_metric unset to get RecBole's settings for it."
            )
        # RecBole's evaluation for this model (DIN, DIEN: 100 sampled negatives, AUC and LogLoss)
        overrides["eval_args"] = dict(config["eval_args"], mode=mode)
        overrides.update({key: copy.deepcopy(recbole[key]) for key in ("metrics", "valid_metric")})
    return overrides


def build_model(model_class, config, dataset):
    """``model_class(config, dataset)``, with RecBole's refusals of a setting as ``ConfigError``."""
    try:
        return model_class(config, dataset)
    except (NotImplementedError, AssertionError) as error:
        # RecBole's models check loss_type (and a few other keys) in __init__ this way
        raise ConfigError(f"{config['model']} refuses its settings (loss_type={config['loss_type']!r}): {error}") from error
    except SystemExit as error:
        # GRU4RecCPR and SASRecCPR call sys.exit(0) on loss_type BPR, which would end a comparison silently
        raise ConfigError(
            f"{config['model']} exited while being built with loss_type={config['loss_type']!r} (RecBole prints "
            f"why above): set a loss_type that its YAML, recbole/properties/model/{config['model']}.yaml, allows."
        ) from error
