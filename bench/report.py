"""Tables (CSV, Markdown) and figures of a benchmark run."""

import json
import os
import re
import statistics
from pathlib import Path

from bench.anchors import PROTOCOL, SOURCES, anchors_table
from bench.session_outcomes import load_session_outcomes, sessions_path
from bench.significance import METRICS, compare_models
from bench.variants import ADDED_PARTS, HEADLINE_MODELS, SEEDED_VARIANTS, SIGNIFICANCE_REFERENCE
from recbole_tpad.atomic import atomic_path
from recbole_tpad.compare import table_columns, write_csv

QUALITY = ["recall@10", "recall@20", "mrr@10", "mrr@20", "ndcg@10", "ndcg@20", "hit@20"]
COLD = ["cold_targets", "cold_recall@20", "cold_mrr@20", "cold_ndcg@20"]
COST = ["params", "train_s_per_epoch", "epochs", "eval_s", "s_per_1000_sessions", "peak_rss_mb",
        "stage1_s", "stage2_s", "stage1_train_s", "stage2_train_s", "representation_s", "total_s"]
UNSEEN = ["recall@20", "unseen_recall@20", "mrr@20", "unseen_mrr@20", "ndcg@20", "unseen_ndcg@20"]
# Where a model's hits sit in its top 20: test-session shares per band of target rank
RANK_BANDS = ((1, 1), (2, 3), (4, 10), (11, 20))
ENCODING = ["model", "seed", "representation_s", "encode_items_per_s", "flop_bound_items_per_s", "idle_bound_items_per_s"]


def _fmt(value):
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _markdown(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _finished_by_model(rows):
    """``{model: its rows without an error}``, in the rows' order (one row per seed)."""
    by_model = {}
    for row in rows:
        if not row.get("error"):
            by_model.setdefault(row["model"], []).append(row)
    return by_model


def at_epoch_limit(row, epoch_limit):
    """Whether ``row`` trained up to its epoch limit (its own ``epoch_limit``, else the benchmark's) instead of
    stopping early."""
    return row.get("epochs", 0) >= (row.get("epoch_limit") or epoch_limit)


def headline(rows, epoch_limit=None):
    """Mean and std over seeds of each model's quality metrics (models run with several seeds); with
    ``epoch_limit``, how many of its seeds trained up to it instead of stopping early."""
    by_model = _finished_by_model(rows)
    table = []
    for model, runs in by_model.items():
        entry = {"model": model, "seeds": len(runs)}
        if epoch_limit:
            entry["at epoch limit"] = f"{sum(at_epoch_limit(r, epoch_limit) for r in runs)} of {len(runs)}"
        for metric in ["recall@10", "recall@20", "mrr@20", "ndcg@10", "ndcg@20", "cold_recall@20", "cold_mrr@20"]:
            values = [r[metric] for r in runs if isinstance(r.get(metric), (int, float))]
            if values:
                entry[f"{metric} mean"] = statistics.mean(values)
                entry[f"{metric} std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table.append(entry)
    return table


STAGE_FIGURES = ["stage1_heldout_answer_ce_untrained", "stage1_heldout_answer_ce_trained",
                 "stage2_heldout_recall@10_untrained", "stage2_heldout_recall@10_trained",
                 "stage2_heldout_recall@10_popularity", "stage2_heldout_mrr_untrained", "stage2_heldout_mrr_trained",
                 "stage2_heldout_mrr_popularity", "stage2_amie_recall@10"]


def row_hours(rows):
    """Hours of row time of the finished rows (the sum of their ``total_s``), and the number of runs. A
    derived row (TPAD-no_transition from TPAD's run of its seed) repeats its run's seed and ``total_s``,
    so each (seed, total_s) counts once."""
    runs = {(row["seed"], row["total_s"]) for row in rows
            if not row.get("error") and isinstance(row.get("total_s"), (int, float))}
    return sum(total for _, total in runs) / 3600, len(runs)


def fp32_note(rows):
    """A header line naming the rows that asked for ``enable_amp`` but trained in fp32, their CPU having no
    native bf16 (recbole_tpad/precision.py turns it off there); None when there are none."""
    fp32 = {}
    for row in rows:
        asked = bool(json.loads(row.get("overrides") or "{}").get("enable_amp"))
        if asked and not row.get("error") and str(row.get("enable_amp")).lower() == "false":
            fp32.setdefault(row.get("cpu") or "?", []).append(f"{row['model']} {row['seed']}")
    if not fp32:
        return None
    return ("; ".join(f"{', '.join(names)}: fp32 on a CPU without native bf16 ({cpu})" for cpu, names in fp32.items())
            + ". enable_amp was off for them; their quality is comparable, their times are not")


def gpu_note(rows):
    """A header line naming the rows trained on a GPU (the CSV's ``gpu``) and the dtype of their autocast
    (``amp_dtype``; rows made before that column trained in float16, RecBole's GPU default); None when there are none."""
    gpus = {}
    for row in rows:
        if row.get("gpu") and not row.get("error"):
            autocast = (row.get("amp_dtype") or "float16") if str(row.get("enable_amp")).lower() == "true" else "none"
            gpus.setdefault((row["gpu"], autocast), []).append(f"{row['model']} {row['seed']}")
    if not gpus:
        return None
    return ("; ".join(f"{', '.join(names)}: on one {gpu}, autocast {autocast}" for (gpu, autocast), names in gpus.items())
            + " (their times are not comparable with the CPU rows')")


def _mean_std(values):
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def beyond_noise(values_a, values_b):
    """Two sets of runs (seeds, or seeds x tie seeds) compared: ``mean_a``, ``std_a``, ``mean_b``, ``std_b``,
    ``diff`` = mean_a - mean_b, ``pooled`` = sqrt of the mean of the two variances, and ``beyond``: whether
    |diff| exceeds twice pooled (None with fewer than 2 runs a side)."""
    (mean_a, std_a), (mean_b, std_b) = _mean_std(values_a), _mean_std(values_b)
    diff, pooled = mean_a - mean_b, ((std_a ** 2 + std_b ** 2) / 2) ** 0.5
    beyond = abs(diff) > 2 * pooled if min(len(values_a), len(values_b)) >= 2 else None
    return {"mean_a": mean_a, "std_a": std_a, "mean_b": mean_b, "std_b": std_b, "diff": diff, "pooled": pooled,
            "beyond": beyond}


def noise_verdict(noise, higher, lower, runs="seeds"):
    """:func:`beyond_noise`'s result in words: ``higher`` or ``lower`` (the sign of diff) where beyond the
    noise of ``runs``, else within it, or that it needs 2+ of them a side."""
    if noise["beyond"] is None:
        return f"needs 2+ {runs} a side"
    if not noise["beyond"]:
        return f"within {runs.removesuffix('s')} noise"
    return higher if noise["diff"] > 0 else lower


def means_over_seeds(rows, columns):
    """Per model that has any of ``columns``, the mean over its seeds of each (a TPAD row's stage figures,
    the ``unseen_*`` metrics)."""
    by_model = {}
    for row in rows:
        if not row.get("error") and any(c in row for c in columns):
            by_model.setdefault(row["model"], []).append(row)
    return [dict({"model": model, "seeds": len(runs)}, **{c: _mean_std([r.get(c) for r in runs])[0] for c in columns})
            for model, runs in by_model.items()]


# What each point of the stage-2 learning curve reports: the downstream test, then stage 2's own held-out
# figures (T's next-item recall, AMIE's retrieval of T's feature from K's), which show what more pairs buy
# before the downstream model reads them.
CURVE_FIGURES = ("recall@20", "mrr@20", "stage2_heldout_recall@10_trained", "stage2_amie_recall@1")


def stage2_curve(rows, default_pairs=None):
    """Points of the stage-2 learning curve: TPAD-no_distill (0 pairs), TPAD-pairs_N and TPAD (its default)."""
    from recbole_tpad.stages.config import StageConfig

    default_pairs = default_pairs or StageConfig.from_config({}).stage2_sessions_per_epoch
    names = {"TPAD-no_distill": 0, "TPAD": default_pairs}
    names.update({row["model"]: int(row["model"].split("_")[1]) for row in rows
                  if row["model"].startswith("TPAD-pairs_")})
    if not any(name.startswith("TPAD-pairs_") for name in names):
        return []
    points = []
    for name, pairs in sorted(names.items(), key=lambda item: item[1]):
        runs = [r for r in rows if r["model"] == name and not r.get("error")]
        if not runs:
            continue
        point = {"stage-2 pairs": pairs, "row": name, "seeds": len(runs)}
        for metric in CURVE_FIGURES:
            mean, std = _mean_std([r.get(metric) for r in runs])
            point[metric] = "" if mean is None else f"{mean:.4f} +- {std:.4f}"
            point[f"_{metric}"] = (mean, std)
        points.append(point)
    return points


def curve_comparisons(rows, curve, metrics=("recall@20", "mrr@20")):
    """Every two points of the stage-2 curve (the one with more pairs first): per metric the difference of
    their means over seeds, the pooled std and whether it is beyond seed noise (:func:`beyond_noise`)."""
    by_model, table = _finished_by_model(rows), []
    for i, fewer in enumerate(curve):
        for more in curve[i + 1:]:
            for metric in metrics:
                values_more, values_fewer = ([r[metric] for r in by_model[point["row"]] if isinstance(r.get(metric), (int, float))]
                                             for point in (more, fewer))
                if not values_more or not values_fewer:
                    continue
                noise = beyond_noise(values_more, values_fewer)
                verdict = noise_verdict(noise, "beyond seed noise", "beyond seed noise")
                table.append({"pairs": f"{more['stage-2 pairs']} vs {fewer['stage-2 pairs']}", "metric": metric,
                              "diff": noise["diff"], "pooled std": noise["pooled"], "by seeds": verdict})
    return table


def significance_rows(rows, out_dir, dataset, reference=SIGNIFICANCE_REFERENCE, best_other=None):
    """Paired tests of ``reference`` against each other headline model and ``best_other``, the best other
    stock model as the benchmark chose it (``bench.variants.best_other_stock``), on the seed-averaged per-session outcomes (bench/significance.py); one row
    per model and metric. Models without per-session files are listed with a note instead."""
    by_model = _finished_by_model(rows)
    if reference not in by_model:
        return []
    others = [model for model in by_model if model in HEADLINE_MODELS and model != reference]
    if best_other in by_model:
        others.append(best_other)

    ours = _outcomes(by_model[reference], out_dir, dataset)
    table = []
    for model in others:
        theirs = _outcomes(by_model[model], out_dir, dataset)
        label = model + ("" if model in HEADLINE_MODELS else " (best other stock model)")
        if not ours or not theirs:
            table.append({"vs": label, "metric": "", "note": "no per-session files for "
                          + (reference if not ours else model)})
            continue
        try:
            results = compare_models(ours, theirs)
        except ValueError as error:
            table.append({"vs": label, "metric": "", "note": str(error)})
            continue
        table += [{"vs": label, **paired_cells(results[metric], metric, reference, ours, theirs)} for metric in METRICS]
        # the ranking without the session's own items, over the seeds whose files keep it (bench/session_outcomes.py)
        ours_u, theirs_u = ([run for run in runs if f"unseen_{METRICS[0]}" in run["outcomes"]] for runs in (ours, theirs))
        if ours_u and theirs_u:
            unseen = compare_models(ours_u, theirs_u, metrics=[f"unseen_{metric}" for metric in METRICS])
            table += [{"vs": label, **paired_cells(result, metric, reference, ours_u, theirs_u)}
                      for metric, result in unseen.items()]
    return table


def paired_cells(r, metric, reference, ours, theirs):
    """One paired-test table row's cells from ``r``, a ``bench.significance.paired_comparison`` result of
    ``reference`` (per-session files ``ours``) against another model (``theirs``)."""
    return {"metric": metric, "seeds": f"{len(ours)} / {len(theirs)}", reference: r["mean_a"], "other": r["mean_b"],
            "diff": r["diff"], "rel %": f"{r['rel_%']:+.1f}%",
            "95% CI of diff": f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]", "Wilcoxon p": f"{r['p']:.2g}",
            "sessions": r["n"], "ci_has_zero": r["ci_low"] <= 0 <= r["ci_high"]}


def _outcomes(runs, out_dir, dataset):
    """The per-session outcomes of a model's rows (one per seed) that have their file."""
    paths = [sessions_path(out_dir, dataset, row["model"], row["seed"]) for row in runs]
    return [load_session_outcomes(path) for path in paths if path.is_file()]


def rank_band_rows(rows, out_dir, dataset):
    """Per model with per-session files, the share of test sessions whose target sits in each band of
    ``RANK_BANDS`` (mean over its seeds), and the share of its MRR@20 that rank 1 gives: two models with
    the same recall can differ in MRR only through where their hits sit."""
    table = []
    for model, runs in _finished_by_model(rows).items():
        outcomes = _outcomes(runs, out_dir, dataset)
        if not outcomes:
            continue
        row = {"model": model, "seeds": len(outcomes)}
        for low, high in RANK_BANDS:
            row[f"rank {low}" if low == high else f"rank {low}-{high}"] = statistics.mean(
                float(((o["rank"] >= low) & (o["rank"] <= high)).mean()) for o in outcomes)
        mrr = statistics.mean(float(o["outcomes"]["mrr@20"].mean()) for o in outcomes)
        row["mrr@20"] = mrr
        row["of MRR@20 from rank 1"] = f"{100 * row['rank 1'] / mrr:.0f}%" if mrr else ""
        table.append(row)
    return table


def ablation_rows(rows, out_dir, dataset, reference="TPAD"):
    """TPAD with each part of ``SEEDED_VARIANTS`` and ``ADDED_PARTS`` against TPAD without it (a ``no_*`` row removes a
    part of TPAD; an ``ADDED_PARTS`` row adds one): per metric, the mean over seeds of each, the
    difference, the pooled std over seeds (sqrt of the mean of the two variances) and whether the
    difference is beyond seed noise (more than twice the pooled std; it needs 2+ seeds on each side),
    beside the paired Wilcoxon p over the seed-averaged test sessions."""
    by_model = _finished_by_model(rows)
    if reference not in by_model:
        return []
    table = []
    for variant in sorted(SEEDED_VARIANTS | ADDED_PARTS):
        name = f"{reference}-{variant}"
        if name not in by_model:
            continue
        with_part, without_part = (name, reference) if variant in ADDED_PARTS else (reference, name)
        ours, theirs = (_outcomes(by_model[m], out_dir, dataset) for m in (with_part, without_part))
        paired = compare_models(ours, theirs) if ours and theirs and ours[0]["digest"] == theirs[0]["digest"] else {}
        for metric in METRICS:
            values_a, values_b = ([r[metric] for r in by_model[m] if isinstance(r.get(metric), (int, float))]
                                  for m in (with_part, without_part))
            if not values_a or not values_b:
                continue
            noise = beyond_noise(values_a, values_b)
            mean_a, mean_b, diff, pooled = noise["mean_a"], noise["mean_b"], noise["diff"], noise["pooled"]
            seeds = (len(by_model[with_part]), len(by_model[without_part]))
            verdict = noise_verdict(noise, "helps", "hurts")
            table.append({"part": variant.removeprefix("no_"), "row": name, "metric": metric,
                          "seeds": f"{seeds[0]} / {seeds[1]}", "with it": mean_a, "without it": mean_b, "diff": diff,
                          "rel %": f"{100 * diff / mean_b:+.1f}%" if mean_b else "", "pooled std": pooled,
                          "the part, by seeds": verdict,
                          "Wilcoxon p": f"{paired[metric]['p']:.2g}" if paired else "no per-session files"})
    return table


def replace_marked_block(path, name, text):
    """Replace what lies between ``<!-- begin: name -->`` and ``<!-- end: name -->`` in ``path``;
    False (file untouched) when the file or its markers are missing."""
    path = Path(path)
    if not path.is_file():
        return False
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- begin: {re.escape(name)} -->\n).*?(<!-- end: {re.escape(name)} -->)", re.S)
    if not pattern.search(content):
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2), content), encoding="utf-8")
    return True


def anchors_section(dataset, rows):
    """The Markdown of the published anchors beside our rows, and what differs in protocol; '' without anchors."""
    table = anchors_table(dataset, rows)
    if not table:
        return ""
    return "\n".join([_markdown(table, ["model", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "ranking", "source",
                                        "training"]),
                      "", SOURCES[dataset], "", f"What differs in protocol: {PROTOCOL[dataset]}"])


def results_headline(rows, paired, best_other=None, ablations=()):
    """docs/results.md's headline table of a dataset, from the benchmark's rows and their paired tests
    (``significance_rows``; the transition-score-off row's from ``ablation_rows``): per headline model and the
    best other stock model, mean +- std over seeds of recall@20 and MRR@20 with the reference's paired gain,
    then the same ranked without the session's own items (``unseen_*``, over the seeds whose rows have them);
    '' without the reference model."""
    ref, by_model = SIGNIFICANCE_REFERENCE, _finished_by_model(rows)
    if ref not in by_model:
        return ""
    tests = {(row["vs"].removesuffix(" (best other stock model)"), row["metric"]): row for row in paired if row.get("metric")}
    tests.update({(row["row"], row["metric"]): row for row in ablations if row["row"] == f"{ref}-no_transition"})

    def gain(model, metric):
        test = tests.get((model, metric))
        if not test:
            return ""
        p = test["Wilcoxon p"]  # an ablation without per-session files says so instead of a p
        return test["rel %"] + (f", p = {p}" if p[:1].isdigit() else "") + (
            f" (95% CI of the difference {test['95% CI of diff']})" if test.get("ci_has_zero") else "")

    def mean_std(runs, metric):
        mean, std = _mean_std([run.get(metric) for run in runs])
        return "" if mean is None else f"{mean:.4f}" + (f" +- {std:.4f}" if len(runs) > 1 else "")

    unseen_ref = [run for run in by_model[ref] if "unseen_mrr@20" in run]

    def unseen_gain(model, unseen, metric):  # the means' ratio; the paired test where both sides' files keep the ranking
        ours, theirs = (_mean_std([run[f"unseen_{metric}"] for run in runs])[0] for runs in (unseen_ref, unseen))
        test = tests.get((model, f"unseen_{metric}"))
        return (f"{100 * (ours / theirs - 1):+.1f}%" if theirs else "") + (
            f" (paired on seeds {test['seeds']}: p = {test['Wilcoxon p']})" if test else "")

    table = []
    for model in [ref, f"{ref}-no_transition"] + [m for m in by_model if m in HEADLINE_MODELS and m != ref] + [best_other]:
        runs = by_model.get(model)
        if not runs:
            continue
        unseen = [run for run in runs if "unseen_mrr@20" in run]
        entry = {"model": {ref: f"**{ref}**", f"{ref}-no_transition": f"{ref}, transition score off (same models)",
                           best_other: f"{best_other} (best other stock model)"}.get(model, model),
                 "seeds": len(runs), "recall@20": mean_std(runs, "recall@20"), "MRR@20": mean_std(runs, "mrr@20"),
                 "unseen seeds": len(unseen), "unseen recall@20": mean_std(unseen, "unseen_recall@20"),
                 "unseen MRR@20": mean_std(unseen, "unseen_mrr@20")}
        if model != ref:
            entry[f"{ref}'s recall@20 gain"], entry[f"{ref}'s MRR@20 gain"] = gain(model, "recall@20"), gain(model, "mrr@20")
            if unseen and unseen_ref:
                entry[f"{ref}'s gain, unseen"] = " / ".join(unseen_gain(model, unseen, m) for m in ("recall@20", "mrr@20"))
        table.append(entry)
    columns = ["model", "seeds", "recall@20", "MRR@20", f"{ref}'s recall@20 gain", f"{ref}'s MRR@20 gain"]
    text = (f"Mean +- std over seeds. Gains: {ref} against the model, relative, with the paired Wilcoxon p over the "
            "seed-averaged test sessions (and the bootstrap interval where it includes zero).")
    if any(f"{ref}'s gain, unseen" in entry for entry in table):  # another model has that ranking to compare
        columns += ["unseen seeds", "unseen recall@20", "unseen MRR@20", f"{ref}'s gain, unseen"]
        text += (" `unseen`: the same rows ranked without the session's own items, over the seeds whose rows have "
                 "that ranking; its gain (recall@20 / MRR@20) is the ratio of those means, with the paired Wilcoxon p "
                 f"over the seeds (`{ref}'s / the other's`) whose per-session files on both sides keep the ranking.")
    return "\n".join([text, "", _markdown(table, columns)])


# docs/results.md's ablation table: each removed part in the order the text reads them, and its label there
ABLATION_LABELS = {
    "distill": "stage 2 (`no_distill`: no distilled views, no transition score)",
    "amie": "AMIE (`no_amie`)",
    "hmie": "HMIE (`no_hmie`)",
    "gen": "the generation tasks (`no_gen`)",
    "transition": "the transition score (same models, term off)",
}


def results_ablations(ablations, reference=SIGNIFICANCE_REFERENCE):
    """docs/results.md's table of TPAD's removed parts, from ``ablation_rows``: per part TPAD's means without
    it, the part's relative effect (recall@20 / MRR@20), its verdict against seed noise and the paired p;
    parts a row adds (``ADDED_PARTS``) are left to the dataset's Markdown. '' without such a row."""
    cells = {(row["part"], row["metric"]): row for row in ablations}
    table, with_part = [], None
    for part, label in ABLATION_LABELS.items():
        recall, mrr = cells.get((part, "recall@20")), cells.get((part, "mrr@20"))
        if not recall or not mrr:
            continue
        with_part = with_part or (recall, mrr)  # a removed part's "with it" is the reference's own mean
        verdicts = dict.fromkeys((recall["the part, by seeds"], mrr["the part, by seeds"]))
        table.append({f"{reference} without": label, "recall@20": recall["without it"], "MRR@20": mrr["without it"],
                      "the part, recall@20 / MRR@20": f"{recall['rel %']} / {mrr['rel %']}",
                      "by seeds (twice the pooled std)": " / ".join(verdicts),
                      "Wilcoxon p": f"{recall['Wilcoxon p']} / {mrr['Wilcoxon p']}"})
    if not table:
        return ""
    means = " / ".join(f"{cell['with it']:.4f}" for cell in with_part)
    seeds = with_part[0]["seeds"].split(" / ")[0]
    return "\n".join([f"Means over seeds, recall@20 / MRR@20, against {reference}'s {means} ({seeds} seeds); a part's "
                      "effect is relative to the row without it, beyond seed noise where the difference exceeds twice "
                      "the pooled std over seeds; Wilcoxon p: paired over the seed-averaged test sessions.",
                      "", _markdown(table, list(table[0]))])


# docs/results.md's names of the learning curve's figures (CURVE_FIGURES)
CURVE_LABELS = {"recall@20": "recall@20", "mrr@20": "MRR@20", "stage2_heldout_recall@10_trained": "T's held-out recall@10",
                "stage2_amie_recall@1": "AMIE recall@1"}


def results_curve(curve):
    """docs/results.md's stage-2 learning curve, from ``stage2_curve``: '' without its points."""
    if not curve:
        return ""
    table = [{"stage-2 pairs": f"{point['stage-2 pairs']:,}", "row": point["row"], "seeds": point["seeds"],
              **{CURVE_LABELS[figure]: point[figure] for figure in CURVE_FIGURES}}
             for point in curve]
    return "\n".join(["Mean +- std over seeds; stage 2's own figures on held-out training pairs.", "",
                      _markdown(table, list(table[0]))])


def paired_section(rows, out_dir, dataset, best_other=None, table=None):
    """The Markdown lines of the paired tests (``significance_rows``, or ``table`` where the caller has
    them); none without the reference model."""
    table = significance_rows(rows, out_dir, dataset, best_other=best_other) if table is None else table
    if not table:
        return []
    ref = SIGNIFICANCE_REFERENCE
    return [f"## {ref} against the other headline models: paired tests over the same test sessions",
            f"Per test session, MRR@20 is the reciprocal rank within the top 20 (0 outside) and Recall@20 a hit; "
            f"each model's per-session values are averaged over its seeds (`seeds`: {ref}'s / the other's), then "
            "paired session by session (`sessions/`, bench/significance.py). "
            f"`diff` = {ref} - other, `rel %` = diff / other; 95% CI: paired bootstrap of the mean difference over "
            "sessions (2,000 resamples, percentile); p: two-sided Wilcoxon signed-rank test on the per-session "
            "differences (sessions where both are equal left out). Seed-to-seed spread is in the headline table, "
            "not in these intervals."
            + (" `unseen_*` rows: the same test with the sessions ranked without their own items (the `unseen_*` "
               "columns), over the seeds whose per-session files keep that ranking."
               if any(row["metric"].startswith("unseen_") for row in table) else ""),
            _markdown(table, ["vs", "metric", "seeds", ref, "other", "diff", "rel %", "95% CI of diff", "Wilcoxon p",
                              "sessions", "note"]),
            ""]


def write_report(rows, out_dir, dataset, header, smoke=False, epoch_limit=None, best_other=None):
    """``<dataset>.csv`` and ``<dataset>.md`` with the figures; ``epoch_limit``, the rows' maximum
    epochs, marks the models whose rows trained up to it (not converged by early stopping);
    ``best_other``, the benchmark's best other stock model, is paired with TPAD beside the headline models."""
    out_dir = Path(out_dir)
    write_csv(rows, out_dir / f"{dataset}.csv")
    first_seed = {}
    for row in rows:
        first_seed.setdefault(row["model"], row)
    singles = list(first_seed.values())
    heads = headline(rows, epoch_limit)
    head_columns = (["model", "seeds"] + (["at epoch limit"] if epoch_limit else [])
                    + [c for c in table_columns(heads) if c.endswith(("mean", "std"))])
    hours, runs = row_hours(rows)
    if runs:
        header = {**header, "row time": f"{hours:.1f} h over {runs} runs (the sum of each run's total_s; "
                                        "rows run side by side share the machine, so the wall time is less)"}
    note = fp32_note(rows)
    if note:
        header = {**header, "precision": note}
    note = gpu_note(rows)
    if note:
        header = {**header, "GPU rows": note}
    title = f"# Benchmark: {dataset}" + (" (SMOKE RUN: small sample, 1 epoch, tiny backbone; not results)" if smoke else "")
    tests, ablations = significance_rows(rows, out_dir, dataset, best_other=best_other), ablation_rows(rows, out_dir, dataset)
    paired, anchors = paired_section(rows, out_dir, dataset, best_other, tests), anchors_section(dataset, rows)
    curve = stage2_curve(rows)
    if not smoke:  # docs/results.md carries these tables between its markers
        for name, text in ((f"anchors-{dataset}", anchors),
                           (f"headline-{dataset}", results_headline(rows, tests, best_other, ablations)),
                           (f"ablations-{dataset}", results_ablations(ablations)),
                           (f"curve-{dataset}", results_curve(curve))):
            if text:
                replace_marked_block(out_dir.parent / "results.md", name, text)
    parts = [
        title,
        "",
        "\n".join(f"- {key}: `{value}`" if key == "command" else f"- {key}: {value}" for key, value in header.items()),
        "- rows: one per model; seeds beyond the first only for the headline models and the best other stock model. Cold start = test targets whose item has at most 5 training interactions.",
        "",
        "## Headline (mean and std over seeds)",
        *([f"`at epoch limit`: the seeds whose row trained up to its epoch limit (the CSV's `epoch_limit`; {epoch_limit} "
           "for rows without one) instead of stopping early "
           "(not converged: read those means as lower bounds)."] if epoch_limit else []),
        _markdown(heads, head_columns),
        "",
        *paired,
        *(["## Published anchors beside ours (full ranking)", anchors, ""] if anchors else []),
        "## All models (first seed)",
        _markdown(singles, ["model", "seed"] + QUALITY + ["error"]),
        "",
        "## Cold-start targets (first seed)",
        _markdown(singles, ["model"] + COLD),
        "",
        "## Cost (first seed)",
        _markdown(singles, ["model"] + COST),
        "",
    ]
    if ablations:
        parts += ["## TPAD's parts: seeded ablations",
                  "Each row: TPAD with one part against TPAD without it, as the mean over seeds (`seeds`: with / "
                  "without). A `no_*` row is TPAD without a part of its defaults; "
                  + ", ".join(f"`{part}`" for part in sorted(ADDED_PARTS))
                  + " are TPAD with a part its defaults leave out (additions, not the paper's). A part helps beyond seed noise "
                  "where the difference exceeds twice the pooled std over seeds. Wilcoxon p: paired signed-rank "
                  "test over the seed-averaged test sessions (as the paired tests above). `no_transition` is "
                  "TPAD's own trained model tested with the transition score off (bench/run_benchmark.py), so its "
                  "seeds differ from TPAD's only by the term.",
                  _markdown(ablations, ["part", "row", "metric", "seeds", "with it", "without it", "diff", "rel %",
                                        "pooled std", "the part, by seeds", "Wilcoxon p"]), ""]
    if any("unseen_mrr@20" in row for row in rows):
        parts += ["## Ranking without the session's own items (mean over seeds)",
                  "RecBole's full ranking, the benchmark's protocol, keeps a session's own items as candidates; "
                  "`unseen_*`: the same models' rankings with them dropped (bench/cold_start.py), the protocol of "
                  "evaluation code that removes a user's history. A target that repeats a session item is then a "
                  "miss. Rows made before this column existed are not listed.",
                  _markdown(means_over_seeds([r for r in rows if "unseen_mrr@20" in r], UNSEEN),
                            ["model", "seeds"] + UNSEEN), ""]
    bands = rank_band_rows(rows, out_dir, dataset)
    if bands:
        parts += ["## Where the hits sit in the top 20 (test sessions, mean over seeds)",
                  "Share of test sessions whose target is at each rank (RecBole's full ranking, the benchmark's "
                  "protocol), from the rows' per-session files. A model that puts one of the session's own items "
                  "first (section 'Ranking without the session's own items') can only place its hits from rank 2 "
                  "on, which halves their reciprocal rank.",
                  _markdown(bands, list(bands[0])), ""]
    stage_columns = [c for c in STAGE_FIGURES if any(c in row for row in rows)]
    if stage_columns:
        parts += ["## TPAD's stages, held out (mean over seeds)",
                  "On data each stage did not train on: stage 1, answer-token CE of held-out items' knowledge "
                  "(untrained backbone vs adapter K); stage 2, next-item recall@10 / MRR of the Transfer-MLLM's "
                  "session state against every item on training pairs of held-out sessions (untrained T, trained "
                  "T, popularity), and AMIE's retrieval of an item's T feature from its K feature among 1,000.",
                  _markdown(means_over_seeds(rows, stage_columns), ["model", "seeds"] + stage_columns), ""]
    if curve:
        parts += ["## Learning curve of the Transition Distillation Stage (mean +- std over seeds)",
                  _markdown(curve, ["stage-2 pairs", "row", "seeds", *CURVE_FIGURES]), "",
                  "Every two points: `diff` = the mean with more pairs minus the mean with fewer; beyond seed noise "
                  "where it exceeds twice the pooled std over seeds.",
                  _markdown(curve_comparisons(rows, curve), ["pairs", "metric", "diff", "pooled std", "by seeds"]), ""]
    encoded = [row for row in rows if row.get("encode_items_per_s")]
    if encoded:  # a row whose item views came from the cache has no encoding speed of its own
        parts += ["## Item encoding by the Knowledge-MLLM (rows that encoded every item in their run)",
                  "FLOP bound: 2 x non-embedding LLM parameters x tokens run (padding included), plus the image "
                  "encoder per photo, at the matmul rate measured after the run (bench/bench_features.py), which "
                  "other work on the machine lowers; `idle_bound_items_per_s`: the same work at the idle "
                  "machine's bf16 rate (`IDLE_BF16_GFLOPS`, 860 GFLOP/s on 2 threads of this CPU).",
                  _markdown(encoded, ENCODING), ""]
    figures = write_figures(singles, out_dir, dataset, curve)
    parts += [f"![{name}]({os.path.basename(path)})" for name, path in figures]
    (out_dir / f"{dataset}.md").write_text("\n".join(parts) + "\n", encoding="utf-8")


def write_figures(rows, out_dir, dataset, curve=()):
    """Bar chart of the main table, recall@20 against training time, the stage-2 learning curve, t-SNE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    done = [r for r in rows if not r.get("error") and isinstance(r.get("recall@20"), float)]
    figures = []
    if done:
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(done)), 4))
        x = range(len(done))
        ax.bar([i - 0.2 for i in x], [r["recall@20"] for r in done], width=0.4, label="Recall@20")
        ax.bar([i + 0.2 for i in x], [r["mrr@20"] for r in done], width=0.4, label="MRR@20")
        ax.set_xticks(list(x), [r["model"] for r in done], rotation=60, ha="right")
        ax.set_title(f"{dataset}: test metrics")
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{dataset}-metrics.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures.append(("test metrics", path))

        fig, ax = plt.subplots(figsize=(6, 4))
        points = []
        for r in done:
            train_s = r.get("train_s_per_epoch", 0) * r.get("epochs", 0) + sum(r.get(k, 0) or 0 for k in ("stage1_s", "stage2_s", "representation_s"))
            points.append((max(train_s, 1e-3), r["recall@20"]))
            ax.scatter(*points[-1])
        ax.set_xscale("log")
        # plain seconds at 1-2-5 steps: matplotlib's own minor labels (3x10^2, 4x10^2) run into each other
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.margins(y=0.1)  # room for the labels of the top and bottom points
        label_points(ax, points, [r["model"] for r in done])
        ax.set_xlabel("training time incl. the TPAD stages run in that row (s, log; cached stages: 0)", fontsize=8)
        ax.set_ylabel("Recall@20")
        ax.set_title(f"{dataset}: quality against training time")
        fig.tight_layout()
        path = out_dir / f"{dataset}-recall-vs-time.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures.append(("recall against time", path))
    if curve:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
        pairs = [p["stage-2 pairs"] for p in curve]
        for ax, metric in zip(axes, ("recall@20", "mrr@20")):
            means = [p[f"_{metric}"][0] for p in curve]
            stds = [p[f"_{metric}"][1] for p in curve]
            ax.errorbar(pairs, means, yerr=stds, marker="o", capsize=3)
            ax.set_xscale("symlog", linthresh=min(p for p in pairs if p > 0) if any(pairs) else 1)
            ax.set_xticks(pairs, [f"{p:,}" for p in pairs], fontsize=8)  # the points' own pairs, not 10^k
            ax.minorticks_off()
            ax.set_xlabel("stage-2 training pairs (0: no distillation)", fontsize=8)
            ax.set_ylabel(f"test {metric}")
        fig.suptitle(f"{dataset}: TPAD against the stage-2 training pairs (mean +- std over seeds)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{dataset}-stage2-curve.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        figures.append(("stage-2 learning curve", path))
    tsne = write_tsne(out_dir, dataset, plt)
    if tsne:
        figures.append(("t-SNE of ID and modality embeddings", tsne))
    return figures


def label_points(ax, points, names, fontsize=7):
    """Name each point; a label that would cover one already placed moves up or down in steps, with a
    thin line back to its point (the ablation rows of a benchmark sit close together)."""
    ax.figure.canvas.draw()  # fixes the axis limits, so labels are measured where they will be drawn
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for (x, y), name in sorted(zip(points, names), key=lambda item: -item[0][1]):
        label = ax.annotate(name, (x, y), xytext=(3, 2), textcoords="offset points", fontsize=fontsize)
        for step in range(1, 40):  # offsets 2, 12, -8, 22, -18, ... points: the nearest free slot
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            label.xyann = (3, 2 + (step + 1) // 2 * 10 * (1 if step % 2 else -1))
        placed.append(label.get_window_extent(renderer))
        if label.xyann[1] != 2:  # drawn again, now with the line back to its point
            label.remove()
            ax.annotate(name, (x, y), xytext=label.xyann, textcoords="offset points", fontsize=fontsize,
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"})


def tsne_items(n_items, size=1000, seed=0):
    """Indices of the items the t-SNE draws (the padding item 0 aside): the same for every snapshot of a
    dataset, so before and after distillation show the same items, and the saved snapshot stays small."""
    import numpy as np

    return np.sort(np.random.default_rng(seed).choice(np.arange(1, n_items), size=min(size, n_items - 1), replace=False))


def write_tsne(out_dir, dataset, plt, seed=0):
    """t-SNE of ID against modality embeddings, before (stage 1 only) and after distillation, from the
    item snapshots bench/run_one.py saved (already the sample of ``tsne_items``)."""
    import numpy as np
    from sklearn.manifold import TSNE

    panels = [("before distillation (TPAD-no_distill)", out_dir / f"{dataset}-TPAD-no_distill-embeddings.npz"),
              ("after distillation (TPAD)", out_dir / f"{dataset}-TPAD-embeddings.npz")]
    panels = [(title, path) for title, path in panels if path.is_file()]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (title, path) in zip(axes[0], panels):
        snapshot = np.load(path)
        ids = snapshot["id"]
        names = [k for k in snapshot.files if k != "id"]
        stacked = np.concatenate([ids] + [snapshot[k] for k in names])
        stacked = stacked / (np.linalg.norm(stacked, axis=1, keepdims=True) + 1e-8)
        points = TSNE(n_components=2, random_state=seed, init="pca", perplexity=30).fit_transform(stacked)
        gap = []
        for j, name in enumerate(["id"] + names):
            part = points[j * len(ids):(j + 1) * len(ids)]
            ax.scatter(part[:, 0], part[:, 1], s=3, label=name, alpha=0.6)
        unit = np.split(stacked, len(names) + 1)  # the normalised ID block, then each view's
        for name, view in zip(names, unit[1:]):  # mean cosine distance between an item's ID and modality vectors
            gap.append(f"{name}: {1 - float((unit[0] * view).sum(1).mean()):.3f}")
        ax.set_title(f"{title}\nID-modality cosine distance {', '.join(gap)}", fontsize=9)
        ax.legend(markerscale=4)
    fig.tight_layout()
    path = out_dir / f"{dataset}-tsne.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
