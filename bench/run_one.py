"""One benchmark row: train and test one model with one seed, write its results as JSON.

Run in a fresh process per row (bench/run_benchmark.py does so), so that the peak memory it
reports belongs to that model alone and a crash loses one row only.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cold_start import ranking_metrics, test_ranks  # noqa: E402
from bench.session_outcomes import write_session_outcomes  # noqa: E402
from recbole_tpad import compat  # noqa: E402
from recbole_tpad.precision import amp_dtype, native_bf16  # noqa: E402
from recbole_tpad.quick_start import run_recbole_tpad  # noqa: E402
from recbole_tpad.trainer.train_state import stopped_early  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def encoding_speed(config, dataset, item_views, view_info):
    """Items/s of this run's item encoding against its FLOP bound; empty when the views came from a cache
    or from no TPAD stages (``item_views``, ``view_info``: the run's, from ``prepare_item_views``)."""
    manifest = item_views.manifest if item_views is not None else {}
    representation_s = view_info.get("representation_s")
    # encoded in this run: the stage took at least the encode loop's time (a cache load takes far less)
    if not manifest.get("seconds") or representation_s is None or representation_s < manifest["seconds"]:
        return {}
    from bench.bench_features import flop_bound, idle_bound, matmul_rate
    from recbole_tpad.features import FeaturesConfig, build_backbone, load_items

    settings = FeaturesConfig.from_config(config)
    items = load_items(config, dataset, settings)
    n_items = len(items) - 1
    speed = {"encode_items_per_s": round(n_items / manifest["seconds"], 2)}
    if torch.device(settings.device).type != "cpu":
        return speed  # the bound is the CPU's matmul rate (bench/bench_features.py): none for a GPU run
    backbone = build_backbone(settings)
    rate = matmul_rate(torch.bfloat16 if settings.dtype == "bf16" else torch.float32)
    bound = flop_bound(backbone, items, settings.batch_size, rate)
    return {**speed, "flop_bound_items_per_s": round(n_items / bound["seconds"], 1),
            **idle_bound(bound, n_items, rate, settings.dtype)}


def main():
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--overrides", default="{}", help="JSON dict of config overrides")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--embeddings", default=None, help="save item ID/view embeddings (.npz) here")
    parser.add_argument("--sessions", default=None, help="save the per-test-session outcomes (.npz) here "
                        "(bench/session_outcomes.py)")
    parser.add_argument("--without_transition", default=None, metavar="JSON[,NPZ]",
                        help="TPAD with transition_fusion: validation: also test the trained model with the "
                        "transition score off and write that row (and its per-session outcomes) here")
    parser.add_argument("--train_state", default=None, help="train_state_file of the fit: a rerun of the row goes on "
                        "after the last validation an interrupted one saved; deleted once the row is written")
    args = parser.parse_args()

    config_dict = dict(json.loads(args.overrides), seed=args.seed)
    if args.train_state:
        config_dict["train_state_file"] = args.train_state
    start = time.perf_counter()
    run = run_recbole_tpad(args.model, args.dataset, config_dict=config_dict)
    total_seconds = time.perf_counter() - start
    config, model = run["config"], run["model"]

    epochs = run["epoch_seconds"]
    row = {metric.lower(): float(value) for metric, value in run["test_result"].items()}
    n_test_sessions = run["test_sessions"]
    row.update(
        epoch_limit=config["epochs"],  # a row whose epochs reach it did not stop early
        params=run["params"],
        train_s_per_epoch=round(sum(epochs) / max(len(epochs), 1), 2),
        epochs=len(epochs),
        eval_s=round(run["eval_seconds"], 2),
        s_per_1000_sessions=round(1000 * run["eval_seconds"] / max(n_test_sessions, 1), 3),
        total_s=round(total_seconds + run["earlier_fit_seconds"], 1),  # a resumed fit's earlier processes count
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    row.update(run["view_info"])
    # the hardware and precision the row ran with: enable_amp as the run applied it (recbole_tpad/precision.py)
    device = torch.device(config["device"])
    row.update(cpu=torch.backends.cpu.get_cpu_capability() + ("+bf16" if native_bf16("cpu") else ""),
               gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else "",  # empty: trained on the CPU
               enable_amp=bool(config["enable_amp"]), amp_dtype=amp_dtype(config))
    if getattr(model, "session_item_bias", None) is not None:  # TPAD's learned offset of the session's own items
        row["session_item_offset"] = round(float(model.session_item_offset()), 3)
    row.update(encoding_speed(config, run["train_data"]._dataset, run["item_views"], run["view_info"]))
    ranks = test_ranks(model, run["test_data"], config["device"])
    row.update(ranking_metrics(run["train_data"]._dataset, ranks))
    if args.sessions:
        write_session_outcomes(args.sessions, run, unseen_ranks=ranks[2])
    if args.embeddings and "id" in getattr(model, "views", ()):
        import numpy as np

        from bench.report import tsne_items

        model.eval()
        with torch.no_grad():  # each view's item vectors, as the recommender scores them
            reps = model.item_representations().float().cpu().numpy()
        pick = tsne_items(reps.shape[1])  # only the items the figure draws: the snapshot stays small
        if len(reps) == len(model.views):  # one representation per view (TPAD; KDSR fuses its views into one)
            np.savez_compressed(args.embeddings, **{view: rep[pick] for view, rep in zip(model.views, reps)})
    if run["resumed_after_epoch"] is not None:
        row["resumed_after_epoch"] = run["resumed_after_epoch"]
    if args.without_transition:
        write_without_transition(run, row, *args.without_transition.split(","))
    Path(args.out).write_text(json.dumps(row, indent=1))
    # the row is written: a fit that early stopping ended is done; one that ended at its epoch limit keeps
    # its state, so that a run under a higher limit goes on from there (bench/run_benchmark.py)
    if args.train_state and stopped_early(run["trainer"].cur_step, run["trainer"].stopping_step):
        Path(args.train_state).unlink(missing_ok=True)


def write_without_transition(run, row, out, sessions=None):
    """The row of the same trained model tested with the transition score off (scale 0).

    Under ``transition_fusion: validation`` the term is off while the model trains, and the
    parameters, data and random stream do not depend on ``transition_score``
    (tests/bench/test_run_one.py), so this is the row a run with ``transition_score: False`` makes,
    paired with TPAD's over the same trained weights. Nothing is written for a model that does not
    pick the scale on validation (``joint``, or no stage 2): that row must be trained on its own.
    """
    from recbole_tpad.quick_start import evaluate_with_topk

    model = run["model"]
    if not getattr(model, "picks_transition_scale", False):
        return
    model.set_transition_scale(0.0)  # the best epoch's weights are loaded: the test above loaded them
    metrics, topk, seconds = evaluate_with_topk(run["trainer"], run["test_data"], load_best_model=False,
                                                show_progress=False)
    derived = {**row, **{metric.lower(): float(value) for metric, value in metrics.items()}}
    derived.update(eval_s=round(seconds, 2), s_per_1000_sessions=round(1000 * seconds / max(run["test_sessions"], 1), 3))
    ranks = test_ranks(model, run["test_data"], run["config"]["device"])
    derived.update(ranking_metrics(run["train_data"]._dataset, ranks))
    if sessions:
        write_session_outcomes(sessions, {**run, "test_topk": topk}, unseen_ranks=ranks[2])
    Path(out).write_text(json.dumps(derived, indent=1))


if __name__ == "__main__":
    main()
