"""Encode every item once: batched, length-bucketed, ``torch.inference_mode`` + autocast; in a
distributed run each rank encodes its share of the batches and the ranks gather every row. A
one-process encoding into the cache keeps a resumable checkpoint of the rows done so far (an hour
and more on a CPU without native bf16), so a run killed halfway goes on from there."""

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from recbole.utils import set_color
from tqdm import tqdm

from recbole_tpad.distributed import gather_item_rows, is_distributed, shard
from recbole_tpad.features.prompt import format_item_prompt

VIEWS = ("text", "image", "fused")


def item_prompts(backbone, items):
    labels = backbone.settings.field_labels
    return [format_item_prompt(record, labels) for record in items.records]


def as_numpy(tensor):
    return tensor.detach().float().cpu().numpy().astype(np.float32)


def bucketed_batches(lengths, has_image, batch_size):
    """Rows 1..N-1 sorted by (image?, token length) and cut into batches: little padding per batch."""
    rows = sorted(range(1, len(lengths)), key=lambda r: (has_image[r], lengths[r], r))
    return [rows[i: i + batch_size] for i in range(0, len(rows), batch_size)]


def encode_items(backbone, items, batch_size=None, adapter=None, progress=True, checkpoint=None):
    """Views of every item row: ``{'text','image','fused': [N,H] float32, 'image_mask': [N] bool}``.

    ``checkpoint``: the store entry (``recbole_tpad.store.CacheEntry``) the views are for; a one-process
    run resumes from its checkpoint and writes one when due (``CacheEntry.save_checkpoint_when_due``).
    """
    batch_size = batch_size or backbone.settings.batch_size
    num_items = len(items)
    hidden = backbone.hidden_size
    views = {name: np.zeros((num_items, hidden), dtype=np.float32) for name in VIEWS}
    views["image_mask"] = np.zeros(num_items, dtype=bool)
    prompts = item_prompts(backbone, items)
    lengths = [len(ids) for ids in backbone.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    may_have_image = [rec.image_path is not None for rec in items.records]
    batches = shard(bucketed_batches(lengths, may_have_image, batch_size))  # this rank's share of a distributed run
    checkpoint = None if is_distributed() else checkpoint  # a rank's share is not the whole schedule
    done = _resume(checkpoint, len(batches), views)
    threads = backbone.settings.threads
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    previous_adapter = backbone.active_adapter
    backbone.set_adapter(adapter)
    was_training = backbone.training
    backbone.eval()
    iterator = batches
    if progress:
        iterator = tqdm(batches, total=len(batches), ncols=100, desc=set_color("Encoding items", "pink"))
    # Images of the next batch are decoded by worker threads while the model runs (Pillow
    # releases the GIL while decoding); on a GPU, decoding is otherwise the bottleneck.
    pool = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) - 1)))

    def load(row):
        return backbone.shrink_image(items.load_image(row))

    def submit(rows):
        return [pool.submit(load, r) if may_have_image[r] else None for r in rows]

    try:
        pending = submit(batches[done]) if done < len(batches) else []
        with torch.inference_mode():
            for index, rows in enumerate(iterator):
                if index < done:  # encoded before the checkpoint this run resumed from
                    continue
                images = [f.result() if f is not None else None for f in pending]
                if index + 1 < len(batches):
                    pending = submit(batches[index + 1])
                inputs = backbone.prepare([prompts[r] for r in rows], images)
                out = backbone(inputs)
                views["text"][rows] = as_numpy(out.text_view)
                views["image"][rows] = as_numpy(out.image_view)
                views["fused"][rows] = as_numpy(out.summary)
                views["image_mask"][rows] = out.image_mask.cpu().numpy()
                if checkpoint is not None:
                    checkpoint.save_checkpoint_when_due(index + 1, len(batches),
                                                        lambda: {name: torch.from_numpy(views[name]) for name in views})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(previous_threads)
        backbone.set_adapter(previous_adapter)
        backbone.train(was_training)
    gather_item_rows(views, [r for rows in batches for r in rows])
    for name in VIEWS:
        views[name][0] = 0.0
    image_mask = views["image_mask"]
    views["image"][~image_mask] = 0.0
    if not np.isfinite(np.stack([views[n] for n in VIEWS])).all():
        raise FloatingPointError("Item encoding produced non-finite values; try feature_dtype: fp32.")
    logging.getLogger().info(
        f"Encoded {num_items - 1} items with {backbone.kind} backbone (adapter={adapter}), "
        f"{int(image_mask.sum())} with an image."
    )
    return views


def _resume(checkpoint, total_batches, views):
    """Fill ``views`` with the rows of a valid checkpoint of ``checkpoint`` and return the batches it
    holds (0: none, or no checkpoint asked for)."""
    resumed = checkpoint.load_checkpoint(total_batches) if checkpoint is not None else None
    if resumed is None:
        return 0
    done, state = resumed
    if set(state) != set(views) or any(tuple(state[name].shape) != views[name].shape for name in views):
        logging.getLogger().warning(f"checkpoint of {checkpoint.folder} holds views of other shapes; encoding restarts")
        return 0
    for name in views:
        views[name][:] = state[name].numpy()
    logging.getLogger().info(set_color(f"Encoding items: resuming at batch {done}/{total_batches}", "yellow"))
    return done
