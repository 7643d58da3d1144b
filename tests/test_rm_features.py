"""What a reward model's head reads: `--pooling last|mean` and `--feature-layer K`. The response
mask, the layer cut (same states, fewer layers), and a round trip through `train rm` → card →
a freshly loaded `RewardModel` that scores exactly as the features were defined."""
import json

import pytest
import torch

from rlaif.errors import RlaifError
from tests._train_utils import save_tiny


def test_response_mask_marks_the_response_of_each_padded_row():
    from rlaif.train.rm_model import response_mask

    m = response_mask([5, 3, 4], [2, 1, 4], 6)
    assert m.tolist() == [[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]]   # cut-away response: last token


@pytest.mark.slow
@pytest.mark.ci
def test_cut_layers_keeps_the_state_of_layer_k(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rlaif.train.rm_model import cut_layers, make_reward_module

    path = save_tiny(tmp_path / "tiny")
    whole = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    cut = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    assert cut_layers(cut, 1) and len(cut.model.layers) == 1
    assert not cut_layers(whole, None) and not cut_layers(whole, 2)         # nothing to cut
    with pytest.raises(RlaifError, match="only 2 decoder layers"):
        cut_layers(whole, 3)
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pool = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    with torch.no_grad():
        h1 = whole.model(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states[1]
        for pooling, want in (("last", torch.stack([h1[0, 4], h1[1, 2]])),
                              ("mean", torch.stack([h1[0, 2:5].mean(0), h1[1, 1:3].mean(0)]))):
            a = make_reward_module()(whole, pooling, 1).features(ids, attn, pool)
            b = make_reward_module()(cut, pooling, 1).features(ids, attn, pool)
            assert torch.allclose(a, want, atol=1e-5) and torch.allclose(b, want, atol=1e-5)
        last = whole.model(input_ids=ids, attention_mask=attn).last_hidden_state       # default: final, normed
        assert torch.allclose(make_reward_module()(whole).features(ids, attn), torch.stack([last[0, 4], last[1, 2]]))
    with pytest.raises(RlaifError, match="pooling 'max'"):
        make_reward_module()(whole, "max")


@pytest.mark.slow
@pytest.mark.ci
def test_pooling_and_feature_layer_round_trip_through_the_card(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rlaif.train.rm import train_rm
    from rlaif.train.rm_model import RewardModel, encode_parts, head_of
    from tests.test_train_rm import _refusal_rows

    base = save_tiny(tmp_path / "tiny")
    out = tmp_path / "rm"
    train_rm(_refusal_rows(), model=base, rubric="over_refusal", probe=True, pooling="mean", feature_layer=1,
             max_steps=30, batch_size=8, learning_rate=1e-2, output_dir=str(out), progress=False, save_steps=0,
             eval_fraction=0.0)
    card = json.loads((out / "adapter" / "reward_model.json").read_text())
    assert card["pooling"] == "mean" and card["feature_layer"] == 1
    rm = RewardModel(out)                                   # fresh load: base cut to 1 layer, adapter merged in
    assert len(rm.model.model.layers) == 1
    prompts = ["How do I kill process 1?", "How do I kill process 2?"]
    answers = ["I'm sorry, I can't help with that.", "Sure: step 2 is to open the file."]
    outs = rm.outputs(prompts, answers)
    assert outs[0].index(max(outs[0])) == 0 and outs[1].index(max(outs[1])) == 2
    # by hand: the whole base, the state after layer 1, averaged over the response tokens, times the head
    whole = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3).eval()
    w = head_of(rm.model).weight
    for (p, r), o in zip(zip(prompts, answers), outs):
        ids, start = encode_parts(rm.tok, p, r, card["max_length"])
        with torch.no_grad():
            h = whole.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
        assert torch.allclose(h[start:].mean(0) @ w.T, torch.tensor(o), atol=1e-4)


def test_card_rejects_unknown_pooling_and_bad_layer(tmp_path):
    from rlaif.train.rm_model import RMInfo, read_info

    info = RMInfo(kind="classes", num_labels=3, rubric="over_refusal", points=[1, 2, 3], base_model="default")
    for field, value, msg in (("pooling", "max", "field 'pooling'"), ("feature_layer", 0, "field 'feature_layer'")):
        d = tmp_path / field
        d.mkdir()
        (d / "reward_model.json").write_text(json.dumps(dict(info.to_dict(), **{field: value})))
        with pytest.raises(RlaifError, match=msg):
            read_info(d)
    old = tmp_path / "old"                      # a card written before these fields: last token, final layer
    old.mkdir()
    raw = info.to_dict()
    del raw["pooling"], raw["feature_layer"]
    (old / "reward_model.json").write_text(json.dumps(raw))
    assert (read_info(old).pooling, read_info(old).feature_layer) == ("last", None)


@pytest.mark.slow
def test_lora_training_with_mean_pooling_categorical_and_pairwise(tmp_path):
    """Not only --probe: the response mask travels in the batches (single rows and chosen/rejected pairs);
    a zero head gives the uniform loss at step 1 (ln 3 for three classes, ln 2 for pairs)."""
    import math

    from rlaif.train.rm import train_rm
    from tests._train_utils import pair_rows
    from tests.test_train_rm import _refusal_rows

    base = save_tiny(tmp_path / "tiny")
    s = train_rm(_refusal_rows(), model=base, rubric="over_refusal", pooling="mean", feature_layer=1, max_steps=2,
                 batch_size=4, output_dir=str(tmp_path / "cat"), progress=False, save_steps=0, eval_fraction=0.3,
                 eval_steps=1)
    first = json.loads((tmp_path / "cat" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(3), abs=1e-4) and "eval/accuracy" in s["eval"]
    s = train_rm(pair_rows(8), model=base, pooling="mean", max_steps=1, batch_size=4,
                 output_dir=str(tmp_path / "bt"), progress=False, save_steps=0, eval_fraction=0.0)
    first = json.loads((tmp_path / "bt" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert json.loads((tmp_path / "bt" / "adapter" / "reward_model.json").read_text())["pooling"] == "mean"
