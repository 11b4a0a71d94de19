"""The backbone API shared by every kind: prepare inputs, forward with views and loss, LoRA adapters.

Subclasses (``causal.py``: text LLM + image encoder + projector; ``native.py``: native MLLMs)
only say how one prompt (+ image) becomes token ids and how the model runs on a batch. Padding,
masks, the summary position, pooled views, answer-only labels and adapters live here; the batched,
length-bucketed item encoding loop behind ``encode_items`` in ``encode.py``. See ``README-api.md``
for the contract.
"""

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from recbole_tpad.errors import ConfigError

IGNORE_INDEX = -100


@dataclass
class BackboneOutput:
    hidden: torch.Tensor          # [B, T, H] last-layer states
    summary: torch.Tensor         # [B, H] state at the summary position (fused view)
    text_view: torch.Tensor       # [B, H] mean over text tokens
    image_view: torch.Tensor      # [B, H] mean over visual tokens, zeros without image
    image_mask: torch.Tensor      # [B] bool
    loss: torch.Tensor | None = None           # answer-token cross-entropy
    answer_logits: torch.Tensor | None = None  # [N_answer_tokens, V]


PEFT_PREFIX = "base_model.model."  # key prefix of a PeftModel's saved weights

class Backbone(nn.Module):
    """A frozen LLM/MLLM with named LoRA adapters; subclasses fill in ``_encode_one`` and ``_run``."""

    kind = ""

    def __init__(self, settings, model, tokenizer, source):
        super().__init__()
        self.settings = settings
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        if settings.dtype == "bf16":
            # Frozen base weights in bf16: half the memory and no per-call weight casts under
            # autocast (~1.3x faster on CPU). Trainable parts (LoRA, projector) stay float32.
            self.model.to(torch.bfloat16)
        self.model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._adapter_configs = {}
        self.active_adapter = None
        self._suffix_ids = tokenizer(settings.summary_suffix, add_special_tokens=False)["input_ids"]
        self._skip_ids = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())

    # ----------------------------------------------------------------------------- subclass hooks
    @property
    def hidden_size(self):
        raise NotImplementedError

    @property
    def projector(self):
        return None

    def _encode_one(self, prompt_ids, image):
        """-> (ids: list[int], visual: list[bool], extras: dict of per-sample tensors)."""
        raise NotImplementedError

    def _collate_extras(self, extras, has_image):
        raise NotImplementedError

    def _run(self, inputs):
        """-> last-layer hidden states [B, T, H]."""
        raise NotImplementedError

    def shrink_image(self, image):
        """Cheap early downsizing of a loaded image (run in the loader threads); identity by default."""
        return image

    def _lm_head(self):
        return self.model.get_output_embeddings()

    def _lora_excluded(self):
        """Modules the LoRA targets must not hit (a peft ``exclude_modules`` regex), or None: the LLM's only."""
        return None

    def describe(self):
        """What the features came from, for the cache manifest."""
        return {"kind": self.kind, "source": str(self.source), "hidden_size": self.hidden_size}

    # ----------------------------------------------------------------------------- inputs
    @property
    def device(self):
        return next(self.model.parameters()).device

    def prepare(self, prompts, images=None, answers=None, summary=True, spans=None):
        """Tokenize prompts (+ images, + answers with answer-only labels) into a right-padded batch.

        ``spans`` (optional): ``{name: [(start, end) character range or None per prompt]}``; each
        becomes a ``[B, T]`` bool mask ``name`` of the prompt tokens that overlap the range.
        """
        images = images if images is not None else [None] * len(prompts)
        if len(images) != len(prompts) or (answers is not None and len(answers) != len(prompts)):
            raise ValueError("prepare(): prompts, images and answers must have the same length.")
        tok = self.tokenizer
        encoded = tok(list(prompts), add_special_tokens=False, return_offsets_mapping=spans is not None)
        prompt_ids = encoded["input_ids"]
        answer_ids = None
        if answers is not None:
            answer_ids = tok([a if a[:1].isspace() else " " + a for a in answers], add_special_tokens=False)["input_ids"]
        rows, extras = [], []
        for i, ids in enumerate(prompt_ids):
            ids = ids[: self.settings.max_length] + (self._suffix_ids if summary else [])
            seq, visual, extra = self._encode_one(ids, images[i])
            text = [not v and t not in self._skip_ids for t, v in zip(seq, visual)]
            summary_index = len(seq) - 1
            labels = [IGNORE_INDEX] * len(seq)
            if answer_ids is not None:
                answer = answer_ids[i][: self.settings.max_length] + [tok.eos_token_id]
                seq, labels = seq + answer, labels + answer
                visual, text = visual + [False] * len(answer), text + [False] * len(answer)
            marks = {}
            for name, ranges in (spans or {}).items():
                # prompt ids are the tail of the encoded sequence (visual tokens come first)
                offset, span = summary_index + 1 - len(ids), ranges[i]
                marks[name] = [False] * len(seq)
                for j, (a, b) in enumerate(encoded["offset_mapping"][i][: self.settings.max_length]):
                    marks[name][offset + j] = span is not None and a < span[1] and b > span[0]
            rows.append((seq, visual, text, labels, summary_index, marks))
            extras.append(extra)
        width = max(len(r[0]) for r in rows)
        pad = tok.pad_token_id

        def padded(index, fill, dtype):
            return torch.tensor([r[index] + [fill] * (width - len(r[index])) for r in rows], dtype=dtype)

        has_image = torch.tensor([any(r[1]) for r in rows], dtype=torch.bool)
        batch = {
            "input_ids": padded(0, pad, torch.long),
            "attention_mask": torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows]),
            "visual_mask": padded(1, False, torch.bool),
            "text_mask": padded(2, False, torch.bool),
            "summary_index": torch.tensor([r[4] for r in rows], dtype=torch.long),
            "has_image": has_image,
        }
        if answers is not None:
            batch["labels"] = padded(3, IGNORE_INDEX, torch.long)
        for name in spans or {}:
            batch[name] = torch.tensor([r[5][name] + [False] * (width - len(r[0])) for r in rows], dtype=torch.bool)
        batch.update(self._collate_extras(extras, has_image))
        device = self.device
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    # ----------------------------------------------------------------------------- forward
    def autocast(self):
        if self.settings.dtype == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, inputs):
        with self.autocast():
            hidden = self._run(inputs)  # [B, T, H]
            loss = answer_logits = None
            if "labels" in inputs:
                labels = inputs["labels"][:, 1:]
                keep = labels != IGNORE_INDEX
                answer_logits = self._lm_head()(hidden[:, :-1][keep])  # [N, V]
                loss = F.cross_entropy(answer_logits.float(), labels[keep])
        hidden = hidden.float()
        rows = torch.arange(hidden.size(0), device=hidden.device)
        summary = hidden[rows, inputs["summary_index"]]
        return BackboneOutput(
            hidden=hidden,
            summary=summary,
            text_view=masked_mean(hidden, inputs["text_mask"]),
            image_view=masked_mean(hidden, inputs["visual_mask"]),
            image_mask=inputs["has_image"],
            loss=loss,
            answer_logits=answer_logits,
        )

    # ----------------------------------------------------------------------------- split at a layer
    # LoRA sits in the top layers only (``stage_lora_layers``), so the states entering them never
    # change while the adapters train: the stages compute them once per item (``lower_states``)
    # and run only the top layers on them (``upper``).
    def _decoder(self):
        """The LLM's decoder stack: the module holding ``layers`` (one per LLM layer) and ``norm``."""
        count = self.model.config.get_text_config().num_hidden_layers
        for module in self.model.modules():
            layers = getattr(module, "layers", None)
            if isinstance(layers, nn.ModuleList) and len(layers) == count and hasattr(module, "norm"):
                return module
        raise ConfigError(f"{self.kind} backbone: no decoder stack with {count} layers and a final norm found.")

    @property
    def num_layers(self):
        return len(self._decoder().layers)

    @contextlib.contextmanager
    def _only_layers(self, start, stop, final_norm):
        decoder = self._decoder()
        layers, norm = decoder.layers, decoder.norm
        decoder.layers = nn.ModuleList(list(layers)[start:stop])
        if not final_norm:
            decoder.norm = nn.Identity()
        try:
            yield decoder
        finally:
            decoder.layers, decoder.norm = layers, norm

    @torch.no_grad()
    def lower_states(self, inputs, top_layers):
        """States entering the top ``top_layers`` layers, ``[B, T, H]``, and the position ids used.

        Run under the frozen base weights: adapters live in the top layers only.
        """
        captured = {}

        def keep_positions(module, args, kwargs):
            captured["position_ids"] = kwargs.get("position_ids")

        previous = self.active_adapter
        self.set_adapter(None)
        split = self.num_layers - top_layers
        try:
            with self._only_layers(0, split, final_norm=False) as decoder:
                hook = decoder.register_forward_pre_hook(keep_positions, with_kwargs=True)
                try:
                    with self.autocast():
                        states = self._run(inputs)
                finally:
                    hook.remove()
        finally:
            self.set_adapter(previous)
        positions = captured.get("position_ids")
        if positions is None:  # the decoder's default: 0..T-1 on every row
            positions = torch.arange(states.size(1), device=states.device).unsqueeze(0).expand(states.size(0), -1)
        return states, positions.expand(*positions.shape[:-2], states.size(0), states.size(1))

    def upper(self, states, attention_mask, position_ids, top_layers):
        """Last-layer states ``[B, T, H]`` of the top ``top_layers`` layers (active adapter) on ``states``."""
        with self._only_layers(self.num_layers - top_layers, None, final_norm=True) as decoder:
            with self.autocast():
                out = decoder(inputs_embeds=states, attention_mask=attention_mask, position_ids=position_ids)
        return out.last_hidden_state

    def token_loss(self, hidden, labels):
        """Cross-entropy of next-token ``labels`` ``[B, T]`` (``IGNORE_INDEX`` elsewhere) from ``hidden``."""
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        with self.autocast():
            logits = self._lm_head()(hidden[:, :-1][keep])  # [N, V]
        return F.cross_entropy(logits.float(), targets[keep])

    # ----------------------------------------------------------------------------- adapters
    @property
    def adapter_names(self):
        return list(self._adapter_configs)

    def lora_config(self, top_layers=0):
        """The peft ``LoraConfig`` of a new adapter: the ``feature_lora_*`` settings, on the LLM's
        ``top_layers`` last layers (peft's ``layers_to_transform``; 0: every layer).

        With LoRA only near the top, backward stops there: nothing below needs a gradient (unless a
        trainable projector feeds the input).
        """
        from peft import LoraConfig

        count = self.num_layers
        top = list(range(count - top_layers, count)) if 0 < top_layers < count else None
        return LoraConfig(
            r=self.settings.lora_r,
            lora_alpha=self.settings.lora_alpha,
            lora_dropout=self.settings.lora_dropout,
            target_modules=list(self.settings.lora_target_modules),
            exclude_modules=self._lora_excluded(),
            layers_to_transform=top,
            layers_pattern="layers" if top else None,
            bias="none",
        )

    def add_adapter(self, name, top_layers=0, config=None):
        """Attach a fresh LoRA adapter ``name`` (trainable) to the LLM; does not activate it.

        ``config``: a peft ``LoraConfig`` (one read back by :meth:`load_adapter`); by default
        :meth:`lora_config` of ``top_layers``.
        """
        if name in self._adapter_configs:
            raise ValueError(f"Adapter '{name}' already exists; adapters: {self.adapter_names}.")
        config = config or self.lora_config(top_layers)
        with warnings.catch_warnings():  # peft warns that a model with adapters gets one more: intended
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            self.model.add_adapter(config, adapter_name=name)
        self._adapter_configs[name] = config
        for parameter in self.adapter_parameters(name):
            parameter.data = parameter.data.float()  # trainable weights in fp32 even on a bf16 base
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in self.model.modules():
            if isinstance(module, BaseTunerLayer):
                # peft would copy every LoRA input to the adapters' float32; under autocast the LoRA
                # matmuls run in bf16 anyway (4.6x faster item encoding, docs/stages.md)
                module.cast_input_dtype_enabled = False
        self.set_adapter(self.active_adapter)
        return config

    def set_adapter(self, name):
        """Activate adapter ``name``; ``None`` runs the base weights."""
        if name is not None and name not in self._adapter_configs:
            raise ValueError(f"Unknown adapter '{name}'; adapters: {self.adapter_names} (add_adapter first).")
        self.active_adapter = name
        if not self._adapter_configs:
            return
        if name is None:
            self.model.disable_adapters()
        else:
            self.model.enable_adapters()
            self.model.set_adapter(name)
        for other in self._adapter_configs:  # peft freezes inactive (or disabled) adapters; keep all trainable
            for parameter in self.adapter_parameters(other):
                parameter.requires_grad_(True)

    def adapter_named_parameters(self, name):
        """``(name, parameter)`` of LoRA adapter ``name``'s weights, named as in ``model.named_parameters()``:
        the ``lora_A[name]`` / ``lora_B[name]`` modules of every peft LoRA layer."""
        from peft.tuners.lora import LoraLayer

        named = []
        for prefix, module in self.model.named_modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                for part in ("lora_A", "lora_B"):
                    named += [(f"{prefix}.{part}.{name}.{n}", p) for n, p in getattr(module, part)[name].named_parameters()]
        return named

    def adapter_parameters(self, name):
        return [p for _, p in self.adapter_named_parameters(name)]

    def adapter_state_dict(self, name):
        return {n: p.detach().cpu() for n, p in self.adapter_named_parameters(name)}

    def save_adapter(self, name, folder):
        """Write adapter ``name`` as a standard peft folder (``adapter_config.json`` +
        ``adapter_model.safetensors``), loadable with ``PeftModel.from_pretrained`` on the base."""
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.peft_config[name].save_pretrained(str(folder))
        state = get_peft_model_state_dict(self.model, adapter_name=name)  # keys relative to the LLM
        save_file({PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()},
                  str(folder / "adapter_model.safetensors"))

    def load_adapter(self, name, folder):
        """Attach (if needed) and fill adapter ``name`` from a peft folder written by ``save_adapter``."""
        from peft import LoraConfig
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = Path(folder)
        if name not in self.adapter_names:
            self.add_adapter(name, config=LoraConfig.from_pretrained(str(folder)))
        state = {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v
                 for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
        result = set_peft_model_state_dict(self.model, state, adapter_name=name)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        missing = [k for k in getattr(result, "missing_keys", []) or [] if f".{name}." in k and "lora_" in k]
        if unexpected or missing:
            raise ConfigError(f"{folder} does not fit this backbone's adapter '{name}': "
                              f"unexpected {unexpected[:3]}, missing {missing[:3]}")
        for parameter in self.adapter_parameters(name):
            parameter.requires_grad_(True)

    def save_projector(self, path):
        if self.projector is not None:
            torch.save(self.projector.state_dict(), path)

    def load_projector(self, path):
        if self.projector is not None:
            self.projector.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    # ----------------------------------------------------------------------------- item encoding
    def encode_items(self, items, batch_size=None, adapter=None, progress=True, checkpoint=None):
        from recbole_tpad.features.encode import encode_items

        return encode_items(self, items, batch_size=batch_size, adapter=adapter, progress=progress, checkpoint=checkpoint)


def masked_mean(hidden, mask):
    """Mean of ``hidden`` [B,T,H] over positions where ``mask`` [B,T] is True; zeros if none."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
