"""StyleGAN-FineTune-v3: the conditional "VAE" (encoder + v1's generator as decoder) as a `run_task` task.

As the original codes it (stylegan_generator_v3_gen_model.py): the encoder (5 reflect-padded stride-2
convs 3->32->64->128->128->256, 256 -> 8 px; `fc1` [flatten ++ labels] 16391 -> 512 + ELU;
`fc2_mu` / `fc2_var` [h ++ labels] 519 -> 512) gives mu and logvar; z = mu + eps exp(logvar / 2);
G(z, y) (train mode, no style mixing, stored noise) is scored by the property-score CNN and the
gender CNN (fold 0), both frozen; loss `C + G + 0.2 M + 0.05 V`. One AdamW: the generator's
parameters at lr 1e-4 (only `mapping.*` train) and the encoder's at 1e-5; cosine (T_max 10) per epoch.
After every epoch the original's controllability test runs on z's sampled from the last batches'
mu / logvar; an epoch where a z passes is checkpointed with that z.

Files (`artifacts.StyleganFinetuneV3`): the best epoch's generator and encoder, a checkpoint pair +
`test_z_vector` for every epoch in which a test z passed, the test table (every epoch's z's), the
per-step log (the original's columns), a loss plot and per-epoch sample grids (the first test z under
the test's 50 combinations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ohlora_core.cnn.data import as_image_bank, to_signed_float
from ohlora_core.cnn.models import GenderCNN, PropertyScoreCNN
from ohlora_core.early_stopping import EarlyStopping, cpu_copy
from ohlora_core.io import atomic_torch_save, atomic_write_csv, load_state_dict_strict
from ohlora_core.pictures import line_plot, save_png
from ohlora_core.progress import Progress
from ohlora_core.seeding import derive_seed

from . import protocol
from .loop import Z_DIM, TaskRun, freeze_all_but
from .restructure import conditional_generator
from .samples import SampleGrid
from .variants import CvaeVariant

if TYPE_CHECKING:
    from ohlora_core.artifacts import StyleganFinetuneV3

    from .training import TrainInputs

TEST_BATCH = 10  # label combinations per generator call in the per-epoch test
LOSS_NAMES = ("eyes", "hair_color", "hair_length", "mouth", "pose", "back_mean", "back_std")  # the original's log


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1, padding_mode="reflect"), nn.LeakyReLU()
    )


class CVAEEncoder(nn.Module):
    """(image [N, 3, 256, 256] in [-1, 1], labels [N, L]) -> (mu, logvar) [N, 512]; the original's
    state_dict keys (`conv1.0.weight`, ..., `fc1.0.weight`, `fc2_mu.weight`, `fc2_var.weight`)."""

    def __init__(self, label_size: int = 7, z_dim: int = Z_DIM):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = _conv(3, 32), _conv(32, 64), _conv(64, 128)
        self.conv4, self.conv5 = _conv(128, 128), _conv(128, 256)
        self.fc1 = nn.Sequential(nn.Linear(256 * 8 * 8 + label_size, 512), nn.ELU())
        self.fc2_mu = nn.Linear(512 + label_size, z_dim)
        self.fc2_var = nn.Linear(512 + label_size, z_dim)

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = conv(x)
        h = self.fc1(torch.cat([x.flatten(1), labels], dim=1))
        h = torch.cat([h, labels], dim=1)
        return self.fc2_mu(h), self.fc2_var(h)


def smoke_encoder(seed: int, label_size: int = 7) -> CVAEEncoder:
    """A fresh encoder as the original starts one (PyTorch's default initialisation), seeded."""
    from ohlora_core.seeding import seeded

    with seeded(derive_seed(seed, "cvae-encoder"), "cpu"):
        return CVAEEncoder(label_size)


@dataclass
class CvaeLoss:
    total: Tensor
    mse: Tensor  # C: mean of the loss labels' MSEs
    gender: Tensor  # G
    mu: Tensor  # M
    logvar: Tensor  # V
    per_label: dict[str, float] = field(default_factory=dict)  # the original's `{p}_mse` / `{p}_abs` log values


def cvae_loss(
    scores: Tensor, gender: Tensor, labels: Tensor, mu: Tensor, logvar: Tensor, variant: CvaeVariant
) -> CvaeLoss:
    """The original's `vae_loss_function` (its F.mse_loss calls, in its order)."""
    index = [variant.labels.index(p) for p in variant.loss_labels]
    mses = [F.mse_loss(scores[:, i : i + 1], labels[:, i : i + 1]) for i in index]
    mse = sum(mses[1:], mses[0]) / float(len(mses))
    g = F.mse_loss(gender, torch.ones_like(gender))
    m = F.mse_loss(mu, torch.zeros_like(mu))
    v = F.mse_loss(logvar, torch.zeros_like(logvar))
    total = mse + g + variant.mu_weight * m + variant.logvar_weight * v
    per_label = {}
    with torch.no_grad():
        for i, name in enumerate(LOSS_NAMES[: labels.shape[1]]):
            per_label[f"{name}_mse"] = float(F.mse_loss(scores[:, i : i + 1], labels[:, i : i + 1]))
            per_label[f"{name}_abs"] = float(F.l1_loss(scores[:, i : i + 1], labels[:, i : i + 1]))
    return CvaeLoss(total, mse, g, m, v, per_label)


def keep_z_columns(G, v1_state: dict) -> None:
    """The dense0 fix: v1's learnt weights for the z inputs carried into v3's wider dense0."""
    with torch.no_grad():
        old = v1_state["mapping.dense0.weight"]
        G.mapping.dense0.weight[:, : G.z_space_dim].copy_(old[:, : G.z_space_dim])


class CvaeTask:
    """v3 as a `run_task` task."""

    name = "v3"

    def __init__(
        self,
        G,
        encoder: CVAEEncoder,
        property_cnn: nn.Module,
        gender_cnn: nn.Module,
        images: Tensor,
        labels: np.ndarray,
        variant: CvaeVariant,
        device: str | torch.device,
        seed: int,
        log: Callable[[str], None] | None = None,
    ):
        self.variant, self.device, self.seed, self.log = variant, torch.device(device), seed, log
        self.G, self.encoder = G.to(self.device).train(), encoder.to(self.device).train()
        self.property_cnn, self.gender_cnn = property_cnn.to(self.device), gender_cnn.to(self.device)
        for cnn in (self.property_cnn, self.gender_cnn):
            cnn.train(not variant.cnn_eval)  # the original: train mode, dropout on
            cnn.requires_grad_(False)
        self.mapping = freeze_all_but(self.G, variant.g_trainable)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.mapping, "lr": variant.mapping_lr},
                {"params": list(self.encoder.parameters()), "lr": variant.encoder_lr},
            ],
            lr=variant.mapping_lr,
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=variant.cosine_t_max, eta_min=0
        )
        self.bank = as_image_bank(images, self.device)
        self.y = torch.as_tensor(np.asarray(labels, np.float32), device=self.device)
        if self.y.shape != (self.bank.shape[0], variant.label_size) or not torch.isfinite(self.y).all():
            raise ValueError(
                f"v3: expected finite labels [{self.bank.shape[0]}, {variant.label_size}], got {tuple(self.y.shape)}"
            )
        self.recent: list[tuple[Tensor, Tensor]] = []  # (mu[0], logvar[0]) of this epoch's last batches
        self.early_stopping = EarlyStopping(variant.patience)  # its state: the best epoch's G and encoder
        self.tests: list[dict] = []  # per epoch: pass table row
        self.z_table: list[dict] = []  # per epoch and test z: the original's result_each_z row
        self.last_test: tuple[list[protocol.ZResult], Tensor] | None = None  # this epoch's (results, z's)

    @classmethod
    def from_inputs(
        cls,
        variant: CvaeVariant,
        inputs: TrainInputs,
        *,
        seed: int,
        device: str | torch.device,
        samples_per_label: int,
        log: Callable[[str], None] | None,
    ) -> CvaeTask:
        """v1's generator as decoder (label embedding 24), both CNNs from their checkpoints, a seeded
        fresh encoder. `samples_per_label` is not used: v3's grid is the first test z under the test's labels."""
        G = conditional_generator(inputs.generator, variant, seed, source="stylegan_finetune_v1 generator")
        if variant.keep_v1_dense0:
            keep_z_columns(G, inputs.generator)
        cnns = []
        for model, state, what in (
            (PropertyScoreCNN(), inputs.property_cnn, "property_score_cnn checkpoint"),
            (GenderCNN(), inputs.gender_cnn, "gender CNN fold 0 checkpoint"),
        ):
            load_state_dict_strict(model, state, what)
            cnns.append(model)
        return cls(
            G, smoke_encoder(seed, variant.label_size), *cnns, inputs.images, inputs.labels, variant, device, seed, log
        )

    def batches(self, epoch: int) -> list[Tensor]:
        n, b = self.bank.shape[0], self.variant.batch_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, "v3-order", epoch)))
        return [order[i : i + b] for i in range(0, n, b)]

    def gender_input(self, image: Tensor) -> Tensor:
        return (image + 1) / 2 if self.variant.gender_input_01 else image  # the original fed [-1, 1]

    def forward(self, x: Tensor, y: Tensor, eps: Tensor) -> tuple[CvaeLoss, Tensor, Tensor]:
        mu, logvar = self.encoder(x, y)
        z = mu + eps * torch.exp(0.5 * logvar)
        image = self.G(z, y, style_mixing_prob=0.0)["image"]
        loss = cvae_loss(
            self.property_cnn(image), self.gender_cnn(self.gender_input(image)), y, mu, logvar, self.variant
        )
        return loss, mu, logvar

    def train_on(self, x: Tensor, y: Tensor, eps: Tensor) -> tuple[CvaeLoss, Tensor, Tensor]:
        """One optimisation step on images x ([-1, 1]), labels y and reparameterisation noise eps."""
        loss, mu, logvar = self.forward(x, y, eps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        self.optimizer.step()
        return loss, mu, logvar

    def step(self, batch: Tensor, generator: torch.Generator, epoch: int, idx: int) -> dict:
        batch = batch.to(self.device)
        x, y = to_signed_float(self.bank[batch]), self.y[batch]
        eps = torch.randn(len(batch), Z_DIM, generator=generator).to(self.device)
        loss, mu, logvar = self.train_on(x, y, eps)
        self.recent = (self.recent + [(mu[0].detach().cpu(), logvar[0].detach().cpu())])[-self.variant.test_z :]
        return {
            "total_loss": loss.total.item(),
            "mse": loss.mse.item(),
            "gender_loss": loss.gender.item(),
            "mu_loss": loss.mu.item(),
            "logvar_loss": loss.logvar.item(),
            "batch_size": len(batch),
            **loss.per_label,
        }

    def test_zs(self, epoch: int) -> Tensor:
        """z = mu + eps std from the last batches' first (mu, logvar), as the original's test."""
        mus = torch.stack([m for m, _ in self.recent])
        logvars = torch.stack([v for _, v in self.recent])
        eps = torch.randn(mus.shape, generator=torch.Generator().manual_seed(derive_seed(self.seed, "v3-test", epoch)))
        return mus + eps * torch.exp(0.5 * logvars)

    def run_test(self, zs: Tensor, name: str = "v3 test") -> list[protocol.ZResult]:
        """The controllability test for each z: its 50 label combinations, scored by the property CNN.
        Generated TEST_BATCH combinations at a time so that progress lines come while a z runs (one
        full-size z takes about a minute on a CPU; the original generated one image at a time)."""
        rows = torch.from_numpy(protocol.label_rows(self.variant.labels)).to(self.device)
        progress = Progress(len(zs) * len(rows), self.log, name, unit="images")
        if self.log:
            self.log(f"{name}: {len(zs)} z x {len(rows)} label combinations = {len(zs) * len(rows)} images")
        self.G.eval()
        try:
            with torch.no_grad():
                return [self._test_z(z, rows, progress) for z in zs.to(self.device)]
        finally:
            self.G.train()

    def _test_z(self, z: Tensor, rows: Tensor, progress: Progress) -> protocol.ZResult:
        scores = []
        for i in range(0, len(rows), TEST_BATCH):
            labels = rows[i : i + TEST_BATCH]
            image = self.G(z.expand(len(labels), -1), labels, trunc_psi=1.0, trunc_layers=0, randomize_noise=False)[
                "image"
            ]
            scores.append(self.property_cnn(image).float().cpu().numpy())
            progress.tick(len(labels))
        return protocol.score_z(np.concatenate(scores))

    def end_epoch(self, epoch: int, rows: list[dict]) -> bool:
        weights = np.array([r["batch_size"] for r in rows], np.float64)
        train_loss = float(np.dot([r["total_loss"] for r in rows], weights) / weights.sum())
        zs = self.test_zs(epoch)
        results = self.run_test(zs, f"v3 epoch {epoch} test")
        self._record_test(epoch, train_loss, results)
        self.last_test = (results, zs)
        stop = self.early_stopping.update(
            epoch,
            train_loss,
            lambda: {"G": cpu_copy(self.G.state_dict()), "encoder": cpu_copy(self.encoder.state_dict())},
        )
        self.recent = []
        if stop:
            return True
        self.scheduler.step()
        return False

    def _record_test(self, epoch: int, train_loss: float, results: list[protocol.ZResult]) -> None:
        passed = [i for i, r in enumerate(results) if r.passed]
        self.tests.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "passed_z": len(passed),
                "of": len(results),
                "first_passed": passed[0] if passed else -1,
                **{
                    f"best_{p}_corr": max((r.corr[p] for r in results), default=float("nan"))
                    for p in protocol.PROPERTIES
                },
            }
        )
        for i, r in enumerate(results):
            self.z_table.append(
                {
                    "epoch": epoch,
                    "z_idx": i,
                    "passed": "O" if r.passed else "X",
                    **{f"{p}_corr": r.corr[p] for p in protocol.PROPERTIES},
                    **{f"{p}_mse": r.mse[p] for p in protocol.PROPERTIES},
                    **{f"{p}_mae": r.mae[p] for p in protocol.PROPERTIES},
                }
            )

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "encoder": self.encoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "recent": [torch.stack(t) for t in self.recent],
            **self.early_stopping.state_dict(),
            "tests": self.tests,
            "z_table": self.z_table,
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.recent = [(t[0], t[1]) for t in state["recent"]]
        self.early_stopping.load_state_dict(state)
        self.tests = list(state["tests"])
        self.z_table = list(state["z_table"])

    # ---- the files `finetune.train` writes

    @property
    def best(self) -> tuple[int, float] | None:
        """(epoch, weighted train loss) of the generator and encoder kept; None before any epoch ended."""
        stop = self.early_stopping
        return None if stop.loss is None else (stop.epoch, stop.loss)

    def write_epoch(self, files: StyleganFinetuneV3, epoch: int) -> None:
        """The epoch's checkpoint pair and passing z if a test z passed (the original kept a checkpoint of
        every such epoch; here also that z), the sample grid, and the test table so far."""
        results, zs = self.last_test
        passed = [i for i, r in enumerate(results) if r.passed]
        if passed:
            atomic_torch_save(files.checkpoint(epoch, "gen"), self.G.state_dict())
            atomic_torch_save(files.checkpoint(epoch, "enc"), self.encoder.state_dict())
            atomic_write_csv(files.test_z_vector(epoch), pd.DataFrame(zs[passed[0]].numpy()[None, :]))
        rows = torch.tensor(self.variant.sample_labels, dtype=torch.float32).to(self.device)
        grid = SampleGrid(zs[:1].to(self.device).expand(len(rows), -1), rows, cols=10, thumb=96)
        grid.write(self.G, files.samples(epoch), self.log, f"v3 epoch {epoch} samples")
        atomic_write_csv(files.test_results, pd.DataFrame(self.z_table).round(4))

    def write_final(self, files: StyleganFinetuneV3, run: TaskRun) -> tuple[pd.DataFrame, list[Path]]:
        """The final files; returns the log as written and every output (per-epoch ones included, also
        those an attempt before a resume wrote)."""
        log = pd.DataFrame(run.log).drop(columns=["batch_size"])
        table = log.round(4)
        atomic_write_csv(files.train_log, table, index=True)
        best = self.early_stopping.state or {"G": self.G.state_dict(), "encoder": self.encoder.state_dict()}
        atomic_torch_save(files.generator, best["G"])
        atomic_torch_save(files.encoder, best["encoder"])
        save_png(
            line_plot({"total": log["total_loss"], "C": log["mse"], "G": log["gender_loss"]}, title="fine-tune v3"),
            files.loss_plot,
        )
        outputs = [files.generator, files.encoder, files.train_log, files.test_results, files.loss_plot]
        for row in self.tests:
            if row["passed_z"]:
                outputs += [
                    files.checkpoint(row["epoch"], "gen"),
                    files.checkpoint(row["epoch"], "enc"),
                    files.test_z_vector(row["epoch"]),
                ]
        return table, outputs + [files.samples(row["epoch"]) for row in self.tests]

    def summary(self, table: pd.DataFrame) -> dict:
        passing = [row["epoch"] for row in self.tests if row["passed_z"]]
        return {
            "steps": len(table),
            "final_total_loss": float(table["total_loss"].iloc[-1]),
            "epochs_with_a_passing_z": passing,
        }
