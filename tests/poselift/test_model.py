import numpy as np
import pytest
import torch

from poselift.model import (
    FrameLifter,
    LayerNormLSTMCell,
    LifterConfig,
    Seq2SeqLifter,
    build_model,
    standardise_window,
)


def _inputs(b: int = 3, w: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, w, 17, 2, generator=g) - 0.5, torch.ones(b, w, 17)


@pytest.mark.parametrize("kind,window", [("seq2seq", 5), ("seq2seq", 3), ("framewise", 1)])
def test_model_shapes_and_root_at_origin(kind, window):
    model = build_model(LifterConfig(kind=kind, window=window, hidden_size=32, dropout=0.0)).eval()
    out = model(*_inputs(w=window))
    assert out.shape == (3, window, 17, 3)
    assert torch.all(out[:, :, 0] == 0)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        LifterConfig(kind="transformer")
    with pytest.raises(ValueError):
        LifterConfig(kind="framewise", window=5)


def test_standardise_window_ignores_missing_joints_and_is_translation_and_scale_invariant():
    kp, scores = _inputs()
    feats = standardise_window(kp, scores)
    moved = standardise_window(kp * 2.5 + 0.3, scores)
    assert torch.allclose(feats, moved, atol=1e-5)
    scores2 = scores.clone()
    scores2[:, :, 4] = 0
    kp2 = kp.clone()
    kp2[:, :, 4] = 1e3  # garbage where the joint is missing must not matter
    a = standardise_window(kp2, scores2)
    kp3 = kp.clone()
    kp3[:, :, 4] = 0
    assert torch.allclose(a, standardise_window(kp3, scores2))
    assert torch.all(a.unflatten(-1, (17, 3))[:, :, 4] == 0)


def test_decoder_is_residual_from_a_start_token_of_ones():
    model = Seq2SeqLifter(LifterConfig(hidden_size=16, dropout=0.0)).eval()
    torch.nn.init.zeros_(model.decoder.output_proj.weight)
    torch.nn.init.zeros_(model.decoder.output_proj.bias)
    out = model.forward_normalised(*_inputs())
    assert torch.allclose(out, torch.ones_like(out))  # a zero update keeps the START token at every step


def test_encoder_reads_the_window_newest_first():
    model = Seq2SeqLifter(LifterConfig(hidden_size=16, dropout=0.0)).eval()
    seen = []
    original = model.encoder.step

    def spy(x, state):
        seen.append(x.clone())
        return original(x, state)

    model.encoder.step = spy  # type: ignore[method-assign]
    kp, scores = _inputs(b=1)
    feats = standardise_window(kp, scores)
    model(kp, scores)
    assert torch.equal(seen[0], feats[:, -1]) and torch.equal(seen[-1], feats[:, 0])


def test_ln_lstm_cell_recurrent_dropout_only_in_training():
    cell = LayerNormLSTMCell(8, 16, dropout=0.5, forget_bias=1.0)
    x, h = torch.randn(4, 8), torch.zeros(4, 16)
    cell.eval()
    a, b = cell(x, (h, h)), cell(x, (h, h))
    assert torch.equal(a[0], b[0])
    cell.train()
    torch.manual_seed(0)
    c = cell(x, (h, h))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("kind,window", [("seq2seq", 5), ("framewise", 1)])
def test_model_overfits_a_batch(kind, window):
    torch.manual_seed(0)
    model = build_model(LifterConfig(kind=kind, window=window, hidden_size=32, dropout=0.0))
    kp, scores = _inputs(b=8, w=window)
    target = torch.randn(8, window, 17, 3) * 100
    target[:, :, 0] = 0
    model.scaler.set_statistics(torch.zeros(48), torch.full((48,), 100.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = torch.mean((model(kp, scores) - target) ** 2)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_max_norm_bounds_weight_rows():
    model = FrameLifter(LifterConfig(kind="framewise", window=1, hidden_size=32))
    with torch.no_grad():
        model.head.weight.mul_(10)
    model.apply_max_norm(1.0)
    assert float(model.head.weight.norm(dim=1).max()) <= 1.0 + 1e-5


def test_missing_joints_give_finite_poses():
    model = build_model(LifterConfig(hidden_size=16)).eval()
    kp, scores = _inputs()
    scores[:, :, :8] = 0
    scores[1] = 0  # a window with nothing at all
    assert np.isfinite(model(kp, scores).detach().numpy()).all()
