"""On-disk results of TPAD's training stages: entries of the keyed store, with resumable checkpoints.

A stage's result is the store entry ``<root>/<stage>-<key>/`` (``recbole_tpad.store``: manifest,
atomic commit, validation on read): peft adapter folders, the projector and the alignment heads as
safetensors. A stage that dies halfway never leaves a readable result; it leaves at most the store's
resumable checkpoint ``<root>/<stage>-<key>.partial/checkpoint.pt`` (``CacheEntry.save_checkpoint``)
with a step counter that is validated before a restart resumes from it.
"""

from recbole_tpad.store import CacheEntry


class StageStore(CacheEntry):
    """The store entry, and its resumable checkpoint, of one stage.

    Args:
        root (str | Path): the stages' cache root.
        stage (str): stage name, e.g. ``'knowledge'``.
        key (dict): everything the result is made from (data hashes, backbone, stage config, the
            previous stage's key); its hash names the folder.
    """

    def __init__(self, root, stage, key):
        super().__init__(root, stage, key)
        self.stage = stage
