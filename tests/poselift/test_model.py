import numpy as np
import pytest
import torch

from poselift.checkpoint import load_checkpoint
from poselift.export import WindowHeads
from poselift.model import (
    FrameLifter,
    LayerNormLSTMCell,
    LifterConfig,
    Seq2SeqLifter,
    TemporalConvLifter,
    build_model,
    standardise_window,
)
from poselift.skeleton import flip_permutation


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


def _mirror(kp: torch.Tensor, sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A window's mirror image: x negated (screen-normalised), left and right joints swapped."""
    perm = torch.as_tensor(flip_permutation())
    return kp[:, :, perm] * torch.tensor([-1.0, 1.0]), sc[:, :, perm]


def _mirror_heads(heads: torch.Tensor) -> torch.Tensor:
    """`WindowHeads` rows (N, 2, 18, 3) mirrored back: x negated, joints swapped, the root row kept last."""
    rows = torch.cat([torch.as_tensor(flip_permutation()), torch.tensor([17])])
    return heads[:, :, rows] * torch.tensor([-1.0, 1.0, 1.0])


def _tcn(flip: bool) -> TemporalConvLifter:
    torch.manual_seed(0)
    config = LifterConfig(
        kind="tcn", window=9, hidden_size=32, dropout=0.0, filter_widths=(3, 3), test_time_flip=flip
    )
    return TemporalConvLifter(config).eval()


def test_test_time_flip_serves_the_mean_of_a_window_and_its_mirror_image():
    plain, flipping = _tcn(False), _tcn(True)
    flipping.load_state_dict(plain.state_dict())
    kp, sc = _inputs(b=4, w=9)
    sc[1, :, 3] = 0.0  # a missing joint travels with its twin
    with torch.inference_mode():
        expected = 0.5 * (WindowHeads(plain)(kp, sc) + _mirror_heads(WindowHeads(plain)(*_mirror(kp, sc))))
        served = WindowHeads(flipping)(kp, sc)
    torch.testing.assert_close(served, expected, rtol=0, atol=1e-4)
    assert not torch.allclose(served, WindowHeads(plain)(kp, sc), atol=1e-2)  # the flip changed something


def test_test_time_flip_makes_the_network_mirror_equivariant():
    """A mirrored video lifts to the mirrored poses (and root codes), which one network alone does not do."""
    kp, sc = _inputs(b=4, w=9, seed=1)
    for flip, equivariant in ((True, True), (False, False)):
        heads = WindowHeads(_tcn(flip))
        with torch.inference_mode():
            direct, of_mirror = heads(kp, sc), _mirror_heads(heads(*_mirror(kp, sc)))
        assert torch.allclose(direct, of_mirror, atol=1e-4) == equivariant


def test_the_shipped_tcn_flips_and_the_paper_models_do_not():
    assert load_checkpoint("tcn")[0].config.test_time_flip
    assert not any(load_checkpoint(name)[0].config.test_time_flip for name in ("seq2seq", "framewise"))


def test_test_time_flip_follows_the_model_to_another_device():
    """The flip's constants go where the input is: a flipping tcn on CUDA must not meet CPU tensors. The
    meta device stands in for a GPU here (shapes only); on a GPU machine the CUDA tests run the real thing."""
    model = _tcn(True)
    heads = WindowHeads(model)  # made while the model was on the CPU, as a runtime is before `.to`
    model.to("meta")
    out = heads(torch.zeros(2, 9, 17, 2, device="meta"), torch.ones(2, 9, 17, device="meta"))
    assert out.shape == (2, 2, 18, 3) and out.device.type == "meta"
