"""TPAD's trainer: the MLLM stages before RecBole's standard downstream fit / evaluate.

``TPADTrainer`` overrides one hook of :class:`MultimodalTrainer`, ``prepare_item_views``: instead
of the base backbone's views it returns the distilled Knowledge-MLLM's, made by
:class:`recbole_tpad.stages.pipeline.StagePipeline` (Knowledge Acquisition, Transition
Distillation, representation generation; each cached on disk, skipped when valid, resumed when
interrupted). Stage 2 learns from ``train_data`` only, remembered by ``fit``.
"""

from recbole_tpad.trainer.multimodal_trainer import MultimodalTrainer


class TPADTrainer(MultimodalTrainer):
    r"""``MultimodalTrainer`` whose item views come from TPAD's distillation stages."""

    def __init__(self, config, model):
        from recbole_tpad.stages.config import StageConfig

        StageConfig.from_config(config)  # bad stage keys fail here, before any data or model work
        super(TPADTrainer, self).__init__(config, model)
        self._stage_train_dataset = None
        self.stage_seconds = {}  # wall time of each stage of the last prepare_item_views
        self.stage_views_manifest = {}  # what the item views of the last prepare_item_views were made from

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._stage_train_dataset = train_data._dataset
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def prepare_item_views(self, dataset):
        from recbole_tpad.stages.pipeline import StagePipeline

        pipeline = StagePipeline(self.config, dataset, train_dataset=self._stage_train_dataset,
                                 show_progress=bool(self.config["show_progress"]))
        views = pipeline.run()
        self.stage_seconds = {f"{name}_s": round(seconds, 1) for name, seconds in pipeline.timings.items()}
        self.stage_views_manifest = views.manifest
        return views.views, views.image_mask
