import itertools
import math

import pytest
import torch
from csrv2 import (
    LossConfig,
    SparseAutoencoder,
    annealed_k,
    auxk_loss,
    balance_loss,
    csr_loss,
    supervised_contrastive_loss,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelkit.io import ArtifactError
from kernelkit.testing import assert_close
from kernelkit.topk import SparseCodes


def make_head(d_in=8, hidden=32, k=3, tied=True, seed=0):
    torch.manual_seed(seed)
    head = SparseAutoencoder(d_in, hidden, k, tied=tied)
    with torch.no_grad():
        head.pre_bias.normal_()
        head.latent_bias.normal_()
        if head.untied_decoder is not None:
            head.untied_decoder.normal_()
    return head


@settings(max_examples=25)
@given(
    n=st.integers(0, 6),
    k=st.integers(1, 16),
    tied=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_codes_are_k_sparse_non_negative_and_decode_matches_dense(n, k, tied, seed):
    head = make_head(d_in=5, hidden=16, k=k, tied=tied, seed=seed)
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))
    codes = head.encode(x)
    assert codes.indices.shape == (n, k)
    assert bool((codes.values >= 0).all())
    assert bool((codes.to_dense() != 0).sum(dim=1).le(k).all())

    # The dense computation: ReLU(TopK(pre)) as a dense vector, times the decoder, plus b_pre.
    pre = (x - head.pre_bias) @ head.encoder.weight.T + head.latent_bias
    dense = torch.zeros_like(pre)
    if n:
        top = torch.sort(pre, dim=1, descending=True, stable=True)
        dense.scatter_(1, top.indices[:, :k], top.values[:, :k].relu())
    assert_close(codes.to_dense(), dense)
    with torch.no_grad():
        assert_close(head.decode(codes), dense @ head.decoder_rows + head.pre_bias)
        assert_close(head.decode(dense), dense @ head.decoder_rows + head.pre_bias)


def test_sparse_decode_with_grad_matches_no_grad_path():
    head = make_head(tied=False)
    codes = head.encode(torch.randn(7, 8))
    with torch.no_grad():
        fast = head.decode(codes)
    assert_close(head.decode(codes), fast)


def test_tied_decoder_shares_the_encoder_matrix():
    head = make_head()
    assert head.decoder_rows.data_ptr() == head.encoder.weight.data_ptr()
    untied = make_head(tied=False)
    assert untied.decoder_rows.data_ptr() != untied.encoder.weight.data_ptr()


@pytest.mark.parametrize("tied", [True, False])
def test_save_load_round_trip_is_exact(tmp_path, tied):
    head = make_head(tied=tied)
    head.calls_since_fired += torch.arange(head.hidden)
    head.save_pretrained(tmp_path / "head")
    loaded = SparseAutoencoder.from_pretrained(tmp_path / "head")
    assert loaded.config() == head.config()
    for (name, a), (_, b) in zip(
        head.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    x = torch.randn(4, 8)
    assert torch.equal(head.encode(x).indices, loaded.encode(x).indices)


def test_corrupt_artifact_is_reported(tmp_path):
    make_head().save_pretrained(tmp_path / "head")
    blob = tmp_path / "head" / "tensors.safetensors"
    blob.write_bytes(blob.read_bytes()[:-4])
    with pytest.raises(ArtifactError, match="checksum"):
        SparseAutoencoder.from_pretrained(tmp_path / "head")


def test_init_pre_bias_uses_the_data_mean():
    x = torch.randn(10, 8) + 3.0
    head = SparseAutoencoder(8, 32, 2).init_pre_bias_(x)
    assert_close(head.pre_bias.detach(), x.mean(0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"d_in": 4, "hidden": 8, "k": 9}, ValueError, "k must be >= 1 and <= 8, got 9"),
        ({"d_in": 4, "hidden": 8, "k": 0}, ValueError, "k must be >= 1"),
        ({"d_in": 4, "hidden": 8, "k": -2}, ValueError, "k must be >= 1"),
        ({"d_in": 4, "hidden": 8, "k": 2.0}, TypeError, "k must be an int"),
        ({"d_in": 0, "hidden": 8, "k": 2}, ValueError, "d_in must be >= 1"),
    ],
)
def test_bad_sizes_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        SparseAutoencoder(**kwargs)


def test_bad_embeddings_raise():
    head = SparseAutoencoder(4, 8, 2)
    with pytest.raises(ValueError, match="4 features per row"):
        head.encode(torch.randn(3, 5))
    with pytest.raises(ValueError, match="must be finite"):
        head.encode(torch.tensor([[0.0, float("nan"), 1.0, 2.0]]))
    with pytest.raises(TypeError, match="floating-point"):
        head.encode(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="k must be >= 1 and <= 8"):
        head.encode(torch.randn(3, 4), k=9)
    with pytest.raises(ValueError, match="dim == hidden"):
        head.decode(SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 9))


def test_dead_counter_counts_calls_and_resets_on_firing():
    head = SparseAutoencoder(2, 4, 1)
    fired = SparseCodes(torch.tensor([[1], [2]]), torch.tensor([[0.5], [0.0]]), 4)
    head.record_topk_call(fired)
    head.record_topk_call(fired)
    # Latent 2 was selected with value 0 (ReLU cut it): it did not fire.
    assert head.calls_since_fired.tolist() == [2, 0, 2, 2]
    assert head.dead_mask(1).tolist() == [True, False, True, True]


# -- annealing ---------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    total=st.integers(1, 400),
    k_final=st.integers(1, 32),
    hidden_factor=st.integers(1, 64),
    k_init=st.integers(1, 128),
    decay=st.floats(0.0, 1.0),
)
def test_annealing_is_monotone_hits_target_and_holds(total, k_final, hidden_factor, k_init, decay):
    hidden = k_final * hidden_factor
    ks = [annealed_k(s, total, k_final, hidden, k_init, decay) for s in range(total)]
    assert all(a >= b for a, b in itertools.pairwise(ks))
    decay_steps = int(decay * total)
    assert all(k == k_final for k in ks[decay_steps:])
    assert ks[0] == (max(k_final, min(k_init, hidden // 4)) if decay_steps > 0 else k_final)
    assert max(ks) <= max(k_final, hidden // 4)


def test_annealing_paper_example():
    # 100 steps, 64 -> 2 over the first 70: linear, integer-rounded, then held at 2.
    ks = [annealed_k(s, 100, 2, 1536) for s in range(100)]
    assert ks[0] == 64 and ks[35] == round(64 * 0.5 + 2 * 0.5) and ks[70:] == [2] * 30
    assert ks[69] == round(64 * (1 - 69 / 70) + 2 * 69 / 70)


def test_annealing_bad_inputs():
    with pytest.raises(ValueError, match="step must be >= 0 and <= 9"):
        annealed_k(10, 10, 2, 64)
    with pytest.raises(ValueError, match="decay_fraction must be in"):
        annealed_k(0, 10, 2, 64, decay_fraction=1.5)
    with pytest.raises(ValueError, match="k_final must be >= 1 and <= 64"):
        annealed_k(0, 10, 65, 64)


# -- losses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_dead", [0, 1, 7, 32])
def test_auxk_is_finite_for_any_number_of_dead_latents(n_dead):
    head = make_head()
    x = torch.randn(6, 8)
    pre = head.pre_activations(x)
    residual = torch.randn(6, 8)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[:n_dead] = True
    loss = auxk_loss(head, pre, residual, dead, auxk=16)
    assert math.isfinite(float(loss.detach()))
    if n_dead == 0:
        assert float(loss.detach()) == 0.0
    else:
        loss.backward()
        # Only dead latents' encoder rows receive AuxK gradient.
        grad = head.encoder.weight.grad.abs().sum(dim=1)
        assert bool((grad[n_dead:] == 0).all())


def test_auxk_with_constant_residual_is_zero_not_nan():
    head = make_head()
    pre = head.pre_activations(torch.randn(4, 8))
    loss = auxk_loss(head, pre, torch.ones(4, 8), torch.ones(32, dtype=torch.bool), auxk=4)
    assert float(loss.detach()) == 0.0


def test_supervised_contrastive_matches_the_two_view_definition():
    torch.manual_seed(0)
    codes = SparseCodes(torch.randint(0, 6, (5, 2)), torch.rand(5, 2), 6)
    labels = torch.tensor([0, 1, 0, 2, 1])
    got = supervised_contrastive_loss(codes, labels, temperature=0.2)
    # Straight from the definition on the stacked [2B] batch.
    z = torch.nn.functional.normalize(codes.to_dense(), dim=-1)
    z2, y2 = torch.cat([z, z]), torch.cat([labels, labels])
    losses = []
    for i in range(10):
        num = sum(
            math.exp(float(z2[i] @ z2[j]) / 0.2) for j in range(10) if j != i and y2[j] == y2[i]
        )
        den = sum(math.exp(float(z2[i] @ z2[j]) / 0.2) for j in range(10) if j != i)
        losses.append(-math.log(max(num / den, 1e-8)))
    assert float(got) == pytest.approx(sum(losses) / 10, rel=1e-5)


def test_supervised_contrastive_prefers_label_aligned_codes():
    labels = torch.tensor([0, 0, 1, 1])
    aligned = SparseCodes(torch.tensor([[0], [0], [1], [1]]), torch.ones(4, 1), 2)
    crossed = SparseCodes(torch.tensor([[0], [1], [0], [1]]), torch.ones(4, 1), 2)
    assert supervised_contrastive_loss(aligned, labels) < supervised_contrastive_loss(
        crossed, labels
    )


def test_csr_loss_terms_and_errors():
    head = make_head()
    x = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    terms = csr_loss(head, x, 3, LossConfig(), labels)
    expected = (
        terms.reconstruction_k
        + 0.125 * terms.reconstruction_4k
        + 0.1 * terms.auxk
        + 0.1 * terms.contrastive
    )
    assert float(terms.total.detach()) == pytest.approx(expected, rel=1e-5)
    # k and 4k, plus the contrastive view: three top-k calls.
    assert int(head.calls_since_fired.max()) == 3
    with pytest.raises(ValueError, match="needs labels"):
        csr_loss(head, x, 3, LossConfig())
    with pytest.raises(ValueError, match="one entry per row"):
        csr_loss(head, x, 3, LossConfig(), labels[:4])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LossConfig(temperature=0.0)


def test_balance_loss_is_one_when_even_and_h_when_one_latent_takes_all():
    even = SparseCodes(torch.arange(8).view(4, 2), torch.ones(4, 2), 8)
    assert float(balance_loss(even)) == pytest.approx(1.0)
    hot = SparseCodes(torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1), 8)
    assert float(balance_loss(hot)) == pytest.approx(8.0)
    # f = (2/4, 1/4, 1/4) on latents 0..2; P = mean value shares (0.5+0.75, 0.5, 0.25) / 2.
    skewed = SparseCodes(torch.tensor([[0, 1], [0, 2]]), torch.tensor([[1.0, 1.0], [3.0, 1.0]]), 4)
    expected = 4 * (0.5 * 1.25 / 2 + 0.25 * 0.5 / 2 + 0.25 * 0.25 / 2)
    assert float(balance_loss(skewed)) == pytest.approx(expected)
    zero = SparseCodes(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2), 4)
    assert float(balance_loss(zero)) == 0.0


def test_balance_gradient_shrinks_the_over_used_latent():
    values = torch.ones(4, 2, requires_grad=True)
    # Latent 0 is in every code, latents 1..4 once each.
    codes = SparseCodes(torch.tensor([[0, 1], [0, 2], [0, 3], [0, 4]]), values, 8)
    balance_loss(codes).backward()
    assert bool((values.grad[:, 0] > 0).all()) and bool((values.grad[:, 1] < 0).all())


def test_csr_loss_adds_the_balance_term_only_when_asked():
    head = make_head()
    x = torch.randn(6, 8)
    off = csr_loss(head, x, 3, LossConfig(contrastive="none"), track_dead=False)
    on = csr_loss(head, x, 3, LossConfig(contrastive="none", balance_coef=0.5), track_dead=False)
    assert off.balance == 0.0 and on.balance == pytest.approx(
        float(balance_loss(on.codes).detach())
    )
    assert float(on.total - off.total) == pytest.approx(0.5 * on.balance, rel=1e-5)
    with pytest.raises(ValueError, match="balance_coef must be >= 0"):
        LossConfig(balance_coef=-1.0)


@pytest.mark.parametrize("tied", [True, False])
def test_training_fast_paths_match_the_dense_loss(tied):
    # The training step scatters codes into the used columns only, runs AuxK on the dead columns,
    # takes the top-k code from the top-4k one and folds b_pre into the bias: same loss and
    # gradients as the plain dense formulas.
    head = make_head(d_in=6, hidden=40, k=2, tied=tied, seed=3)
    with torch.no_grad():
        head.pre_bias.normal_()
        head.latent_bias.normal_()
    x = torch.randn(9, 6)
    head.calls_since_fired[::3] = 100  # some latents dead for AuxK
    config = LossConfig(contrastive="self", auxk=5)
    terms = csr_loss(head, x, 2, config, track_dead=False)
    terms.total.backward()
    fast = {name: p.grad.clone() for name, p in head.named_parameters()}
    head.zero_grad()

    w = head.decoder_rows
    pre = (x - head.pre_bias) @ head.encoder.weight.T + head.latent_bias
    with torch.no_grad():
        assert_close(head.pre_activations(x), pre)

    def dense_codes(values, k):
        top = values.topk(k, dim=-1)
        return torch.zeros_like(values).scatter(-1, top.indices, top.values.relu())

    z_k, z_4k = dense_codes(pre, 2), dense_codes(pre, 8)
    recon_k = z_k @ w + head.pre_bias
    dead = head.dead_mask(config.dead_threshold)
    aux = dense_codes(pre.masked_fill(~dead, float("-inf")), 5).nan_to_num(0.0)
    residual = (x - recon_k).detach()
    aux_loss = ((aux @ w - residual) ** 2).mean() / ((residual - residual.mean(0)) ** 2).mean()
    z = torch.nn.functional.normalize(z_k, dim=-1)
    cl = torch.nn.functional.cross_entropy(z @ z.T / 0.2, torch.arange(9))
    total = (
        torch.nn.functional.mse_loss(recon_k, x)
        + 0.125 * torch.nn.functional.mse_loss(z_4k @ w + head.pre_bias, x)
        + 0.1 * aux_loss
        + 0.1 * cl
    )
    assert_close(terms.total.detach(), total.detach())
    total.backward()
    for name, p in head.named_parameters():
        assert_close(fast[name], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_encode_accepts_other_floating_dtypes(dtype):
    # float16 input used to fail with a bare dtype-mismatch RuntimeError inside F.linear.
    from csrv2 import SparseAutoencoder

    head = SparseAutoencoder(8, 32, 2)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    expected = head.encode(x.to(dtype).float())
    got = head.encode(x.to(dtype))
    assert torch.equal(got.indices, expected.indices)
    assert torch.allclose(got.values, expected.values)
