"""Supervised fine-tuning pieces (mt.finetune): the prompt mask, special tokens, LoRA (chapter 16)."""

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt

torch.set_num_threads(1)
VOCAB = mt.CharVocab(tuple("\n !?,.:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def tiny_gpt(vocab_size=None, seed=0):
    torch.manual_seed(seed)
    cfg = mt.GPTConfig(vocab_size=vocab_size or VOCAB.size, block_size=64, n_layer=2, n_head=2, n_embd=16,
                       bias=False, norm="rms", mlp="swiglu", pos="rope")
    return mt.GPT(cfg)


# -- the prompt mask -----------------------------------------------------------------------------------


def test_mask_prompt_targets_against_a_loop():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(50, (4, 9), generator=g)
    prompt_lengths, lengths = torch.tensor([1, 3, 5, 8]), torch.tensor([9, 6, 7, 9])
    x, y = mt.mask_prompt_targets(ids, prompt_lengths, lengths)
    assert torch.equal(x, ids[:, :-1])
    for b in range(4):
        for t in range(8):
            target = int(ids[b, t + 1]) if prompt_lengths[b] <= t + 1 < lengths[b] else -100
            assert int(y[b, t]) == target, (b, t)
    assert ids.shape == (4, 9)  # the input is not changed


def test_mask_prompt_targets_rejects_rows_without_a_response():
    with pytest.raises(ValueError, match="response"):
        mt.mask_prompt_targets(torch.zeros(1, 5, dtype=torch.long), torch.tensor([5]), torch.tensor([5]))


def test_sft_loss_is_the_cross_entropy_of_response_tokens_only():
    tok = mt.SFTTokenizer(VOCAB)
    model = mt.add_special_tokens(tiny_gpt())
    examples = [mt.SFTExample("Which play?\nTo be.", "Hamlet", "play"), mt.SFTExample("Who?\nAy.", "LEAR", "speaker")]
    x, y = mt.finetune.collate(tok, examples)
    logits, loss = model(x, y)
    # reference: pick out, by hand, the positions whose target is a response character or <|end|>
    rows, cols, targets = [], [], []
    for b, e in enumerate(examples):
        ids, n_prompt = tok.encode(e)
        assert ids[n_prompt - 1] == tok.response_id and ids[-1] == tok.end_id
        for pos in range(n_prompt, len(ids)):
            rows.append(b), cols.append(pos - 1), targets.append(ids[pos])
    ref = F.cross_entropy(logits[rows, cols], torch.tensor(targets))
    torch.testing.assert_close(loss, ref)
    assert len(targets) == len("Hamlet") + 1 + len("LEAR") + 1
    # the prompt does not enter the loss as a target: changing its targets changes nothing
    y2 = y.clone()
    y2[y == -100] = 3
    assert not torch.allclose(model(x, y2)[1], loss)


def test_tokenizer_round_trip_and_special_ids():
    tok = mt.SFTTokenizer(VOCAB)
    ids, n_prompt = tok.encode(mt.SFTExample("Hi?", "Yes", "t"))
    assert tok.size == VOCAB.size + 3
    assert tok.decode(ids) == "<|prompt|>Hi?<|response|>Yes<|end|>"
    assert n_prompt == len("Hi?") + 2


def test_instruction_dataset_is_balanced_and_held_out_from_pretraining():
    examples = mt.instruction_dataset()
    plays = Counter(e.response for e in examples if e.task == "play")
    assert len(set(plays.values())) == 1 and len(plays) == 4  # as many lines per play: chance is 1/4
    assert all(e.prompt.split("\n", 1)[0] in mt.finetune.QUESTIONS.values() for e in examples)
    assert all(20 <= len(e.prompt.split("\n", 1)[1]) <= 60 for e in examples)
    assert {e.task for e in examples} == {"play", "speaker"}
    prompts = [e.prompt for e in examples]
    assert len(set(prompts)) == len(prompts)  # no question twice: a split cannot leak


# -- special tokens ------------------------------------------------------------------------------------


def test_added_tokens_leave_the_old_logits_unchanged():
    base = tiny_gpt().eval()
    model = mt.add_special_tokens(base).eval()
    idx = torch.randint(VOCAB.size, (2, 10))
    old, new = base(idx)[0], model(idx)[0]
    assert new.shape[-1] == VOCAB.size + 3
    torch.testing.assert_close(new[..., : VOCAB.size], old)
    rows = model.tok_emb.weight[VOCAB.size :]
    assert torch.allclose(rows, base.tok_emb.weight.mean(0).expand_as(rows), atol=0.01)
    assert not torch.equal(rows[0], rows[1])


# -- LoRA ----------------------------------------------------------------------------------------------


def test_lora_with_zero_b_is_the_base_layer():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 7)
    lora = mt.LoRALinear(copy.deepcopy(base), rank=3, alpha=6.0)
    x = torch.randn(2, 5, 12)
    assert torch.equal(lora(x), base(x))
    assert not lora.base.weight.requires_grad and lora.lora_A.requires_grad and lora.lora_B.requires_grad


def test_lora_equals_the_full_update_and_merges():
    torch.manual_seed(1)
    base = torch.nn.Linear(12, 7, bias=True).double()
    lora = mt.LoRALinear(base, rank=3, alpha=6.0)
    assert lora.lora_A.dtype == torch.float64
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(4, 12, dtype=torch.float64)
    w_full = base.weight + (6.0 / 3) * lora.lora_B @ lora.lora_A
    torch.testing.assert_close(lora(x), F.linear(x, w_full, base.bias))
    torch.testing.assert_close(lora.merged()(x), F.linear(x, w_full, base.bias))
    assert torch.linalg.matrix_rank(lora.delta_weight()) == 3
    # gradients reach A and B, not W: compare with autograd through the explicit formula
    out = lora(x).square().sum()
    out.backward()
    a, b = lora.lora_A.detach().requires_grad_(), lora.lora_B.detach().requires_grad_()
    F.linear(x, base.weight.detach() + 2.0 * b @ a, base.bias.detach()).square().sum().backward()
    torch.testing.assert_close(lora.lora_A.grad, a.grad)
    torch.testing.assert_close(lora.lora_B.grad, b.grad)
    assert base.weight.grad is None


def test_apply_lora_then_train_then_merge_keeps_the_function():
    tok = mt.SFTTokenizer(VOCAB)
    model = mt.add_special_tokens(tiny_gpt()).eval()
    ref = copy.deepcopy(model)
    layers = mt.apply_lora(model, rank=2, alpha=4.0)
    idx = torch.randint(tok.size, (2, 12))
    torch.testing.assert_close(model(idx)[0], ref(idx)[0])  # B = 0: the base model
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in ref.blocks.modules())
    assert len(layers) == n_linear
    lora_params = sum(p.numel() for l in layers for p in (l.lora_A, l.lora_B))
    assert mt.finetune.trainable_parameters(model) == lora_params + model.tok_emb.weight.numel()
    examples = [mt.SFTExample("Who?\nAy.", "LEAR", "speaker"), mt.SFTExample("Play?\nNo.", "Hamlet", "play")]
    losses = mt.sft_train(model, tok, examples, steps=8, batch_size=2, lr=1e-2)
    assert losses[-1] < losses[0]
    frozen = [n for n, p in model.named_parameters() if ".base." in n]
    for name in frozen:  # the frozen weights did not move
        assert torch.equal(dict(model.named_parameters())[name], dict(ref.named_parameters())[name.replace(".base", "")])
    before = model(idx)[0]
    mt.merge_lora(model)
    assert not any(isinstance(m, mt.LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(idx)[0], before, rtol=1e-5, atol=1e-5)


def test_choice_accuracy_and_answer_on_a_trained_toy():
    tok = mt.SFTTokenizer(VOCAB)
    model = mt.add_special_tokens(tiny_gpt())
    examples = [mt.SFTExample("Q?\nab", "YES", "t"), mt.SFTExample("Q?\ncd", "NO", "t")]
    mt.sft_train(model, tok, examples, steps=60, batch_size=2, lr=1e-2)
    assert mt.choice_accuracy(model, tok, examples, ["YES", "NO"]) == 1.0
    assert mt.finetune.answer(model, tok, "Q?\nab") == "YES"
    assert mt.sft_accuracy(model, tok, examples) == {"t": 1.0, "all": 1.0}
