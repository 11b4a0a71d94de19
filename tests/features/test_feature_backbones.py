"""Every backbone kind, as a tiny random build, end to end: views, masks, loss, LoRA adapters."""

import pytest
import torch
from PIL import Image

from recbole_tpad.features.build import build_backbone
from recbole_tpad.features.config import FeaturesConfig

KINDS = ["tiny-llama", "tiny-qwen2-vl", "tiny-llava", "tiny-smolvlm", "tiny-idefics3"]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("feature_cache")


@pytest.fixture(scope="module", params=KINDS)
def backbone(request, cache_root):
    return build_backbone(FeaturesConfig.from_config({"feature_backbone": request.param, "feature_cache_dir": str(cache_root), "feature_dtype": "fp32"}))


IMAGES = [Image.new("RGB", (60, 90), (200, 10, 10)), None, Image.new("RGB", (80, 40), (0, 0, 200))]
PROMPTS = ["Item: Red Shirt. Brand: Acme.", "Item: Plain Hat.", "Item: Blue Scarf. Category: Women, Scarves."]


def test_views_shapes_and_image_mask(backbone):
    with torch.inference_mode():
        inputs = backbone.prepare(PROMPTS, IMAGES)
        out = backbone(inputs)
    hidden = backbone.hidden_size
    for view in (out.summary, out.text_view, out.image_view):
        assert view.shape == (3, hidden) and torch.isfinite(view).all()
    assert out.image_mask.tolist() == [True, False, True]
    assert inputs["visual_mask"].sum(1).tolist()[1] == 0 and inputs["visual_mask"].sum(1)[0] > 0
    assert out.image_view[1].abs().sum() == 0 and out.image_view[0].abs().sum() > 0
    # the summary position is the last prompt token, after the suffix
    last = inputs["attention_mask"].sum(1) - 1
    assert torch.equal(inputs["summary_index"], last)


def test_batching_does_not_change_features(backbone):
    with torch.inference_mode():
        together = backbone(backbone.prepare(PROMPTS, IMAGES)).summary
        alone = backbone(backbone.prepare(PROMPTS[1:2], IMAGES[1:2])).summary
    torch.testing.assert_close(together[1], alone[0], atol=1e-4, rtol=1e-4)


def test_answer_only_loss_trains_adapters_and_projector(backbone):
    if "K" not in backbone.adapter_names:
        backbone.add_adapter("K")
    backbone.set_adapter("K")
    inputs = backbone.prepare(PROMPTS[:2], IMAGES[:2], answers=["Women, Tops", "Hats"])
    labelled = inputs["labels"] != -100
    assert labelled.sum() > 0 and not (labelled & inputs["text_mask"]).any()
    out = backbone(inputs)
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in backbone.adapter_parameters("K")]
    assert grads and all(g is not None for g in grads)
    assert not any(p.requires_grad for n, p in backbone.model.named_parameters() if "lora_" not in n)
    if backbone.projector is not None:
        assert all(p.grad is not None for p in backbone.projector.parameters())
    backbone.zero_grad(set_to_none=True)
    backbone.set_adapter(None)


def test_adapter_switch_changes_features(backbone):
    for name in ("K", "T"):
        if name not in backbone.adapter_names:
            backbone.add_adapter(name)
    with torch.no_grad():
        for p in backbone.adapter_parameters("T"):
            p.add_(0.2 * torch.randn_like(p))
    inputs = backbone.prepare(PROMPTS, IMAGES)
    with torch.inference_mode():
        backbone.set_adapter(None)
        base = backbone(inputs).summary
        backbone.set_adapter("T")
        tuned = backbone(inputs).summary
        backbone.set_adapter(None)
        again = backbone(inputs).summary
    assert (base - tuned).abs().max() > 1e-3
    torch.testing.assert_close(base, again)
    with pytest.raises(ValueError, match="Unknown adapter"):
        backbone.set_adapter("nope")


def test_adapter_save_load_round_trip(backbone, tmp_path):
    if "T" not in backbone.adapter_names:
        backbone.add_adapter("T")
    backbone.save_adapter("T", tmp_path)
    saved = backbone.adapter_state_dict("T")
    with torch.no_grad():
        for p in backbone.adapter_parameters("T"):
            p.zero_()
    backbone.load_adapter("T", tmp_path)
    for key, value in backbone.adapter_state_dict("T").items():
        torch.testing.assert_close(value, saved[key])


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-qwen2-vl"])
def test_bf16_base_trains_fp32_adapters(kind, cache_root):
    backbone = build_backbone(FeaturesConfig.from_config({"feature_backbone": kind, "feature_cache_dir": str(cache_root), "feature_dtype": "bf16"}))
    assert next(backbone.model.parameters()).dtype == torch.bfloat16
    backbone.add_adapter("K")
    backbone.set_adapter("K")
    out = backbone(backbone.prepare(PROMPTS[:2], IMAGES[:2], answers=["Tops", "Hats"]))
    out.loss.backward()
    params = backbone.adapter_parameters("K")
    assert all(p.dtype == torch.float32 and p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert out.summary.dtype == torch.float32 and torch.isfinite(out.summary).all()


def test_frozen_image_encoder_stays_in_eval_mode_while_a_stage_trains(cache_root):
    """A stage that trains (the projector alignment) holds the backbone: the frozen image encoder
    keeps its batch norms' running statistics, so item states computed afterwards are those a fresh
    backbone computes (the new items' encoder)."""
    backbone = build_backbone(FeaturesConfig.from_config(
        {"feature_backbone": "tiny-llama", "feature_cache_dir": str(cache_root), "feature_dtype": "fp32"}))
    backbone.image_encoder.net.append(torch.nn.BatchNorm2d(backbone.image_encoder.out_channels))
    backbone.image_encoder.eval()
    norm = backbone.image_encoder.net[-1]
    before = norm.running_mean.clone()
    stage = torch.nn.Module()
    stage.backbone = backbone
    stage.train()
    assert backbone.training and backbone.model.training  # LoRA dropout follows the stage
    assert not any(module.training for module in backbone.image_encoder.modules())
    backbone(backbone.prepare(PROMPTS, IMAGES))
    assert torch.equal(norm.running_mean, before)
