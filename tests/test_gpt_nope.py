"""mt.GPT with pos="none" (no positional encoding; chapter 7's "none" scheme) against independent references.

- the start of the residual stream is the token embedding lookup alone (F.embedding), at any length;
- run bidirectionally (no causal mask), the blocks are permutation-equivariant, as attention without
  positions must be (shuffled tokens give the same logits, shuffled); with the causal mask (the model's
  forward) they are not, because the mask is itself positional information;
- sequences longer than block_size are accepted, and a prefix's logits do not depend on what follows.
"""

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt

V = 29


def nope(**kw):
    base = dict(vocab_size=V, block_size=8, n_layer=2, n_head=2, n_embd=16, pos="none")
    base.update(kw)
    torch.manual_seed(0)
    return mt.GPT(mt.GPTConfig(**base)).eval()


def test_none_is_a_valid_choice_and_adds_no_parameters():
    model = nope()
    learned = mt.GPT(mt.GPTConfig(vocab_size=V, block_size=8, n_layer=2, n_head=2, n_embd=16, pos="learned"))
    assert model.pos_emb is None and not hasattr(model, "pos_table")
    assert learned.num_parameters() - model.num_parameters() == 8 * 16  # only the learned table differs
    with pytest.raises(ValueError, match="pos must be one of"):
        mt.GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=16, pos="nope")


@pytest.mark.parametrize("t", [1, 5, 8, 20])
def test_stream_starts_with_the_token_embedding_only(t):
    model = nope()
    idx = torch.randint(0, V, (3, t), generator=torch.Generator().manual_seed(t))
    assert torch.equal(model.embed(idx), F.embedding(idx, model.tok_emb.weight))


def test_blocks_without_causal_mask_are_permutation_equivariant_and_causal_ones_are_not():
    model = nope()
    idx = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])

    def run(ids, is_causal):
        x = model.embed(ids)
        for block in model.blocks:
            x = block(x, is_causal=is_causal)
        return model.lm_head(model.norm_f(x))

    with torch.no_grad():
        assert torch.allclose(run(idx[:, perm], False), run(idx, False)[:, perm], atol=1e-5)
        assert not torch.allclose(run(idx[:, perm], True), run(idx, True)[:, perm], atol=1e-3)
        assert torch.allclose(run(idx, True), model(idx)[0], atol=1e-6)  # the forward is the causal one


def test_longer_than_block_size_is_accepted_and_prefixes_are_causal():
    model = nope()
    idx = torch.randint(0, V, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        long, _ = model(idx)
        short, _ = model(idx[:, :8])
    assert long.shape == (2, 30, V)
    assert torch.allclose(long[:, :8], short, atol=1e-5)
