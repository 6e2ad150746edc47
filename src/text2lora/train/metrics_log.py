"""Metrics to ``metrics.jsonl`` (always) and tensorboard or wandb (only if installed and asked for); a PNG of
the loss curves at the end."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _row(line: str) -> dict[str, Any] | None:
    """One metrics.jsonl row, or None for a line a kill cut short (or anything else that is not a row)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None


class MetricLogger:
    def __init__(self, out_dir: Path, *, enabled: bool = True, truncate_after: int = 0, backend: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._backend = None
        if not enabled:
            return
        if truncate_after and self.path.exists():
            # a resumed run rewrites what came after its checkpoint
            kept = [line for line in self.path.read_text(errors="replace").splitlines()
                    if (row := _row(line)) is not None and row["step"] <= truncate_after]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif not truncate_after and self.path.exists():
            self.path.unlink()
        if backend == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._backend = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed; logging to metrics.jsonl only")
        elif backend == "wandb":
            try:
                import wandb

                self._backend = wandb.init(config=config or {}, dir=str(out_dir))
            except ImportError:
                log.warning("wandb is not installed; logging to metrics.jsonl only")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}, sort_keys=True) + "\n")
        if self._backend is not None:
            if hasattr(self._backend, "add_scalar"):
                for k, v in metrics.items():
                    self._backend.add_scalar(k, v, step)
            else:
                self._backend.log(metrics, step=step)

    def close(self) -> None:
        if self._backend is not None and hasattr(self._backend, "close"):
            self._backend.close()
        elif self._backend is not None and hasattr(self._backend, "finish"):
            self._backend.finish()


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [row for line in path.read_text(errors="replace").splitlines() if (row := _row(line)) is not None]


def plot_curves(out_dir: Path, filename: str = "loss.png") -> Path | None:
    """Training loss (raw and smoothed) and every validation loss against steps; below them, on a panel of their
    own, the generation-validation scores and copy rates (``gen_*``, in points) when the run logged them. Legends
    sit beside the axes, so no curve is hidden behind one."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no loss plot")
        return None
    rows = read_metrics(out_dir)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val_keys = sorted({k for r in rows for k in r if k.startswith("val_")})
    gen_keys = sorted({k for r in rows for k in r if k.startswith("gen_") and k != "gen_error"
                       and any(isinstance(x.get(k), (int, float)) for x in rows)})
    if gen_keys:
        fig, (ax, gen_ax) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=[3, 2])
    else:
        fig, ax = plt.subplots(figsize=(9, 4))
        gen_ax = None
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, alpha=0.3, linewidth=0.8, label="train loss")
        k = max(1, len(losses) // 20)
        if len(losses) > k:
            smooth = [sum(losses[max(0, i - k + 1): i + 1]) / len(losses[max(0, i - k + 1): i + 1]) for i in range(len(losses))]
            ax.plot(steps, smooth, label=f"train loss (mean of {k})")
    for key in val_keys:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts), marker="o", markersize=4, label=key)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    if gen_ax is not None:
        for key in gen_keys:
            pts = [(r["step"], 100 * r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            style = ":" if "copy" in key else "-"
            gen_ax.plot(*zip(*pts), linestyle=style, marker="x", markersize=5, label=key)
        gen_ax.set_ylabel("generation validation (points)")
        gen_ax.set_ylim(bottom=0)
        gen_ax.grid(alpha=0.3)
        gen_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
        gen_ax.set_xlabel("step")
    else:
        ax.set_xlabel("step")
    fig.tight_layout()
    path = Path(out_dir) / filename
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
