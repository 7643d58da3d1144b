"""Issue 14 item 10: scoring a padded batch in row chunks (the CPU attention of a padded batch is
rows × heads × T²) gives the same next-token logits as one pass."""
import torch

from rlaif.models import last_token_logits
from tests._train_utils import tiny_lm


def test_chunked_scoring_matches_one_pass():
    model, _tok = tiny_lm()
    model.eval()
    ids = torch.randint(5, 1000, (5, 40))
    mask = torch.ones_like(ids)
    for i in range(5):
        mask[i, : 4 * i] = 0                       # left padding of different lengths
    with torch.inference_mode():
        whole = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
        chunked = last_token_logits(model, ids, mask, cells=2 * 40 * 40)   # two rows per pass
        single = last_token_logits(model, ids, mask, cells=1)              # one row per pass, padding dropped
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, atol=1e-4) and torch.allclose(single, whole, atol=1e-4)
