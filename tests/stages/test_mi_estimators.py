"""Known-answer tests of the MI estimators (InfoNCE, AMIE, CLUB, HMIE)."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_tpad.stages.mi_estimators import AMIE, CLUB, HMIE, SharedSpecificSplit, info_nce


def test_info_nce_exact_value_two_orthonormal_pairs():
    x = torch.eye(2)
    # logits [[1, 0], [0, 1]] at temperature 1: CE = log(1 + e^-1) in both directions
    assert info_nce(x, x, temperature=1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_info_nce_falls_as_pairs_align():
    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(64, 32, generator=g)
    noise = torch.randn(64, 32, generator=g)
    losses = [info_nce(anchor, anchor + s * noise, temperature=0.1).item() for s in (10.0, 1.0, 0.3, 0.0)]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    # unrelated pairs sit near log(B); identical pairs far below
    assert losses[0] == pytest.approx(math.log(64), rel=0.15)
    assert losses[-1] < 0.05


def test_info_nce_extra_negatives_raise_the_loss_and_bad_input_fails():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    more = info_nce(a, b, negatives=torch.randn(32, 16, generator=g), symmetric=False)
    assert more > info_nce(a, b, symmetric=False)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, b[:4])
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, b, temperature=0.0)


def test_amie_critic_learns_to_separate_and_teacher_gets_no_gradient():
    torch.manual_seed(0)
    k = torch.randn(128, 24)
    t = torch.tanh(k @ torch.randn(24, 40)) + 0.05 * torch.randn(128, 40)  # nonlinear view of k
    t.requires_grad_(True)
    amie = AMIE(24, 40, proj_dim=32, temperature=0.1)
    before = amie.mi_lower_bound(k, t)
    opt = torch.optim.Adam(amie.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss = amie(k, t)
        loss.backward()
        opt.step()
    after = amie.mi_lower_bound(k, t)
    assert t.grad is None  # the Transfer-MLLM teacher is stop-gradient
    assert after > before + 1.0
    assert after > 0.7 * math.log(128)  # close to the log(B) ceiling of the bound
    shuffled = amie.mi_lower_bound(k, t[torch.randperm(128)])
    assert shuffled < 0.5


def _fit_club(x, y, steps=200):
    club = CLUB(x.size(1), y.size(1), hidden_dim=64)
    opt = torch.optim.Adam(club.parameters(), lr=5e-3)
    for _ in range(steps):
        opt.zero_grad()
        club.learning_loss(x, y).backward()
        opt.step()
    return club


def test_club_higher_for_dependent_than_independent_pairs():
    torch.manual_seed(0)
    n, sigma = 2048, 0.5
    true_mi = 4 * 0.5 * math.log(1 + 1 / sigma**2)  # Gaussian channel, 4 independent dims

    def sample(dependent):
        x = torch.randn(n, 4)
        return x, (x + sigma * torch.randn(n, 4)) if dependent else torch.randn(n, 4)

    # q is fitted on one sample and the bound evaluated on a fresh one (a memorizing q inflates it)
    dep = _fit_club(*sample(True))(*sample(True)).item()
    ind = _fit_club(*sample(False))(*sample(False)).item()
    assert dep > ind + 1.0
    assert abs(ind) < 0.3
    assert dep > 0.7 * true_mi  # an upper bound once q fits well


def test_club_gradients_reach_features_not_q_and_vice_versa():
    club = CLUB(3, 2)
    x = torch.randn(16, 3, requires_grad=True)
    y = torch.randn(16, 2, requires_grad=True)
    club(x, y).backward()
    assert x.grad is not None and y.grad is not None
    assert all(p.grad is None for p in club.parameters())
    x.grad = None
    club.learning_loss(x, y).backward()
    assert x.grad is None
    assert all(p.grad is not None for p in club.parameters())


def test_split_reconstruction_is_zero_for_an_exact_decoder():
    split = SharedSpecificSplit(4, 2, 2)
    with torch.no_grad():
        split.shared.weight.copy_(torch.eye(4)[:2]), split.shared.bias.zero_()
        split.specific.weight.copy_(torch.eye(4)[2:]), split.specific.bias.zero_()
        split.decoder.weight.copy_(torch.eye(4)), split.decoder.bias.zero_()
    x = torch.randn(5, 4)
    assert split.reconstruction_loss(x, *split(x)).item() == pytest.approx(0.0, abs=1e-10)


def test_hmie_both_levels_train_and_reduce_shared_specific_dependence():
    torch.manual_seed(0)
    hmie = HMIE(16, shared_dim=4, specific_dim=4, hidden_dim=32)
    feats = torch.randn(256, 16)
    views = [torch.randn(64, 16), torch.randn(64, 16)]
    loss, parts = hmie(views, feats)
    assert parts["item_shared"].shape == (256, 4)
    assert [v.shape for v in parts["view_shared"]] == [(64, 4), (64, 4)]
    loss.backward()
    assert all(p.grad is not None for p in hmie.parameters())
    torch.manual_seed(0)
    # training the split heads and q on the same objective makes shared and specific independent;
    # judged by a CLUB fitted afresh on the parts of held-out features
    hmie = HMIE(8, shared_dim=3, specific_dim=3, hidden_dim=32)
    with torch.no_grad():  # start with specific == shared: maximal dependence
        hmie.split["item"].specific.weight.copy_(hmie.split["item"].shared.weight)
        hmie.split["item"].specific.bias.copy_(hmie.split["item"].shared.bias)

    def dependence():
        with torch.no_grad():
            rows = F.layer_norm(torch.randn(4096, 8), (8,))  # HMIE normalizes its inputs the same way
            train, held_out = hmie.split["item"](rows[:2048]), hmie.split["item"](rows[2048:])
        return _fit_club(*train)(*held_out).item()

    before = dependence()
    opt = torch.optim.Adam(hmie.parameters(), lr=3e-3)
    for _ in range(600):
        opt.zero_grad()
        loss, parts = hmie([], torch.randn(256, 8))
        loss.backward()
        opt.step()
    after = dependence()
    assert after < before - 1.0
    assert after < 0.5
    assert parts["hmie_recon"] < 0.3  # 6 dims kept of 7 left after the layer norm


def test_club_estimate_is_never_negative_so_features_cannot_inflate_it_away():
    torch.manual_seed(0)
    club = CLUB(4, 4, hidden_dim=16)
    x = torch.randn(64, 4)
    y = (-10 * club.mu(x)).detach().requires_grad_(True)  # anti-correlated with q's mean: raw estimate < 0
    estimate = club(x, y)
    assert float(estimate) == 0.0
    estimate.backward()
    assert y.grad is None or float(y.grad.abs().sum()) == 0.0  # no push to widen y further
