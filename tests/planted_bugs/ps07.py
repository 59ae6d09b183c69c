"""Planted realistic bugs in ps07_positions: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_table_sin_cos_swapped": ("sinusoidal_table", """
def sinusoidal_table(T, d):
    p = torch.arange(T, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.cos(p * omega)
    pe[:, 1::2] = torch.sin(p * omega)
    return pe.float()
""", {"test_position_zero", "test_frequencies"}),
    "bug_table_exponent_i_over_d": ("sinusoidal_table", """
def sinusoidal_table(T, d):
    p = torch.arange(T, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(d // 2, dtype=torch.float64) / d)
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(p * omega)
    pe[:, 1::2] = torch.cos(p * omega)
    return pe.float()
""", {"test_frequencies"}),
    "bug_table_concatenated": ("sinusoidal_table", """
def sinusoidal_table(T, d):
    p = torch.arange(T, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    return torch.cat([torch.sin(p * omega), torch.cos(p * omega)], dim=-1).float()
""", {"test_position_zero", "test_pairs_on_unit_circle", "test_frequencies"}),
    "bug_table_positions_from_1": ("sinusoidal_table", """
def sinusoidal_table(T, d):
    p = torch.arange(1, T + 1, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(p * omega)
    pe[:, 1::2] = torch.cos(p * omega)
    return pe.float()
""", {"test_position_zero", "test_frequencies"}),
    "bug_offset_rotates_backwards": ("offset_rotation", """
def offset_rotation(k, d):
    m = torch.zeros(d, d)
    for i in range(d // 2):
        a = k * 10000.0 ** (-2 * i / d)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return m
""", {"test_shifts_positions"}),
    "bug_offset_missing_minus": ("offset_rotation", """
def offset_rotation(k, d):
    m = torch.zeros(d, d)
    for i in range(d // 2):
        a = k * 10000.0 ** (-2 * i / d)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[math.cos(a), math.sin(a)], [math.sin(a), math.cos(a)]])
    return m
""", {"test_orthogonal", "test_shifts_positions"}),
    "bug_rope_half_split_pairs": ("rope_rotate", """
def rope_rotate(x, positions):
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = positions.float()[:, None] * theta
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
""", {"test_pairs_keep_length", "test_matches_reference"}),
    "bug_rope_clockwise": ("rope_rotate", """
def rope_rotate(x, positions):
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = positions.float()[:, None] * theta
    cos, sin = angles.cos(), angles.sin()
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([x_even * cos + x_odd * sin, -x_even * sin + x_odd * cos], dim=-1).flatten(-2)
""", {"test_matches_reference"}),
    "bug_rope_ignores_positions": ("rope_rotate", """
def rope_rotate(x, positions):
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    cos, sin = theta.cos(), theta.sin()
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1).flatten(-2)
""", {"test_position_zero", "test_matches_reference"}),
    "bug_slopes_h_from_0": ("alibi_slopes", """
def alibi_slopes(n_head):
    def geometric(n):
        return [2.0 ** (-8.0 * h / n) for h in range(n)]
    n = 2 ** int(math.log2(n_head))
    return torch.tensor(geometric(n) + geometric(2 * n)[0::2][: n_head - n])
""", {"test_powers_of_two", "test_other_head_counts"}),
    "bug_slopes_no_power_of_2_rule": ("alibi_slopes", """
def alibi_slopes(n_head):
    return torch.tensor([2.0 ** (-8.0 * h / n_head) for h in range(1, n_head + 1)])
""", {"test_other_head_counts"}),
    "bug_bias_sign_flipped": ("alibi_bias", """
def alibi_bias(slopes, T):
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    return slopes[:, None, None] * (i - j)
""", {"test_past_is_penalised", "test_matches_reference"}),
    "bug_bias_absolute_distance": ("alibi_bias", """
def alibi_bias(slopes, T):
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    return -slopes[:, None, None] * (i - j).abs()
""", {"test_matches_reference"}),
}

# Bugs only the second edition's checks catch (issue 14): gradients that do not flow.
BUGS.update({
    "bug_rope_angles_in_place_copy": ("rope_rotate", """
def rope_rotate(x, positions):
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[:, None] * theta
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    out = torch.empty_like(x)
    a, b = x[..., 0::2].detach(), x[..., 1::2].detach()
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out
""", {"test_gradient"}),
})
