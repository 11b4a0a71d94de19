"""Train and evaluate a model (ours or any stock RecBole model), or compare several.

    python run_recbole_tpad.py --model=TPAD --dataset=amazon-beauty
    python run_recbole_tpad.py --dataset=hm-fashion --compare=GRU4Rec,SASRec,TPAD --epochs=5
    python run_recbole_tpad.py --dataset=amazon-beauty --compare=TPAD,SASRec --results_file=cmp.csv --resume
    python run_recbole_tpad.py --model=SASRec --dataset=amazon-beauty --config_files="a.yaml b.yaml"
    python run_recbole_tpad.py --model=SASRec --dataset=amazon-beauty --nproc=2     # data-parallel, 2 processes
    torchrun --nproc_per_node=2 run_recbole_tpad.py --model=TPAD --dataset=amazon-beauty

Every other ``--key=value`` overrides a config key, as with RecBole's own runner.
``python -m recbole_tpad`` takes the same arguments.
"""

import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="TPAD", help="model name, ours or RecBole's")
    parser.add_argument("--dataset", "-d", default="amazon-beauty", help="dataset name")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--compare", default=None, help="comma-separated model names to run in turn")
    parser.add_argument("--results_file", default=None, help="CSV path for --compare (default results/)")
    parser.add_argument("--resume", action="store_true",
                        help="with --compare: keep the finished rows of --results_file (same settings) and run the rest")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors")
    args, overrides = parser.parse_known_args(argv)
    return args, parse_overrides(overrides)


def parse_overrides(overrides):
    """``--key=value`` pairs into a dict; RecBole's Config types the values as it does its own."""
    config_dict = {}
    for item in overrides:
        key, sep, value = item.lstrip("-").partition("=")
        if not item.startswith("--") or not sep or not key:
            raise SystemExit(f"Unrecognised argument '{item}': overrides are written --key=value.")
        config_dict[key] = value
    return config_dict


def main(argv=None):
    args, config_dict = parse_args(argv)
    from recbole_tpad import distributed
    from recbole_tpad.errors import exit_status
    from recbole_tpad.model_defaults import user_settings

    config_files = args.config_files.split() if args.config_files else None

    def command():
        keys = distributed.torchrun_keys()
        if keys is not None:  # one of torchrun's processes: the ranks are torchrun's
            result = run_command(args, config_files, dict(config_dict, **keys))
            distributed.close_process_group()
            return result
        settings = user_settings(config_files, config_dict)
        nproc = int(settings.get("nproc") or 1)
        if nproc > 1 and "local_rank" not in settings:  # start the ranks, as RecBole's run(nproc=...) does
            config_dict.update(distributed.launch_keys(nproc, settings))
            # by its importable name: under `python -m recbole_tpad` this module is __main__, which spawned ranks cannot see
            from recbole_tpad.__main__ import run_command as run
            return distributed.launch(run, (args, config_files), config_dict, nproc)
        return run_command(args, config_files, config_dict)

    return exit_status(command, args.debug)


def run_command(args, config_files, config_dict):
    """One process's share of the command: all of it, or one rank's in a distributed run."""
    from recbole_tpad import distributed
    from recbole_tpad.compare import compare_models
    from recbole_tpad.quick_start import run_recbole_tpad

    if args.compare:
        models = [name.strip() for name in args.compare.split(",") if name.strip()]
        rows, table, path = compare_models(
            models, args.dataset, config_files, config_dict, args.results_file, resume=args.resume)
        if distributed.is_main_process():
            print(table)
            print(f"results written to {path}")
        return 1 if any(row.get("error") for row in rows) else 0
    run_recbole_tpad(args.model, args.dataset, config_files, config_dict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
