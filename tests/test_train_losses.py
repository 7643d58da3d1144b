"""The training math, checked by hand (rlaif/train/losses.py)."""
import math

import pytest
import torch

from rlaif.train import losses as L


def _zeros(n=3):
    return torch.zeros(n), torch.zeros(n)


def test_dpo_at_step0_is_ln2_with_zero_margins():
    c, r = torch.tensor([-5.0, -7.0, -1.0]), torch.tensor([-6.0, -2.0, -9.0])
    per = L.dpo_losses(c, r, c.clone(), r.clone(), beta=0.1)        # policy == reference
    assert torch.allclose(per, torch.full((3,), math.log(2)))
    m = L.dpo_rewards(c, r, c, r, 0.1)
    assert torch.all(m["rewards/margins"] == 0) and torch.all(m["rewards/accuracies"] == 0)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_at_step0(beta):
    c, r = torch.tensor([-5.0, -7.0]), torch.tensor([-6.0, -2.0])
    per = L.dpo_losses(c, r, c, r, beta=beta, loss_type="ipo", chosen_lengths=torch.tensor([3.0, 4.0]),
                       rejected_lengths=torch.tensor([2.0, 9.0]))
    assert torch.allclose(per, torch.full((2,), (1 / (2 * beta)) ** 2))


def test_dpo_variants_by_hand():
    c, r, rc, rr = torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.0])
    beta, delta = 0.5, 1.0 + 1.0                                        # (−3+4) − (−5+4)
    sig = lambda x: 1 / (1 + math.exp(-x))
    assert L.dpo_losses(c, r, rc, rr, beta=beta).item() == pytest.approx(-math.log(sig(beta * delta)), rel=1e-6)
    assert L.dpo_losses(c, r, rc, rr, beta=beta, loss_type="hinge").item() == pytest.approx(max(0, 1 - beta * delta))
    eps = 0.2
    cdpo = -(1 - eps) * math.log(sig(beta * delta)) - eps * math.log(sig(-beta * delta))
    assert L.dpo_losses(c, r, rc, rr, beta=beta, label_smoothing=eps).item() == pytest.approx(cdpo, rel=1e-6)
    robust = (-(1 - eps) * math.log(sig(beta * delta)) + eps * math.log(sig(-beta * delta))) / (1 - 2 * eps)
    assert L.dpo_losses(c, r, rc, rr, beta=beta, loss_type="robust", label_smoothing=eps).item() == pytest.approx(robust, rel=1e-6)
    # soft label p = 1 is plain DPO; p = 0.5 pushes nowhere (gradient 0 at Δ = 0)
    assert L.dpo_losses(c, r, rc, rr, beta=beta, p_chosen=torch.tensor([1.0])).item() == pytest.approx(-math.log(sig(beta * delta)), rel=1e-6)
    x = torch.zeros(1, requires_grad=True)
    L.dpo_losses(x, torch.zeros(1), torch.zeros(1), torch.zeros(1), p_chosen=torch.tensor([0.5])).sum().backward()
    assert x.grad.abs().item() < 1e-7
    with pytest.raises(ValueError):
        L.dpo_losses(c, r, rc, rr, loss_type="robust", label_smoothing=0.5)
    with pytest.raises(ValueError):
        L.dpo_losses(c, r, rc, rr, loss_type="ipo")
    with pytest.raises(ValueError):
        L.dpo_losses(c, r, rc, rr, loss_type="nope")


def test_logp_gathering_masks_and_shift():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    ids = torch.randint(0, 7, (2, 4))
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 0]])
    per = L.shifted_token_logps(logits, ids, mask)
    manual = logits.log_softmax(-1)[0, 1, ids[0, 2]] + logits.log_softmax(-1)[0, 2, ids[0, 3]]
    assert torch.allclose(L.sequence_logps(per, mask[:, 1:])[0], manual)
    assert per[1, 2] == 0                                              # masked position contributes nothing
    assert torch.allclose(L.sequence_logps(per, mask[:, 1:], average=True)[0], manual / 2)


def test_group_advantages_sum_to_zero_and_skip_none():
    r = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0, math.nan, 0.0, 1.0, 1.0])
    for scaling in ("group", "batch", "none"):
        adv, zero = L.group_advantages(r, 4, scaling)
        g = adv.view(3, 4)
        for row in g:
            kept = row[~torch.isnan(row)]
            assert abs(kept.sum().item()) < 1e-5
        assert torch.isnan(adv[8]) and zero.tolist() == [False, True, False]
    adv, _ = L.group_advantages(r, 4, "none")
    assert adv[:4].tolist() == pytest.approx([-2, -1, 0, 3])
    adv, _ = L.group_advantages(r, 4, "group")
    std = torch.tensor([1.0, 2.0, 3.0, 6.0]).std().item()
    assert adv[0].item() == pytest.approx(-2 / (std + 1e-4), rel=1e-5)
    assert torch.all(L.group_advantages(r, 4)[0][4:8] == 0)            # zero spread: no signal
    with pytest.raises(ValueError):
        L.group_advantages(r, 5)


def test_combine_rewards_none_is_excluded_not_zeroed():
    nan = math.nan
    per = torch.tensor([[1.0, nan], [nan, nan], [2.0, 3.0]])
    out = L.combine_rewards(per, torch.tensor([1.0, 2.0]))
    assert out[0] == 1.0 and torch.isnan(out[1]) and out[2] == 8.0


def test_k3_and_clipped_objective():
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -1.5]])
    kl = L.k3_kl(lp, ref)
    assert kl[0, 0] == 0 and kl[0, 1] == pytest.approx(math.exp(0.5) - 0.5 - 1)
    old = torch.tensor([[-1.0, -1.0]])
    loss, clipped = L.clipped_policy_loss(torch.tensor([[-1.0, -0.5]]), old, torch.tensor([2.0]), 0.2)
    assert loss[0, 0].item() == pytest.approx(-2.0) and loss[0, 1].item() == pytest.approx(-2.0 * 1.2)
    assert clipped.tolist() == [[False, True]]


def test_aggregation_types():
    per = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert L.aggregate_loss(per, mask, "grpo").item() == pytest.approx((1 + 2) / 2)
    assert L.aggregate_loss(per, mask, "dapo").item() == pytest.approx(5 / 4)
    assert L.aggregate_loss(per, mask, "dr_grpo", max_completion_length=8).item() == pytest.approx(5 / 16)
    assert L.aggregate_loss(per, mask, "dapo", num_items=10).item() == pytest.approx(0.5)


def test_grpo_first_iteration_loss_zero_with_gradient():
    torch.manual_seed(0)
    logps = (torch.randn(4, 5) - 2).requires_grad_()
    adv, _ = L.group_advantages(torch.tensor([1.0, 0.0, 3.0, 1.0]), 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    loss, _ = L.grpo_loss(logps, logps.detach(), None, adv, mask, beta=0.0, loss_type="grpo")
    loss.backward()
    assert abs(loss.item()) < 1e-6 and logps.grad.abs().sum() > 0
