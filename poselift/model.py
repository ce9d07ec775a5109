"""The lifting networks: a causal temporal convolution (the default), the paper's sequence-to-sequence
LN-LSTM and the frame-wise baseline.

All take a causal window of screen-normalised 2D keypoints with per-joint scores and return root-relative
3D poses in millimetres for every frame of the window:

    forward(keypoints_norm (B, W, J, 2), scores (B, W, J)) -> poses_mm (B, W, J, 3)

Inside, each window is centred and scaled by its own visible joints (so where the person stands in the image
and how large they appear do not matter), and the 3D output is predicted z-scored and de-normalised with
statistics stored as buffers, so a checkpoint's state dict carries them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from poselift.skeleton import NUM_JOINTS, ROOT

MODEL_KINDS = ("seq2seq", "framewise", "tcn")
MM_PER_UNIT_SIZE = 1000.0  # the tcn's root head predicts a person's size in metres per unit of 2D spread


@dataclass(frozen=True)
class LifterConfig:
    """Architecture of a lifter; stored whole in every checkpoint so the loader never guesses.

    Attributes:
        kind: "seq2seq" (Hossain & Little 2018), "framewise" (Martinez et al. 2017) or "tcn" (Pavllo et
            al. 2019, causal).
        window: frames per causal window T (1 for framewise; the product of `filter_widths` for tcn).
        hidden_size: LSTM state size (seq2seq), linear width (framewise) or channels (tcn).
        dropout: drop probability (the paper's keep 0.5 is dropout 0.5) for input/output/recurrent dropout.
        num_blocks: residual blocks of the frame-wise MLP.
        num_joints: joints in and out (h36m17).
        forget_bias: added to the LSTM forget gate pre-activation (1.0 as in the released code).
        filter_widths: the tcn's kernel width per level (receptive field = their product); () otherwise.
        frame_rate: the frame rate the model's windows are sampled at (input is resampled to it), or 0 for
            a model trained across frame rates that takes frames as they come; a tcn's default is 30.
        test_time_flip: serve the mean of each window's outputs and those of its mirror image (left and
            right swapped, x negated; VideoPose3D's test-time augmentation, `poselift.export.WindowHeads`).
            It doubles the network's work per window; training never flips (its augmentation does).
    """

    kind: str = "seq2seq"
    window: int = 5
    hidden_size: int = 1024
    dropout: float = 0.5
    num_blocks: int = 2
    num_joints: int = NUM_JOINTS
    forget_bias: float = 1.0
    filter_widths: tuple[int, ...] = ()
    frame_rate: float | None = None
    test_time_flip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "filter_widths", tuple(int(w) for w in self.filter_widths))  # JSON: a list
        if self.frame_rate is None:  # the mocap's rate, at which every tcn so far was trained
            object.__setattr__(self, "frame_rate", 30.0 if self.kind == "tcn" else 0.0)
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {MODEL_KINDS}")
        if self.kind == "framewise" and self.window != 1:
            raise ValueError("a framewise lifter has window 1")
        if self.kind == "tcn" and (
            not self.filter_widths
            or any(w < 2 for w in self.filter_widths)
            or self.window != math.prod(self.filter_widths)
        ):
            raise ValueError(f"a tcn lifter needs filter widths >= 2 whose product is its window: {self}")
        if self.window < 1 or self.hidden_size < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"invalid config {self}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def standardise_window(keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The features of `standardise_window_with_frame` alone: (B, W, J, 2), (B, W, J) -> (B, W, J * 3)."""
    return standardise_window_with_frame(keypoints_norm, scores)[0]


def standardise_window_with_frame(
    keypoints_norm: torch.Tensor, scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre and scale each window by its visible joints; append scores as a channel.

    Args:
        keypoints_norm: (B, W, J, 2) screen-normalised coordinates.
        scores: (B, W, J) confidences; a joint with score <= 0 is missing and its coordinates are ignored.

    Returns:
        (features (B, W, J * 3): (x, y) relative to the window's visible-joint centroid in units of their RMS
        spread, zero for missing joints, then the score; the centroid (B, 2) and the spread (B,), both in
        screen-normalised units).
    """
    present = (scores > 0).to(keypoints_norm.dtype).unsqueeze(-1)  # (B, W, J, 1)
    count = present.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)  # (B, 1, 1, 1)
    centre = (keypoints_norm * present).sum(dim=(1, 2), keepdim=True) / count  # (B, 1, 1, 2)
    offset = (keypoints_norm - centre) * present
    spread = torch.sqrt((offset**2).sum(dim=(1, 2, 3), keepdim=True) / count).clamp_min(1e-3)
    feats = torch.cat([offset / spread, scores.unsqueeze(-1)], dim=-1)  # (B, W, J, 3)
    return feats.flatten(2), centre[:, 0, 0], spread[:, 0, 0, 0]


def standardise_frames(
    keypoints_norm: torch.Tensor, scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tcn's input: each frame centred on its own visible joints, all scaled by the window's body size.

    A long window (81 frames is 2.7 s) sees a walking person cross metres of floor; centring and scaling
    the whole window at once (`standardise_window`) would shrink the pose by the distance travelled. Here
    each frame is centred on its own visible-joint centroid, the window is scaled by the mean of the frames'
    RMS spreads (the person's 2D size), and where each frame's centroid lies relative to the newest frame's
    is kept as two more channels, so the motion across the image is still seen.

    Args:
        keypoints_norm: (B, W, J, 2) screen-normalised coordinates.
        scores: (B, W, J) confidences; a joint with score <= 0 is missing and its coordinates are ignored.

    Returns:
        (features (B, W, J * 3 + 2): per joint (x, y) from its frame's centroid in units of the window's
        scale (0 for missing joints), then the J scores, then the frame's centroid relative to the newest
        frame's; the newest frame's centroid (B, 2) and the scale (B,), in screen-normalised units). A frame
        without any visible joint takes the window's mean centroid.
    """
    present = (scores > 0).to(keypoints_norm.dtype).unsqueeze(-1)  # (B, W, J, 1)
    count = present.sum(dim=2, keepdim=True)  # (B, W, 1, 1)
    has = (count > 0).to(keypoints_norm.dtype)
    centre = (keypoints_norm * present).sum(dim=2, keepdim=True) / count.clamp_min(1.0)  # (B, W, 1, 2)
    mean_centre = (centre * has).sum(dim=1, keepdim=True) / has.sum(dim=1, keepdim=True).clamp_min(1.0)
    centre = torch.where(has > 0, centre, mean_centre)
    offset = (keypoints_norm - centre) * present
    rms = torch.sqrt((offset**2).sum(dim=(2, 3), keepdim=True) / count.clamp_min(1.0))  # (B, W, 1, 1)
    scale = ((rms * has).sum(dim=1, keepdim=True) / has.sum(dim=1, keepdim=True).clamp_min(1.0)).clamp_min(
        1e-3
    )
    anchor = centre[:, -1:]  # (B, 1, 1, 2)
    motion = ((centre - anchor) / scale)[:, :, 0]  # (B, W, 2)
    feats = torch.cat([(offset / scale).flatten(2), scores, motion], dim=-1)
    return feats, anchor[:, 0, 0], scale[:, 0, 0, 0]


class _OutputScaler(nn.Module):
    """z-scores root-relative 3D poses (without the root) and back; statistics live in buffers."""

    out_mean_mm: torch.Tensor
    out_std_mm: torch.Tensor

    def __init__(self, num_joints: int) -> None:
        super().__init__()
        n_out = (num_joints - 1) * 3
        self.register_buffer("out_mean_mm", torch.zeros(n_out))
        self.register_buffer("out_std_mm", torch.ones(n_out))
        self.num_joints = num_joints

    def set_statistics(self, mean_mm: torch.Tensor, std_mm: torch.Tensor) -> None:
        self.out_mean_mm.copy_(mean_mm)
        self.out_std_mm.copy_(std_mm.clamp_min(1e-3))

    def to_mm(self, y_norm: torch.Tensor) -> torch.Tensor:
        """(B, W, (J-1)*3) z-scored -> (B, W, J, 3) mm with the root at the origin."""
        y = y_norm * self.out_std_mm + self.out_mean_mm
        y = y.unflatten(-1, (self.num_joints - 1, 3))
        root = torch.zeros_like(y[..., :1, :])
        return torch.cat([y[..., :ROOT, :], root, y[..., ROOT:, :]], dim=-2)

    def to_norm(self, poses_mm: torch.Tensor) -> torch.Tensor:
        """(..., J, 3) root-relative mm -> (..., (J-1)*3) z-scored."""
        keep = [j for j in range(self.num_joints) if j != ROOT]
        return (poses_mm[..., keep, :].flatten(-2) - self.out_mean_mm) / self.out_std_mm


class LayerNormLSTMCell(nn.Module):
    """LSTM cell with layer normalisation of each gate and of the cell state, and recurrent dropout.

    As in the authors' code (TensorFlow's LayerNormBasicLSTMCell): gates i, j, f, o are normalised
    separately, the forget gate gets a bias of `forget_bias`, dropout hits the candidate g = tanh(j)
    (Semeniuta et al. 2016) so the memory itself is never dropped, and the new cell state is normalised
    before the output tanh.
    """

    def __init__(self, input_size: int, hidden_size: int, dropout: float, forget_bias: float) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.forget_bias = forget_bias
        self.weight = nn.Linear(input_size + hidden_size, 4 * hidden_size, bias=False)
        self.gate_gain = nn.Parameter(torch.ones(4, hidden_size))
        self.gate_bias = nn.Parameter(torch.zeros(4, hidden_size))
        self.cell_norm = nn.LayerNorm(hidden_size)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x (B, I), state (h, c) each (B, H) -> new (h, c)."""
        h, c = state
        gates = self.weight(torch.cat([x, h], dim=-1)).unflatten(-1, (4, self.hidden_size))  # (B, 4, H)
        gates = F.layer_norm(gates, (self.hidden_size,)) * self.gate_gain + self.gate_bias
        i, j, f, o = gates.unbind(dim=-2)
        g = F.dropout(torch.tanh(j), self.dropout, self.training)
        c_new = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * g
        h_new = torch.tanh(self.cell_norm(c_new)) * torch.sigmoid(o)
        return h_new, c_new


class _WrappedCell(nn.Module):
    """The released code's wrapper: linear in -> dropout -> LN-LSTM -> dropout -> linear out."""

    def __init__(self, in_size: int, out_size: int, config: LifterConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.input_proj = nn.Linear(in_size, h)
        self.cell = LayerNormLSTMCell(h, h, config.dropout, config.forget_bias)
        self.output_proj = nn.Linear(h, out_size)
        self.dropout = config.dropout

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, in) -> (output (B, out), new state)."""
        z = F.dropout(self.input_proj(x), self.dropout, self.training)
        state = self.cell(z, state)
        out = self.output_proj(F.dropout(state[0], self.dropout, self.training))
        return out, state


def _xavier_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Seq2SeqLifter(nn.Module):
    """Hossain & Little (ECCV 2018): LN-LSTM encoder over the reversed window, residual LN-LSTM decoder.

    The encoder reads the window newest first; its final (h, c) starts the decoder. The decoder's first
    input is a START token of ones (z-scored output space); each step feeds back its own previous output
    and adds it to the step's output (residual), so it predicts the change from the previous frame:
    y_1 = 1 + f(1, s_0), y_k = y_{k-1} + f(y_{k-1}, s_{k-1}). It emits frames t-W+1 … t in time order.
    """

    def __init__(self, config: LifterConfig) -> None:
        super().__init__()
        if config.kind != "seq2seq":
            raise ValueError("Seq2SeqLifter needs a seq2seq config")
        self.config = config
        n_in, n_out = config.num_joints * 3, (config.num_joints - 1) * 3
        self.encoder = _WrappedCell(n_in, n_out, config)
        self.decoder = _WrappedCell(n_out, n_out, config)
        self.scaler = _OutputScaler(config.num_joints)
        _xavier_init(self)

    def forward_normalised(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """(B, W, J, 2), (B, W, J) -> z-scored root-relative poses without the root, (B, W, (J-1)*3)."""
        feats = standardise_window(keypoints_norm, scores)  # (B, W, J*3)
        batch, window = feats.shape[:2]
        h = feats.new_zeros(batch, self.config.hidden_size)
        state = (h, h)
        for t in reversed(range(window)):  # newest first
            _, state = self.encoder.step(feats[:, t], state)
        y = feats.new_ones(batch, (self.config.num_joints - 1) * 3)  # START token
        outputs = []
        for _ in range(window):
            delta, state = self.decoder.step(y, state)
            y = y + delta  # residual: predict the change from the previous frame
            outputs.append(y)
        return torch.stack(outputs, dim=1)

    def forward(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """(B, W, J, 2) normalised keypoints, (B, W, J) scores -> (B, W, J, 3) root-relative poses, mm."""
        return self.scaler.to_mm(self.forward_normalised(keypoints_norm, scores))


class FrameLifter(nn.Module):
    """Martinez et al. (ICCV 2017): linear -> residual blocks of (linear, batch norm, ReLU, dropout) x 2."""

    def __init__(self, config: LifterConfig) -> None:
        super().__init__()
        if config.kind != "framewise":
            raise ValueError("FrameLifter needs a framewise config")
        self.config = config
        width, p = config.hidden_size, config.dropout
        n_in, n_out = config.num_joints * 3, (config.num_joints - 1) * 3

        def unit() -> list[nn.Module]:
            return [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(p)]

        self.stem = nn.Sequential(nn.Linear(n_in, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(p))
        self.blocks = nn.ModuleList(nn.Sequential(*unit(), *unit()) for _ in range(config.num_blocks))
        self.head = nn.Linear(width, n_out)
        self.scaler = _OutputScaler(config.num_joints)
        _xavier_init(self)

    def forward_normalised(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """(B, W, J, 2), (B, W, J) -> (B, W, (J-1)*3) z-scored; each frame is lifted on its own."""
        batch, window = keypoints_norm.shape[:2]
        feats = standardise_window(keypoints_norm.flatten(0, 1)[:, None], scores.flatten(0, 1)[:, None])
        x = self.stem(feats[:, 0])
        for block in self.blocks:
            x = x + block(x)
        return self.head(x).unflatten(0, (batch, window))

    def forward(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """(B, W, J, 2) normalised keypoints, (B, W, J) scores -> (B, W, J, 3) root-relative poses, mm."""
        return self.scaler.to_mm(self.forward_normalised(keypoints_norm, scores))

    @torch.no_grad()
    def apply_max_norm(self, max_norm: float = 1.0) -> None:
        """Martinez et al.'s max-norm constraint: each unit's incoming weights get norm <= max_norm."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.renorm(m.weight, p=2, dim=0, maxnorm=max_norm))


def _group_frames(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, L, C) -> (B, L / width, width * C): consecutive frames side by side, oldest first."""
    return x.unflatten(1, (x.shape[1] // width, width)).flatten(2)


class TemporalConvLifter(nn.Module):
    """A causal dilated temporal convolution (Pavllo et al., CVPR 2019, "VideoPose3D") with extra heads.

    One window of W = prod(filter_widths) frames goes in; the trunk is VideoPose3D's single-output form
    (each convolution has stride = kernel width, so a window costs what one frame of the dilated network
    costs), with each block's residual taken from the *newest* frame of its group, so nothing in the
    window's future is used. From the trunk's one feature vector, four linear heads predict:

    - the pose of the window's newest frame t (the causal output, what sessions and streams return);
    - the pose of its centre frame t - (W-1)/2 (the offline output: that frame seen with (W-1)/2 frames on
      each side, VideoPose3D's symmetric model, used only when a whole clip may use the future);
    - a root code for each of those two frames: the pelvis' 2D position in screen-normalised coordinates
      and its depth divided by the normalised focal length (see `RootCodes`), from which `poselift.geometry`
      recovers the pelvis position in the camera frame, mm, given the camera's focal length.
    """

    def __init__(self, config: LifterConfig) -> None:
        super().__init__()
        if config.kind != "tcn":
            raise ValueError("TemporalConvLifter needs a tcn config")
        self.config = config
        widths, channels, p = config.filter_widths, config.hidden_size, config.dropout
        n_in, n_out = config.num_joints * 3 + 2, (config.num_joints - 1) * 3  # standardise_frames' channels
        # A convolution whose stride is its width is a linear map of each group of `w` frames: written as
        # nn.Linear over channels-last groups, it runs as one GEMM (~1.7x faster than Conv1d on CPU).
        self.expand = nn.Linear(n_in * widths[0], channels, bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.block_convs: nn.ModuleList = nn.ModuleList(
            nn.Linear(channels * w, channels, bias=False) for w in widths[1:]
        )
        self.block_bns: nn.ModuleList = nn.ModuleList(
            nn.BatchNorm1d(channels, momentum=0.1) for _ in widths[1:]
        )
        self.mix_convs: nn.ModuleList = nn.ModuleList(
            nn.Linear(channels, channels, bias=False) for _ in widths[1:]
        )
        self.mix_bns: nn.ModuleList = nn.ModuleList(
            nn.BatchNorm1d(channels, momentum=0.1) for _ in widths[1:]
        )
        self.drop = nn.Dropout(p)
        self.pose_newest = nn.Linear(channels, n_out)
        self.pose_centre = nn.Linear(channels, n_out)
        self.root_head = nn.Linear(channels, 6)  # (du, dv, log size) for the newest and the centre frame
        self.scaler = _OutputScaler(config.num_joints)

    def set_bn_momentum(self, momentum: float) -> None:
        """VideoPose3D decays batch-norm momentum during training (0.1 -> 0.001)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.momentum = momentum

    def _trunk(self, keypoints_norm: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, W, J, 2), (B, W, J) -> (features (B, C), window centre (B, 2), window spread (B,))."""
        feats, centre, spread = standardise_frames(keypoints_norm, scores)
        widths = self.config.filter_widths
        x = self._unit(self.expand, self.expand_bn, _group_frames(feats, widths[0]))  # (B, W / w0, C)
        for w, conv, bn, mix, mix_bn in zip(
            widths[1:], self.block_convs, self.block_bns, self.mix_convs, self.mix_bns, strict=True
        ):
            residual = x[:, w - 1 :: w]  # the newest frame of each group: causal
            x = residual + self._unit(mix, mix_bn, self._unit(conv, bn, _group_frames(x, w)))
        return x[:, -1], centre, spread

    def _unit(self, linear: nn.Module, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """linear -> batch norm over channels -> ReLU -> dropout, on (B, L, C_in) -> (B, L, C)."""
        y = linear(x)
        return self.drop(F.relu(bn(y.flatten(0, 1)).unflatten(0, y.shape[:2])))

    def forward_heads(
        self, keypoints_norm: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every head's output for a batch of windows.

        Returns:
            newest_mm (B, J, 3), centre_mm (B, J, 3): root-relative poses, mm;
            root_newest (B, 3), root_centre (B, 3): root codes (u, v, depth / focal), see `decode_root`.
        """
        h, centre, spread = self._trunk(keypoints_norm, scores)
        newest = self.scaler.to_mm(self.pose_newest(h)[:, None])[:, 0]
        mid = self.scaler.to_mm(self.pose_centre(h)[:, None])[:, 0]
        codes = self.root_head(h).unflatten(-1, (2, 3))  # (B, 2, 3)
        # u, v: the pelvis in screen-normalised coordinates, predicted relative to the newest frame's centroid
        # in units of the window's scale; depth/focal = exp(log size) / scale, i.e. the head predicts the
        # person's metric size per unit of 2D size, which does not depend on where or how far the camera is.
        uv = centre[:, None, :] + codes[..., :2] * spread[:, None, None]
        depth_per_focal = MM_PER_UNIT_SIZE * torch.exp(codes[..., 2].clamp(-6.0, 6.0)) / spread[:, None]
        roots = torch.cat([uv, depth_per_focal.unsqueeze(-1)], dim=-1)
        return newest, mid, roots[:, 0], roots[:, 1]

    def forward(
        self, keypoints_norm: torch.Tensor, scores: torch.Tensor, all_heads: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, W, J, 2), (B, W, J) -> (B, 1, J, 3): the newest frame's root-relative pose, mm; with
        `all_heads`, `forward_heads`' four outputs (training calls it so, through DistributedDataParallel)."""
        heads = self.forward_heads(keypoints_norm, scores)
        return heads if all_heads else heads[0][:, None]


LiftingNetwork = Seq2SeqLifter | FrameLifter | TemporalConvLifter


def build_model(config: LifterConfig) -> LiftingNetwork:
    """The network a config describes, freshly initialised."""
    if config.kind == "tcn":
        return TemporalConvLifter(config)
    return Seq2SeqLifter(config) if config.kind == "seq2seq" else FrameLifter(config)
