"""FaceXFormer face parser (Narayan et al., `Kartik-3004/facexformer`), parsing path only.

The module tree mirrors the official model so that its checkpoint
(`checkpoint['state_dict_backbone']`, every task head included) loads with
strict key matching. Only the parsing output is computed:

* Swin-B (torchvision, `weights=None`) stages 1-4 -> per-stage Linear to 256
  channels -> bilinear up to 56x56 -> concat (deepest stage first) -> 1x1 conv.
* A two-way transformer (SAM-style, 2 layers) between the 56x56 image
  embedding and 18 learned tokens (7 task tokens + 11 mask tokens). All 18
  tokens go through it because they attend to each other and to the image, so
  they all influence the mask tokens and the refined image embedding.
* Mask logits = hyper-MLP(mask tokens) . (2x stride-2 transposed-conv upscaling
  of the embedding to 224x224).

Skipped because they provably cannot change the parsing logits: the Swin head
norm/pool (its output is discarded by the official forward) and the 7 task
heads (MLPs that read only their own token). Their weights are kept for loading.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ohlora_core.io import load_checkpoint, load_state_dict_strict, state_dict_in

NUM_CLASSES = 11
INPUT_SIZE = 224
EMBED_DIM = 256
STAGE_CHANNELS = (128, 256, 512, 1024)
STAGE_INDICES = (1, 3, 5, 7)  # Swin `features` entries that end stages 1..4
# Order of the single task tokens in the official decoder (state-dict names).
TASK_TOKENS = ("landmarks", "pose", "attribute", "visibility", "age", "gender", "race")
TASK_HEAD_OUT = {"landmarks": 136, "pose": 3, "attribute": 40, "visibility": 29, "age": 8, "gender": 2, "race": 5}
CHECKPOINT_KEY = "state_dict_backbone"


class MLP(nn.Module):
    """Linear stack with ReLU between layers (none after the last)."""

    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int, depth: int) -> None:
        super().__init__()
        dims = [dim_in] + [dim_hidden] * (depth - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (biased variance)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(1, keepdim=True)
        var = centred.pow(2).mean(1, keepdim=True)
        x = centred / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError(f"{heads} heads do not divide width {inner}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: Tensor) -> Tensor:  # (B, N, C) -> (B, heads, N, C/heads)
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        weights = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), dim=-1)
        out = weights @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image, MLP, image->token (each + post-norm)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, first: bool) -> None:
        super().__init__()
        self.first = first  # first block: no positional term in self-attention, no residual
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, heads, downsample=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, heads, downsample=2)

    def forward(self, tokens: Tensor, image: Tensor, token_pe: Tensor, image_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.first:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)

        tokens = self.norm2(tokens + self.cross_attn_token_to_image(tokens + token_pe, image + image_pe, image))
        tokens = self.norm3(tokens + self.mlp(tokens))

        image = self.norm4(image + self.cross_attn_image_to_token(image + image_pe, tokens + token_pe, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = EMBED_DIM, heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, first=(i == 0)) for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, heads, downsample=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """image, image_pe: (B, C, H, W); tokens: (B, N, C) -> (tokens, image as (B, HW, C))."""
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        token_pe = tokens
        for layer in self.layers:
            tokens, image = layer(tokens, image, token_pe, image_pe)
        tokens = tokens + self.final_attn_token_to_image(tokens + token_pe, image + image_pe, image)
        return self.norm_final_attn(tokens), image


class FaceDecoder(nn.Module):
    def __init__(self, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(dim=dim)
        for name in TASK_TOKENS:
            setattr(self, f"{name}_token", nn.Embedding(1, dim))
        self.mask_tokens = nn.Embedding(NUM_CLASSES, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            ChannelLayerNorm(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetwork_mlps = MLP(dim, dim, dim // 8, 3)
        # Task heads: never evaluated by `parse`, present so official checkpoints load strictly.
        for name, width in TASK_HEAD_OUT.items():
            setattr(self, f"{name}_prediction_head", MLP(dim, dim, width, 3))

    def mask_logits(self, embedding: Tensor, embedding_pe: Tensor) -> Tensor:
        """(B, C, 56, 56) embedding + (1, C, 56, 56) positions -> (B, 11, 224, 224) logits."""
        b, c, h, w = embedding.shape
        weights = [getattr(self, f"{name}_token").weight for name in TASK_TOKENS] + [self.mask_tokens.weight]
        tokens = torch.cat(weights, dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens, image = self.transformer(embedding, embedding_pe.expand(b, -1, -1, -1), tokens)
        mask_tokens = tokens[:, len(TASK_TOKENS) :, :]
        upscaled = self.output_upscaling(image.transpose(1, 2).reshape(b, c, h, w))
        hyper = self.output_hypernetwork_mlps(mask_tokens)  # (B, 11, 32)
        b, c, h, w = upscaled.shape
        return (hyper @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)


class RandomFourierPositions(nn.Module):
    """Positional encoding with fixed random spatial frequencies (a checkpoint buffer)."""

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def forward(self, h: int, w: int) -> Tensor:
        """(C, h, w) encoding of pixel centres normalised to [0, 1]."""
        m = self.positional_encoding_gaussian_matrix
        ones = torch.ones(h, w, device=m.device, dtype=torch.float32)
        ys = (ones.cumsum(0) - 0.5) / h
        xs = (ones.cumsum(1) - 0.5) / w
        coords = (2 * torch.stack([xs, ys], dim=-1) - 1) @ m
        coords = 2 * math.pi * coords
        return torch.cat([coords.sin(), coords.cos()], dim=-1).permute(2, 0, 1)


class StageProjection(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, EMBED_DIM)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) channels-last stage output -> (B, 256, H, W)."""
        b, h, w, _ = x.shape
        return self.proj(x.reshape(b, h * w, -1)).transpose(1, 2).reshape(b, EMBED_DIM, h, w)


class FaceXFormer(nn.Module):
    """FaceXFormer with the official state-dict layout; `parse` gives face-parsing logits."""

    def __init__(self) -> None:
        super().__init__()
        swin = torchvision.models.swin_b(weights=None)
        # Index 0 = features, 1 = final norm (unused, kept for the keys), like the official Sequential.
        self.backbone = nn.Sequential(swin.features, swin.norm)
        self.pe_layer = RandomFourierPositions(EMBED_DIM // 2)
        self.face_decoder = FaceDecoder()
        self.linear_c = nn.ModuleList(StageProjection(c) for c in STAGE_CHANNELS)
        self.linear_fuse = nn.Conv2d(EMBED_DIM * len(STAGE_CHANNELS), EMBED_DIM, kernel_size=1, bias=False)

    def embed(self, x: Tensor) -> Tensor:
        """(B, 3, 224, 224) normalised images -> fused (B, 256, 56, 56) embedding."""
        stages = []
        for i, block in enumerate(self.backbone[0][: STAGE_INDICES[-1] + 1]):
            x = block(x)
            if i in STAGE_INDICES:
                stages.append(x)
        size = stages[0].shape[1:3]
        projected = [
            F.interpolate(proj(s), size=size, mode="bilinear", align_corners=False)
            for s, proj in zip(stages, self.linear_c)
        ]
        return self.linear_fuse(torch.cat(projected[::-1], dim=1))

    def parse(self, x: Tensor) -> Tensor:
        """Face-parsing logits, (B, 3, 224, 224) ImageNet-normalised -> (B, 11, 224, 224)."""
        if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"FaceXFormer.parse expects (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}")
        embedding = self.embed(x)
        pe = self.pe_layer(*embedding.shape[2:]).unsqueeze(0)
        return self.face_decoder.mask_logits(embedding, pe)

    forward = parse

    @torch.no_grad()
    def parse_labels(self, x: Tensor) -> Tensor:
        """Label maps (B, 224, 224) int64: argmax of the softmax, as the original did
        (softmax first, so float ties after softmax resolve like the original)."""
        return self.parse(x).softmax(dim=1).argmax(dim=1)


def load_facexformer(path: str | os.PathLike, device: str | torch.device = "cpu") -> FaceXFormer:
    """Build FaceXFormer and load `checkpoint['state_dict_backbone']` (or a bare state
    dict) from `path` strictly; returns the model in eval mode on `device`."""
    checkpoint = load_checkpoint(path)
    state_dict = state_dict_in(
        checkpoint,
        str(path),
        CHECKPOINT_KEY,
        f"a FaceXFormer checkpoint with key '{CHECKPOINT_KEY}' or a bare state_dict",
    )
    source = f"{path} ['{CHECKPOINT_KEY}']" if CHECKPOINT_KEY in checkpoint else str(path)
    # Built on the meta device: no 88M-parameter random init (the original paid for a full
    # init + ImageNet download per image). `load_state_dict_strict` checks names and shapes
    # (its own copy into meta tensors is a no-op); `assign=True` then adopts the tensors.
    with torch.device("meta"):
        model = FaceXFormer()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        load_state_dict_strict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.to(device=device, dtype=torch.float32).eval()


def smoke_facexformer(seed: int = 0) -> FaceXFormer:
    """FaceXFormer with deterministic random weights (eval mode, CPU).

    Default PyTorch/torchvision initialisation drawn from a private RNG seeded
    with `seed` (the global RNG state is left untouched); vectors (biases, norm
    affines) then get N(0, 0.02) noise so that no parameter keeps a constant
    default value, which makes the parity check sensitive to every weight.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FaceXFormer()
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:
                    p.add_(0.02 * torch.randn(p.shape))
    return model.eval()
