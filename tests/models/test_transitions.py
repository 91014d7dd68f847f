import torch

from aunet.models.transitions import Upsample, keep_first_boundaries, pooling_index, segment_index


def test_pooling_index_puts_boundaries_first_then_earliest_padding():
    mask = torch.tensor([[1, 0, 0, 1, 0, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    index, count = pooling_index(mask, 5)
    assert index.tolist() == [[0, 3, 5, 1, 2], [0, 1, 2, 3, 4]]
    assert count.tolist() == [3, 2]


def test_keep_first_boundaries_truncates_the_tail_only():
    mask = torch.tensor([[1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    assert keep_first_boundaries(mask, 3).long().tolist() == [[1, 1, 0, 1, 0, 0]]


def test_segment_index_is_inclusive_of_the_boundary_itself():
    # Boundaries at 0, 3, 4: position 3 already reads the vector pooled at 3 (P2), offsets restart there.
    mask = torch.tensor([[1, 0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    segment, offset = segment_index(mask)
    assert segment.tolist() == [[0, 0, 0, 1, 2, 2, 2]]
    assert offset.tolist() == [[0, 1, 2, 0, 0, 1, 2]]


def test_multilinear_upsampling_is_shared_plus_offset_matrix():
    torch.manual_seed(0)
    up = Upsample(coarse_dim=6, fine_dim=4, mode="multilinear", n_offsets=3, eps=1e-5).double()
    coarse = torch.randn(1, 2, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0, 0, 1, 0]], dtype=torch.bool)
    segment, offset = segment_index(mask)
    out = up(coarse, segment, offset, mask)
    normed = up.norm(coarse)
    w = up.proj.weight.view(1 + 3, 4, 6)  # [shared, offset 0..2] x [fine, coarse]
    for t, (k, o) in enumerate(zip(segment[0].tolist(), offset[0].tolist())):
        expected = normed[0, k] @ w[0].T + normed[0, k] @ w[1 + o % 3].T  # offsets wrap around
        assert torch.allclose(out[0, t], expected)


def test_simple_upsampling_only_at_boundaries_and_repeat_everywhere():
    torch.manual_seed(0)
    coarse = torch.randn(1, 2, 6)
    mask = torch.tensor([[1, 0, 1, 0]], dtype=torch.bool)
    segment, offset = segment_index(mask)
    simple = Upsample(6, 4, "simple", 16, 1e-5)
    repeat = Upsample(6, 4, "repeat", 16, 1e-5)
    repeat.load_state_dict(simple.state_dict())
    s, r = simple(coarse, segment, offset, mask), repeat(coarse, segment, offset, mask)
    assert torch.equal(s[0, 1], torch.zeros(4)) and torch.equal(s[0, 3], torch.zeros(4))
    assert torch.allclose(s[0, 0], r[0, 0]) and torch.allclose(r[0, 1], r[0, 0]) and torch.allclose(r[0, 3], r[0, 2])


def test_blockwise_sliding_window_attention_equals_the_masked_reference():
    import torch.nn.functional as F

    from aunet.models.layers import sliding_window_attention, sliding_window_mask

    torch.manual_seed(0)
    for seq, window in [(64, 16), (50, 16), (16, 16), (10, 16), (33, 1), (40, 39)]:
        q, k, v = (torch.randn(2, 3, seq, 8, dtype=torch.float64) for _ in range(3))
        reference = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(seq, window))
        assert torch.allclose(sliding_window_attention(q, k, v, window), reference, atol=1e-12), (seq, window)


def _random_segments(batch: int, length: int, n_coarse: int, rate: float, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, length, generator=g) < rate
    mask[:, 0] = True
    mask = keep_first_boundaries(mask, n_coarse)
    return (mask, *segment_index(mask))


def test_grouped_and_gathered_multilinear_upsampling_agree_in_values_and_gradients():
    # Sparse boundaries give segments longer than n_offsets (wrap-around) and offsets no position uses (empty groups).
    torch.manual_seed(0)
    up = Upsample(coarse_dim=12, fine_dim=8, mode="multilinear", n_offsets=4, eps=1e-5).double()
    mask, segment, offset = _random_segments(3, 40, 10, 0.15, seed=1)
    assert offset.max() >= 4 and len(set((offset % 4).flatten().tolist())) == 4
    coarse = torch.randn(3, 10, 12, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(3, 40, 8, dtype=torch.float64)
    results = []
    for path in (up.multilinear_gathered, up.multilinear_grouped):
        out = path(coarse, segment, offset)
        grads = torch.autograd.grad(out, (coarse, up.proj.weight, up.norm.weight), grad_out)
        results.append((out, grads))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.allclose(out_a, out_b, atol=1e-12)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, atol=1e-12)
    # Only offsets 0 and 1 used: the empty groups are skipped, and their matrices get no gradient on either path.
    dense = torch.zeros(1, 6, dtype=torch.bool)
    dense[0, ::2] = True
    segment, offset = segment_index(dense)
    grads = [torch.autograd.grad(path(coarse[:1, :3], segment, offset).sum(), up.proj.weight)[0]
             for path in (up.multilinear_gathered, up.multilinear_grouped)]
    assert torch.allclose(grads[0], grads[1], atol=1e-12)
    unused = grads[1].view(5, 8, 12)[3:]  # [shared, offset 0..3]: offsets 2 and 3
    assert unused.abs().max() == 0


def test_cpu_forward_takes_the_grouped_path():
    up = Upsample(coarse_dim=6, fine_dim=4, mode="multilinear", n_offsets=3, eps=1e-5)
    mask, segment, offset = _random_segments(2, 12, 5, 0.3, seed=2)
    coarse = torch.randn(2, 5, 6)
    calls = []
    original = up.multilinear_grouped
    up.multilinear_grouped = lambda *a: calls.append(1) or original(*a)  # type: ignore[method-assign]
    up(coarse, segment, offset, mask)
    assert calls == [1]


def test_gather_rows_matches_torch_gather():
    from aunet.models.transitions import gather_rows

    x = torch.randn(3, 7, 5, requires_grad=True)
    index = torch.randint(0, 7, (3, 4))
    expected = torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, 5))
    assert torch.equal(gather_rows(x, index), expected)
    g = torch.randn(3, 4, 5)
    assert torch.allclose(torch.autograd.grad(gather_rows(x, index), x, g)[0],
                          torch.autograd.grad(expected, x, g)[0])
