"""The original's early stopping, one home for every training loop (CNNs, fine-tune v2 and v3): keep the
state of the lowest loss (strict `<`), stop once `patience` epochs have passed without a lower one."""

from __future__ import annotations

from collections.abc import Callable


def cpu_copy(state_dict: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


class EarlyStopping:
    def __init__(self, patience: int):
        self.patience = patience
        self.loss: float | None = None
        self.epoch = -1
        self.state: dict | None = None

    def update(self, epoch: int, loss: float, snapshot: Callable[[], dict]) -> bool:
        """Record epoch `epoch`'s loss (`snapshot()` is the state to keep if it is the best); True = stop."""
        if self.loss is None or loss < self.loss:
            self.loss, self.epoch, self.state = loss, epoch, snapshot()
        return epoch - self.epoch >= self.patience

    def state_dict(self) -> dict:
        return {"best_loss": self.loss, "best_epoch": self.epoch, "best_state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.loss, self.epoch, self.state = state["best_loss"], state["best_epoch"], state["best_state"]
