"""mt.trace and mt.count_parameters: recorded shapes against the real ones, counts against p.numel(), hooks removed."""

import pytest
import torch
from torch import nn

import mastering_transformers as mt


def all_hooks(model):
    return [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]


def encoder(d_model=16, n_head=4, d_ff=24, n_layers=2):
    layer = nn.TransformerEncoderLayer(d_model, n_head, d_ff, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


def test_sequential_shapes_equal_the_real_intermediate_shapes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 20), nn.GELU(), nn.Linear(20, 5))
    x = torch.randint(0, 11, (3, 7))
    result = mt.trace(model, x)
    assert [r.name for r in result.rows] == ["", "0", "1", "2", "3"]
    assert [r.kind for r in result.rows] == ["Sequential", "Embedding", "Linear", "GELU", "Linear"]
    h = x
    for row, layer in zip(result.rows[1:], model):  # the reference: run the layers one by one
        assert row.inputs == [tuple(h.shape)]
        h = layer(h)
        assert row.outputs == [tuple(h.shape)]
    assert result.rows[0].inputs == [(3, 7)] and result.rows[0].outputs == [(3, 7, 5)]
    torch.testing.assert_close(result.output, model(x))


def test_param_counts_equal_numel_per_module_and_in_total():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 20), nn.LayerNorm(20), nn.ReLU(), nn.Linear(20, 5, bias=False))
    result = mt.trace(model, torch.randn(2, 8))
    for row, layer in zip(result.rows[1:], model):
        assert row.params == sum(p.numel() for p in layer.parameters())
    assert [r.params for r in result.rows] == [0, 8 * 20 + 20, 2 * 20, 0, 20 * 5]
    assert result.total_params == mt.count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_transformer_encoder_rows_and_counts():
    d_model, n_head, d_ff, n_layers = 16, 4, 24, 3
    model = encoder(d_model, n_head, d_ff, n_layers)
    x = torch.randn(2, 5, d_model)
    result = mt.trace(model, x)
    by_name = {r.name: r for r in result.rows}
    for i in range(n_layers):
        assert by_name[f"layers.{i}.linear1"].outputs == [(2, 5, d_ff)]
        assert by_name[f"layers.{i}.linear2"].outputs == [(2, 5, d_model)]
        attn = by_name[f"layers.{i}.self_attn"]
        assert attn.inputs == [(2, 5, d_model)] * 3  # query, key, value
        assert attn.outputs == [(2, 5, d_model)]  # (output, None): the None is skipped
        # nn.MultiheadAttention uses out_proj's weights without calling it: they count at self_attn
        assert "layers.0.self_attn.out_proj" not in by_name
        assert attn.params == 4 * d_model * d_model + 4 * d_model
        assert attn.depth == 2 and result.rows[attn.parent].name == f"layers.{i}"
    assert result.total_params == mt.count_parameters(model)
    torch.testing.assert_close(result.output, model(x))
    assert not all_hooks(model)


def test_multihead_attention_rows():
    mha = mt.MultiHeadAttention(12, 4, n_kv_head=2)
    result = mt.trace(mha, torch.randn(2, 5, 12), torch.randn(2, 7, 12), need_weights=True)
    by_name = {r.name: r for r in result.rows}
    assert by_name[""].inputs == [(2, 5, 12), (2, 7, 12)]
    assert by_name[""].outputs == [(2, 5, 12), (2, 4, 5, 7)]  # (y, weights)
    assert by_name["k_proj"].outputs == [(2, 7, 6)]  # 2 K/V heads of size 3
    assert result.total_params == sum(p.numel() for p in mha.parameters())


class Twice(nn.Module):
    """Calls the same layer twice, ties a weight, and has a submodule that returns a tuple with None."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.emb.weight  # weight tying: one tensor, two modules

    def forward(self, idx, scale=None):
        h = self.shared(self.shared(self.emb(idx)))
        return self.head(h), None


def test_repeated_calls_tied_weights_tuple_and_none_outputs():
    model = Twice()
    result = mt.trace(model, torch.randint(0, 10, (4, 3)), scale=torch.ones(1))
    names = [(r.name, r.call) for r in result.rows]
    assert names == [("", 1), ("emb", 1), ("shared", 1), ("shared", 2), ("head", 1)]
    assert result.rows[0].inputs == [(4, 3), (1,)]  # keyword tensors are recorded after positional ones
    assert result.rows[0].outputs == [(4, 3, 10)]
    assert result.rows[3].params == 0  # counted at its first call
    assert result.rows[4].params == 0  # the tied weight was already counted at emb
    assert result.total_params == mt.count_parameters(model) == 10 * 6 + 6 * 6 + 6
    assert "[call 2]" in str(result)


def test_hooks_removed_after_success_and_after_an_error():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(15, 3))
    mt.trace(model[0], torch.randn(1, 4, 16))
    assert not all_hooks(model)
    with pytest.raises(RuntimeError):  # the wrong feature size fails inside the forward, at the second Linear
        mt.trace(model, torch.randn(1, 4, 16))
    assert not all_hooks(model)
    # hooks the user registered are left alone
    model = encoder()
    handle = model.layers[0].register_forward_hook(lambda *a: None)
    mt.trace(model, torch.randn(1, 4, 16))
    assert len(all_hooks(model)) == 1
    handle.remove()


def test_table_text():
    model = encoder(n_layers=2)
    result = mt.trace(model, torch.randn(2, 5, 16))
    text = str(result)
    assert text == repr(result) == result.table()
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["module", "class"]
    assert "(model)" in lines[2] and "TransformerEncoder" in lines[2]
    assert lines[-1].split() == ["total", f"{mt.count_parameters(model):,}"]
    assert any("linear1" in line and "(2, 5, 24)" in line for line in lines)
    assert len(result.table(max_depth=1).splitlines()) == 3 + 2 + 2  # header, rule, model, 2 layers, rule, total


def test_count_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    assert mt.count_parameters(model) == 3 * 4 + 4 + 4 * 2 + 2
    model[0].requires_grad_(False)
    assert mt.count_parameters(model, trainable_only=True) == 4 * 2 + 2
    with pytest.raises(TypeError, match="nn.Module"):
        mt.count_parameters(torch.zeros(3))
    with pytest.raises(TypeError, match="nn.Module"):
        mt.trace(lambda x: x, torch.zeros(3))
