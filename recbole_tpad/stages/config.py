"""Validated settings of TPAD's training stages, read once per run from a RecBole ``Config``.

Every key, and its default, is in the stage block of ``properties/model/TPAD.yaml`` (the one home
of the defaults: :func:`recbole_tpad.settings.read_keys`). Bad values fail here, early, naming the
key (peft-style ``__post_init__`` validation).
"""

from dataclasses import asdict, dataclass, fields

from recbole_tpad.errors import ConfigError
from recbole_tpad.settings import read_keys

# config key -> (dataclass field, kind); kinds: 'weight' (float >= 0), 'posfloat' (> 0),
# 'count' (int >= 1), 'count0' (int >= 0, 0 = all / off), 'bool', 'path'
_KEYS = {
    "stage_cache_dir": ("cache_dir", "path"),
    "stage_generation_task": ("generation_task", "bool"),
    "stage_amie": ("amie", "bool"),
    "stage_hmie": ("hmie", "bool"),
    "stage_distillation": ("distillation", "bool"),
    "stage1_epochs": ("stage1_epochs", "count0"),
    "stage1_items_per_epoch": ("stage1_items_per_epoch", "count0"),
    "stage1_batch_size": ("stage1_batch_size", "count"),
    "stage1_learning_rate": ("stage1_learning_rate", "posfloat"),
    "stage1_gen_weight": ("stage1_gen_weight", "weight"),
    "stage1_itc_weight": ("stage1_itc_weight", "weight"),
    "stage1_projector_items": ("stage1_projector_items", "count0"),
    "stage1_heldout_items": ("stage1_heldout_items", "count0"),
    "stage2_epochs": ("stage2_epochs", "count0"),
    "stage2_sessions_per_epoch": ("stage2_sessions_per_epoch", "count0"),
    "stage2_batch_size": ("stage2_batch_size", "count"),
    "stage2_learning_rate": ("stage2_learning_rate", "posfloat"),
    "stage2_head_epochs": ("stage2_head_epochs", "count0"),
    "stage2_head_batch_size": ("stage2_head_batch_size", "count"),
    "stage2_head_learning_rate": ("stage2_head_learning_rate", "posfloat"),
    "stage2_heldout_pairs": ("stage2_heldout_pairs", "count0"),
    "stage2_gen_t_weight": ("stage2_gen_t_weight", "weight"),
    "stage2_next_weight": ("stage2_next_weight", "weight"),
    "stage2_amie_weight": ("stage2_amie_weight", "weight"),
    "stage2_hmie_weight": ("stage2_hmie_weight", "weight"),
    "stage2_gen_k_weight": ("stage2_gen_k_weight", "weight"),
    "stage_lora_layers": ("lora_layers", "count0"),
    "stage_session_items": ("session_items", "count"),
    "stage_title_words": ("title_words", "count"),
    "stage_answer_words": ("answer_words", "count"),
    "stage_temperature": ("temperature", "posfloat"),
    "stage_amie_temperature": ("amie_temperature", "posfloat"),
    "stage_amie_proj_dim": ("amie_proj_dim", "count"),
    "stage_hmie_shared_dim": ("hmie_shared_dim", "count"),
    "stage_hmie_specific_dim": ("hmie_specific_dim", "count"),
    "stage_hmie_hidden_size": ("hmie_hidden_size", "count"),
    "stage_hmie_recon_weight": ("hmie_recon_weight", "weight"),
    "stage_hmie_tokens": ("hmie_tokens", "count"),
    "stage_grad_clip": ("grad_clip", "weight"),
    "stage_checkpoint_steps": ("checkpoint_steps", "count0"),
}


# the session layout (last item whole) and L_next's target space (the frozen base's item features through
# the transition head), in stage 2's keys and its head fit's: results of the older layouts are not reused
STAGE2_LAYOUT = {"session_layout": "last-item-whole", "next_targets": "base-features-head"}


@dataclass
class StageConfig:
    # one field per key of _KEYS; the defaults are in properties/model/TPAD.yaml
    cache_dir: str | None
    generation_task: bool
    amie: bool
    hmie: bool
    distillation: bool
    stage1_epochs: int
    stage1_items_per_epoch: int
    stage1_batch_size: int
    stage1_learning_rate: float
    stage1_gen_weight: float
    stage1_itc_weight: float
    stage1_projector_items: int
    stage1_heldout_items: int
    stage2_epochs: int
    stage2_sessions_per_epoch: int
    stage2_batch_size: int
    stage2_learning_rate: float
    stage2_head_epochs: int
    stage2_head_batch_size: int
    stage2_head_learning_rate: float
    stage2_heldout_pairs: int
    stage2_gen_t_weight: float
    stage2_next_weight: float
    stage2_amie_weight: float
    stage2_hmie_weight: float
    stage2_gen_k_weight: float
    lora_layers: int
    session_items: int
    title_words: int
    answer_words: int
    temperature: float
    amie_temperature: float
    amie_proj_dim: int
    hmie_shared_dim: int
    hmie_specific_dim: int
    hmie_hidden_size: int
    hmie_recon_weight: float
    hmie_tokens: int
    grad_clip: float
    checkpoint_steps: int

    def __post_init__(self):
        for key, (name, kind) in _KEYS.items():
            value = getattr(self, name)
            if kind == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"{key} must be True or False, got {value!r}.")
            elif kind == "path":
                if value is not None and not isinstance(value, str):
                    raise ConfigError(f"{key} must be a folder path or None, got {value!r}.")
            elif kind in ("count", "count0"):
                low = 1 if kind == "count" else 0
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}.")
            else:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ConfigError(f"{key} must be a number, got {value!r}.")
                if kind == "weight" and value < 0:
                    raise ConfigError(f"{key} must be >= 0 (a loss weight; 0 switches the term off), got {value!r}.")
                if kind == "posfloat" and value <= 0:
                    raise ConfigError(f"{key} must be > 0, got {value!r}.")
                setattr(self, name, float(value))

    # effective weights after the ablation switches
    @property
    def stage1_gen(self):
        return self.stage1_gen_weight if self.generation_task else 0.0

    @property
    def gen_t(self):
        return self.stage2_gen_t_weight if self.generation_task else 0.0

    @property
    def gen_k(self):
        return self.stage2_gen_k_weight if self.generation_task else 0.0

    @property
    def amie_weight(self):
        return self.stage2_amie_weight if self.amie else 0.0

    @property
    def hmie_weight(self):
        return self.stage2_hmie_weight if self.hmie else 0.0

    @property
    def run_stage2(self):
        return self.distillation and self.stage2_epochs > 0

    def stage1_key(self):
        """Settings stage 1 depends on (its cache key part)."""
        keep = ("generation_task", "answer_words", "title_words", "temperature", "grad_clip", "lora_layers")
        return {k: v for k, v in asdict(self).items() if k.startswith("stage1_") or k in keep}

    def projector_key(self):
        """Settings Stage 1a (the projector alignment) depends on."""
        keep = ("stage1_projector_items", "stage1_batch_size", "stage1_learning_rate", "stage1_gen_weight",
                "stage1_itc_weight", "answer_words", "temperature", "grad_clip")
        # the frozen image encoder stays in eval mode while the projector trains; projectors (and the item
        # states below them) made when it followed the stage into train mode, batch norms drifting, are not reused
        return dict({k: getattr(self, k) for k in keep}, image_encoder="eval")

    def states_key(self):
        """Settings the cached item states depend on (the split layer and the answer spans)."""
        return {k: getattr(self, k) for k in ("lora_layers", "title_words", "answer_words")}

    def head_key(self):
        """Settings the transition head's fit on the untrained ``T`` depends on (and its held-out figures)."""
        keep = ("stage2_head_epochs", "stage2_head_batch_size", "stage2_head_learning_rate", "stage2_heldout_pairs",
                "temperature", "session_items")
        return dict({k: getattr(self, k) for k in keep}, **STAGE2_LAYOUT)

    def stage2_key(self):
        """Settings stage 2 depends on, beyond stage 1's."""
        skip = ("cache_dir", "checkpoint_steps")
        return dict({k: v for k, v in asdict(self).items() if not k.startswith("stage1_") and k not in skip},
                    **STAGE2_LAYOUT)

    @classmethod
    def from_config(cls, config):
        """Read the stage keys of a RecBole ``Config`` (or a plain dict: the YAML's defaults for the
        keys it lacks)."""
        values = read_keys(config, list(_KEYS), "model/TPAD.yaml")
        return cls(**{_KEYS[key][0]: value for key, value in values.items()})


STAGE_FIELDS = tuple(f.name for f in fields(StageConfig))
