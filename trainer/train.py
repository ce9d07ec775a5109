"""The training loop: Adam with exponential decay, clipping, timed validation, best checkpoint, resume, DDP.

Reads top to bottom: set up (distributed, seeds, data, model, output statistics) -> loop (sample a batch of
augmented windows, loss, step, log; validate on the val rig every `val_every_s`) -> export the best.
Run under `torchrun --nproc-per-node N -m trainer ...` for data-parallel training (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from poselift.checkpoint import load_checkpoint, save_checkpoint
from poselift.lifter import Lifter
from poselift.losses import LossWeights, bone_lengths, joint_error, lifting_loss, root_error
from poselift.model import FrameLifter, LifterConfig, LiftingNetwork, TemporalConvLifter, build_model
from poselift.skeleton import H36M17_PARENTS
from trainer.augment import AugmentConfig, CausalAugmentConfig, CausalWindowSampler, WindowSampler
from trainer.evaluate import evaluate_lifters
from trainer.mocap import Mocap

MM_PER_M = 1000.0


@dataclass
class TrainConfig:
    """Everything a training run depends on (recorded in its checkpoints)."""

    model: LifterConfig
    train_data: str
    val_data: str | None
    out_dir: str
    batch_size: int = 256
    lr: float = 1e-3
    lr_decay: float = 0.96  # multiplied in every `lr_decay_steps` steps (smoothly, per step)
    lr_decay_steps: int = 1000
    grad_clip: float = 1.0
    max_steps: int = 1_000_000
    minutes: float | None = None  # wall-clock budget
    val_every_s: float = 300.0
    seed: int = 0
    threads: int | None = None
    export: str | None = None
    resume: bool = False
    stats_batches: int = 40
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # The tcn's recipe: more training sets beside `train_data` as (path, share of windows), `train_data`
    # keeping the rest; its own corruption; head weights; a learning rate decaying with the time budget.
    extra_data: tuple[tuple[str, float], ...] = ()
    causal_augment: CausalAugmentConfig = field(default_factory=CausalAugmentConfig)
    centre_weight: float = 1.0  # the offline (centre-frame) head
    root_weight: float = 0.2  # the pelvis head (relative error)
    bone_weight: float = 0.5  # |bone length error| (m), beside MPJPE (m)
    final_lr_ratio: float = 0.0  # > 0: lr decays exponentially to lr·ratio at the end of `minutes`
    init_from: str | None = None  # start from this checkpoint's weights (a fresh optimiser)
    # Processes drawing training windows ahead of the optimiser: the numpy sampler is about half of a tcn
    # step on CPU (py-spy of a run), and it runs beside the model's threads instead of between steps.
    loader_workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d["loss"].items()}
        return d


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        # TF32 GEMMs: the trunk's convolutions are matrix products; 10-bit mantissas are far below the noise
        # of 2D keypoints (`poselift evaluate` and serving run in full fp32).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", local)
    return torch.device("cpu")


class _Windows(torch.utils.data.IterableDataset[dict[str, np.ndarray]]):
    """Endless batches from a sampler built in each loader process with its own seeded generator."""

    def __init__(self, make_sampler: Any, seed: int, batch_size: int) -> None:
        self.make_sampler, self.seed, self.batch_size = make_sampler, seed, batch_size

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        sampler = self.make_sampler(np.random.default_rng([self.seed, info.id if info else 0]))
        while True:
            yield sampler.sample(self.batch_size)


def _batches(
    make_sampler: Any, rng: np.random.Generator, cfg: TrainConfig, rank: int, step: int
) -> Iterator[dict[str, np.ndarray]]:
    """Training batches: drawn in `cfg.loader_workers` processes (0: here, from `rng`).

    Loader processes are seeded from the run's seed, rank and starting step, so a resumed run draws new
    windows (not the first run's again); their generators' states are not saved.
    """
    if cfg.loader_workers <= 0:
        sampler = make_sampler(rng)
        while True:
            yield sampler.sample(cfg.batch_size)
    dataset = _Windows(make_sampler, cfg.seed * 1_000_003 + rank * 10_007 + step, cfg.batch_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=cfg.loader_workers, prefetch_factor=4, persistent_workers=True
    )
    yield from loader


def _batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """numpy arrays (or the tensors a DataLoader made of them) on `device`."""
    return {k: torch.as_tensor(v).to(device) for k, v in batch.items()}


def output_statistics(
    sampler: WindowSampler | CausalWindowSampler, batches: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (mm) of root-relative targets without the root, ((J-1)*3,), over augmented windows."""
    targets = np.concatenate([sampler.sample(batch_size)["target_mm"] for _ in range(batches)])
    flat = targets[:, :, 1:].reshape(-1, (targets.shape[2] - 1) * 3)
    return torch.from_numpy(flat.mean(axis=0)), torch.from_numpy(flat.std(axis=0))


def validate(model: LiftingNetwork, val: Mocap) -> dict[str, float]:
    """P1/MPJVE of the (eval-mode) model on the val rig, clean and at σ = 10 px; `score` selects the best."""
    conditions = (("σ=0", 0.0, 0.0), ("σ=10", 10.0, 0.0))
    res = evaluate_lifters({"m": Lifter(model)}, val, conditions=conditions, extras=False)
    m = res["overall"]["m"]  # type: ignore[index]
    out = {
        "P1_clean": m["σ=0"]["P1_mm"],
        "P1_noisy10": m["σ=10"]["P1_mm"],
        "MPJVE_clean": m["σ=0"]["MPJVE_mm_per_frame"],
        "MPJVE_noisy10": m["σ=10"]["MPJVE_mm_per_frame"],
    }
    out["score"] = round((out["P1_clean"] + out["P1_noisy10"]) / 2, 3)
    return out


def causal_loss(
    net: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The tcn's loss, in metres: MPJPE of the newest and the centre frame, bone-length error, pelvis error.

    MPJPE rather than MSE (VideoPose3D): it is the metric, and it does not let a few gross 2D mistakes
    dominate the gradient. The bone term charges each bone's length error directly, so the network is
    rewarded for one consistent skeleton rather than for a pose that is right on average.
    """
    newest, centre, root_newest, root_centre = net(batch["keypoints_norm"], batch["scores"], True)
    target = batch["target_mm"] / MM_PER_M  # (B, 2, J, 3)
    weight = batch["joint_weight"]
    pos = joint_error(newest / MM_PER_M, target[:, 0], weight)
    mid = joint_error(centre / MM_PER_M, target[:, 1], weight)
    exact_bones = weight[:, 1:] * weight[:, list(H36M17_PARENTS[1:])]
    bone = sum(
        (
            (bone_lengths(p / MM_PER_M, H36M17_PARENTS) - bone_lengths(t, H36M17_PARENTS)).abs() * exact_bones
        ).mean()
        for p, t in ((newest, target[:, 0]), (centre, target[:, 1]))
    )
    root = root_error(
        root_newest, batch["root_mm"][:, 0], batch["focal_norm"], batch["principal_norm"]
    ) + root_error(root_centre, batch["root_mm"][:, 1], batch["focal_norm"], batch["principal_norm"])
    loss = pos + cfg.centre_weight * mid + cfg.bone_weight * bone + cfg.root_weight * root
    parts = {
        "mpjpe_mm": float(pos.detach()) * MM_PER_M,
        "centre_mm": float(mid.detach()) * MM_PER_M,
        "root_rel": float(root.detach()) / 2,
    }
    return loss, parts


def _save_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    step: int,
    elapsed: float,
    best: float,
    rng: np.random.Generator,
) -> None:
    """Optimizer and progress, loadable with torch.load(weights_only=True) (the RNG state as JSON)."""
    state = {
        "optimizer": optimizer.state_dict(),
        "step": step,
        "elapsed_s": elapsed,
        "best": best,
        "rng": json.dumps(rng.bit_generator.state),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train a lifter; returns the best validation metrics (rank 0); checkpoints go to `cfg.out_dir`."""
    rank, world = _distributed()
    device = _device(rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + 1000 * rank)  # each rank sees different windows
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    train_data = Mocap.load(cfg.train_data)
    val_data = Mocap.load(cfg.val_data) if cfg.val_data else None
    causal = cfg.model.kind == "tcn"
    extra = [(Mocap.load(path), share) for path, share in cfg.extra_data]
    sources = [(train_data, 1.0 - sum(share for _, share in cfg.extra_data)), *extra]

    def make_sampler(generator: np.random.Generator) -> WindowSampler | CausalWindowSampler:
        if causal:
            return CausalWindowSampler(sources, cfg.model.window, cfg.causal_augment, generator)
        return WindowSampler(train_data, cfg.model.window, cfg.augment, generator)

    model = build_model(cfg.model)
    stats = output_statistics(make_sampler(np.random.default_rng(cfg.seed)), cfg.stats_batches, 512)
    model.scaler.set_statistics(*stats)
    if cfg.init_from and not (cfg.resume and (out / "last.safetensors").exists()):
        start, _, _ = load_checkpoint(cfg.init_from, "cpu")
        model.load_state_dict(start.state_dict())
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, elapsed0, best = 0, 0.0, math.inf
    if cfg.resume and (out / "last.safetensors").exists():
        resumed, _, _ = load_checkpoint(out / "last", device)
        model.load_state_dict(resumed.state_dict())
        state = torch.load(out / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed0, best = state["step"], state["elapsed_s"], state["best"]
        rng.bit_generator.state = json.loads(state["rng"])
    budget_s = (cfg.minutes or 0.0) * 60.0

    def lr_factor(s: int) -> float:
        if cfg.final_lr_ratio > 0 and budget_s > 0:  # by time: the budget, not the step count, is fixed
            return float(cfg.final_lr_ratio ** min((time.monotonic() - t_start) / budget_s, 1.0))
        return float(cfg.lr_decay ** ((s + step) / cfg.lr_decay_steps))

    batches = _batches(make_sampler, rng, cfg, rank, step)
    t_start = time.monotonic() - elapsed0
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    net: torch.nn.Module = DistributedDataParallel(model) if world > 1 else model
    meta: dict[str, Any] = {
        "training": {**cfg.to_dict(), "world_size": world, "device": str(device), "torch": torch.__version__},
        "training_data": train_data.describe(),
    }
    if extra:  # other training sets, with their licences as their files' folders document them
        meta["extra_training_data"] = [{**d.describe(), "share": share} for d, share in extra]
    log = (out / "metrics.jsonl").open("a") if rank == 0 else None

    def checkpoint(name: str, extra: dict[str, Any]) -> None:
        save_checkpoint(out / name, model, {**meta, **extra})

    next_val = time.monotonic() + cfg.val_every_s
    bar = tqdm(
        total=None if cfg.minutes else cfg.max_steps,
        initial=step,
        disable=rank != 0,
        dynamic_ncols=True,
        mininterval=5,
    )
    windows_seen, t_log = 0, time.monotonic()
    best_metrics: dict[str, Any] = {}
    while True:
        elapsed = time.monotonic() - t_start
        stop = step >= cfg.max_steps or (cfg.minutes is not None and elapsed >= cfg.minutes * 60)
        if world > 1:  # every rank stops at the same step
            flag = torch.tensor([float(stop)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if rank == 0 and (stop or time.monotonic() >= next_val) and val_data is not None:
            model.eval()
            metrics = validate(model, val_data)
            model.train()
            record = {"step": step, "time_s": round(elapsed, 1), "val": metrics}
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            bar.write(f"step {step} val {metrics}")
            if metrics["score"] < best:
                best = metrics["score"]
                best_metrics = {"step": step, **metrics}
                checkpoint("best", {"validation": {**best_metrics, "data": val_data.describe()}})
            checkpoint("last", {"step": step})
            _save_state(out / "state.pt", optimizer, step, elapsed, best, rng)
            next_val = time.monotonic() + cfg.val_every_s
        if stop:
            break

        model.train()
        batch = _batch_to(next(batches), device)
        if isinstance(model, TemporalConvLifter):
            if budget_s > 0:  # VideoPose3D's batch-norm momentum decay, 0.1 -> 0.001 over the run
                model.set_bn_momentum(0.1 * 0.01 ** min((time.monotonic() - t_start) / budget_s, 1.0))
            loss, parts = causal_loss(net, batch, cfg)
        else:
            pred_mm = net(batch["keypoints_norm"], batch["scores"])  # (B, W, J, 3)
            # Both terms in m²: the paper's mm-space loss, rescaled so gradient clipping has a sane threshold.
            loss, parts = lifting_loss(pred_mm / MM_PER_M, batch["target_mm"] / MM_PER_M, cfg.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        schedule.step()
        if isinstance(model, FrameLifter):
            model.apply_max_norm()
        step += 1
        windows_seen += cfg.batch_size
        bar.update(1)
        if rank == 0 and step % 100 == 0 and log:
            now = time.monotonic()
            rec = {
                "step": step,
                "time_s": round(now - t_start, 1),
                "loss": round(float(loss.detach()), 6),
                **({"rmse_mm": round(math.sqrt(parts["mse"]) * MM_PER_M, 2)} if "mse" in parts else {}),
                **{k: round(v, 5) for k, v in parts.items() if k != "mse"},
                "lr": schedule.get_last_lr()[0],
                "windows_per_s": round(windows_seen * world / (now - t_log), 1),
            }
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=rec["loss"], lr=f"{rec['lr']:.2e}")
            windows_seen, t_log = 0, now
    bar.close()

    if rank == 0:
        if val_data is None:  # nothing to select on: the final weights are the best we know
            checkpoint("best", {"step": step})
        if cfg.export:  # the best checkpoint as it is: weights and metadata files, copied
            export = Path(cfg.export).with_suffix("")
            export.parent.mkdir(parents=True, exist_ok=True)
            for suffix in (".safetensors", ".json"):
                shutil.copyfile((out / "best").with_suffix(suffix), export.with_suffix(suffix))
        if log:
            log.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return best_metrics
