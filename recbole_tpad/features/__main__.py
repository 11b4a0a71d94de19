"""``python -m recbole_tpad.features --dataset=NAME [--data_path=DIR] [--key=value ...]``

Encodes every item of the dataset with the configured backbone (no training) and prints the
cache folder as the last line. ``--key=value`` sets any config key (e.g. ``--feature_backbone=tiny-llama``).
"""

import argparse
import logging
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m recbole_tpad.features", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", "-d", required=True, help="dataset name (folder holding <name>.inter/.item)")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    args, rest = parser.parse_known_args(argv)
    overrides = {}
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            parser.error(f"unrecognized argument '{item}': use --key=value")
        key, value = item[2:].split("=", 1)
        overrides[key] = _parse_value(value)
    return args, overrides


def _parse_value(text):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from recbole_tpad.errors import PluginError

    try:
        folder = extract(args.dataset, args.config_files.split() if args.config_files else None, overrides)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(folder)
    return 0


def extract(dataset_name, config_files=None, overrides=None):
    from recbole.data import create_dataset
    from recbole.utils import init_logger, init_seed

    from recbole_tpad.data.atomic_check import check_dataset_files
    from recbole_tpad.features.cache import get_item_views
    from recbole_tpad.features.config import FeaturesConfig
    from recbole_tpad.quick_start import load_config
    from recbole_tpad.settings import warn_unread_keys

    config = load_config("SASRec", dataset_name, config_files, dict(overrides or {}))  # applies compat shims
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    warn_unread_keys(config_files, overrides)
    for note in check_dataset_files(config):
        logging.getLogger().warning(note)
    dataset = create_dataset(config)
    views = get_item_views(config, dataset, FeaturesConfig.from_config(config),
                           progress=config["show_progress"] is not False)
    return views.folder


if __name__ == "__main__":
    sys.exit(main())
