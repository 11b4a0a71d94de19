"""Stage 2's transition head: starts as the content similarity, learns a planted transition, fixed targets."""

import numpy as np
import torch

from recbole_tpad.stages.transition_head import TransitionHead
from recbole_tpad.stages.transition_distillation import ranks_of


def _features(n=200, dim=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, dim, generator=generator) + 5.0  # a large shared direction, as LLM states have
    features[0] = 0.0  # padding
    return features


def test_an_unfitted_head_ranks_by_centred_cosine():
    features = _features()
    head = TransitionHead(features.size(1))
    head.set_centre(features)
    states = features[1:9] + 0.01
    assert torch.allclose(head.scores(states, features), head.scores(states, features, mapped=False), atol=1e-5)
    assert (head.scores(states, features).argmax(1) == torch.arange(1, 9)).all()  # itself first: content similarity
    assert torch.isinf(head.scores(states, features)[:, 0]).all()


def test_fit_learns_a_planted_transition_the_identity_cannot_rank():
    torch.manual_seed(0)
    features = _features()
    follows = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(199) + 1])  # item i -> follows[i]
    last = torch.arange(1, 200).repeat(20)
    head = TransitionHead(features.size(1))
    head.set_centre(features)
    before = ranks_of(head.scores(features[1:], features), follows[1:]).float()
    head.fit(features, last, follows[last], epochs=30, batch_size=256, learning_rate=0.01, temperature=0.1, seed=0)
    with torch.no_grad():
        after = ranks_of(head.scores(features[1:], features), follows[1:]).float()
    assert float((before <= 10).float().mean()) < 0.2
    assert float((after <= 10).float().mean()) > 0.6, after[:20]  # a linear map: not every permutation


def test_stage_two_ranks_against_a_fixed_bank_and_reports_the_heads_figures(tiny_dataset, tmp_path):
    from recbole_tpad.stages.session_prompts import training_sessions
    from recbole_tpad.stages.transition_distillation import TransitionDistillation, heldout_pairs
    from tests.stages.test_stages import _stages_on_states

    backbone, items, states, settings, train = _stages_on_states(tiny_dataset, tmp_path)
    sessions = training_sessions(train)
    stage = TransitionDistillation(backbone, states, sessions, settings, heldout_pairs(sessions, 8, 0))
    optimizer = torch.optim.AdamW(stage.parameters_to_train(), lr=1e-2)
    rows = stage.train_rows[:8]
    for step in range(3):
        optimizer.zero_grad()
        loss, parts = stage.training_loss(rows, step)
        if step == 0:
            bank = stage.bank.clone()
            fitted = stage.head.session.weight.detach().clone()
        loss.backward()
        optimizer.step()
    assert not torch.equal(fitted, torch.eye(fitted.size(0)))  # the head was fitted before the first step
    assert torch.equal(stage.bank, bank)  # the target space never moves
    state = stage.trainable_state()
    assert any(name.startswith("head.") for name in state)
    figures = stage.evaluate()
    for name in ("untrained", "head", "trained", "popularity"):
        assert np.isfinite(figures[f"heldout_mrr_{name}"]), figures
