"""The T2L hypernetwork: task embedding + layer and module embeddings -> MLP trunk -> LoRA A and B.

Three sizes differ only in the output head (picked by :func:`build_hypernetwork`):

* **L** -- one pass per (layer, module) emits A and B together: ``out = r*(d_in + d_out)``.
* **M** -- one head shared by A and B (``out = r*max(d_in, d_out)``, truncated); a learned A-code and B-code is
  added to the trunk before its second block to tell the two apart.
* **S** -- one rank row at a time (``out = max(d_in, d_out)``); 2r learned codes say which row of A or column of B.

With ``examples`` (:class:`ExampleConditioner`), k worked examples add a learned code to the projected
description before the trunk; its output layer starts at zero, so k = 0 is the description-only hypernetwork.

Every head keeps one bias row per code. With the head weight at zero (bias-HyperInit) the A rows hold a standard
LoRA init and the B rows are zero, so a fresh hypernetwork's adapter has dW = 0 and the adapted model *is* the
base model, while gradients still reach the head through B. (A single shared bias, as in M and S elsewhere, cannot
give dW = 0 at init.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from text2lora.config import ExamplesConfig, HyperNetConfig
from text2lora.errors import Text2LoraError


class ResidualMLP(nn.Module):
    """Pre-LayerNorm residual MLP block: ``x + W2 silu(W1 LN(x))``."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.drop(nn.functional.silu(self.fc1(self.norm(x)))))


class ExampleConditioner(nn.Module):
    """k encoded examples -> one additive code for the task projection.

    Each example is ``(input embedding, output embedding)``; a pair MLP reads ``[in, out, in * out]``, so which
    output goes with which input matters. The pair codes are pooled (masked mean, or attention with the description
    as the query) and projected by ``out``, which starts at zero: a fresh conditioner changes nothing, and a row
    with no examples gets exactly zero."""

    def __init__(self, encoder_dim: int, out_dim: int, config: ExamplesConfig) -> None:
        super().__init__()
        hidden = config.hidden
        self.pooling = config.pooling
        self.max_examples = config.max_examples
        self.pair = nn.Sequential(nn.Linear(3 * encoder_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.query = nn.Linear(encoder_dim, hidden) if self.pooling == "attention" else None
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, task_emb: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """task_emb (N, D), feats (N, K, 2, D), mask (N, K) bool -> (N, out_dim)."""
        e_in, e_out = feats[:, :, 0], feats[:, :, 1]
        h = self.pair(torch.cat([e_in, e_out, e_in * e_out], dim=-1))  # (N, K, hidden)
        present = mask.to(h.dtype)  # (N, K)
        if self.query is None:
            weights = present / present.sum(1, keepdim=True).clamp(min=1.0)
        else:
            scores = (h * self.query(task_emb)[:, None, :]).sum(-1) / math.sqrt(h.shape[-1])  # (N, K)
            scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=1).nan_to_num(0.0) * present  # rows without examples: all zero
        pooled = (weights[..., None] * h).sum(1)  # (N, hidden)
        return self.out(self.norm(pooled)) * present.amax(1, keepdim=True)


class LoraHead(nn.Module):
    """Per-module output projections ``y = W h + bias[code]``; subclasses say how ``y`` becomes A and B."""

    n_codes: int = 1

    def __init__(self, head_in: int, shapes: dict[str, tuple[int, int]], rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.shapes = dict(shapes)
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        for name, (d_in, d_out) in self.shapes.items():
            out = self.out_features(d_in, d_out)
            self.weight[name] = nn.Parameter(torch.zeros(out, head_in))
            self.bias[name] = nn.Parameter(torch.zeros(self.n_codes, out))

    def out_features(self, d_in: int, d_out: int) -> int:
        raise NotImplementedError

    def split(self, y: torch.Tensor, d_in: int, d_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` (N, L, n_codes, out) -> A (N, L, r, d_in), B (N, L, d_out, r)."""
        raise NotImplementedError

    def lora_bias(self, a_init: torch.Tensor, d_out: int) -> torch.Tensor:
        """The (n_codes, out) bias that makes the head emit A = ``a_init`` (r, d_in) and B = 0."""
        raise NotImplementedError

    def hyper_init(self, generator: torch.Generator | None = None) -> None:
        """bias-HyperInit: zero weights; bias = Kaiming-uniform A (as PEFT inits lora_A) and zero B."""
        with torch.no_grad():
            for name, (d_in, d_out) in self.shapes.items():
                self.weight[name].zero_()
                bound = 1.0 / math.sqrt(d_in)
                a_init = (torch.rand(self.rank, d_in, generator=generator) * 2 - 1) * bound
                self.bias[name].copy_(self.lora_bias(a_init, d_out))

    def forward(self, h: torch.Tensor, name: str) -> torch.Tensor:
        # h: (N, L, C, head_in) -> (N, L, C, out)
        return torch.matmul(h, self.weight[name].t()) + self.bias[name]


class HeadL(LoraHead):
    n_codes = 1

    def out_features(self, d_in: int, d_out: int) -> int:
        return self.rank * (d_in + d_out)

    def split(self, y, d_in, d_out):
        n, layers, r = y.shape[0], y.shape[1], self.rank
        a = y[:, :, 0, : r * d_in].reshape(n, layers, r, d_in)
        b = y[:, :, 0, r * d_in :].reshape(n, layers, d_out, r)
        return a, b

    def lora_bias(self, a_init, d_out):
        return torch.cat([a_init.flatten(), a_init.new_zeros(d_out * self.rank)])[None]


class HeadM(LoraHead):
    n_codes = 2  # code 0 -> A, code 1 -> B

    def out_features(self, d_in: int, d_out: int) -> int:
        return self.rank * max(d_in, d_out)

    def split(self, y, d_in, d_out):
        n, layers, r = y.shape[0], y.shape[1], self.rank
        a = y[:, :, 0, : r * d_in].reshape(n, layers, r, d_in)
        b = y[:, :, 1, : d_out * r].reshape(n, layers, d_out, r)
        return a, b

    def lora_bias(self, a_init, d_out):
        out = self.out_features(a_init.shape[1], d_out)
        bias = a_init.new_zeros(2, out)
        bias[0, : a_init.numel()] = a_init.flatten()
        return bias


class HeadS(LoraHead):
    """Codes 0..r-1 emit the rows of A, codes r..2r-1 the columns of B."""

    def __init__(self, head_in: int, shapes: dict[str, tuple[int, int]], rank: int) -> None:
        self.n_codes = 2 * rank
        super().__init__(head_in, shapes, rank)

    def out_features(self, d_in: int, d_out: int) -> int:
        return max(d_in, d_out)

    def split(self, y, d_in, d_out):
        r = self.rank
        a = y[:, :, :r, :d_in]  # (N, L, r, d_in)
        b = y[:, :, r:, :d_out].transpose(2, 3)  # (N, L, d_out, r)
        return a, b

    def lora_bias(self, a_init, d_out):
        r, d_in = a_init.shape
        bias = a_init.new_zeros(2 * r, max(d_in, d_out))
        bias[:r, :d_in] = a_init
        return bias


HEADS: dict[str, type[LoraHead]] = {"L": HeadL, "M": HeadM, "S": HeadS}


class HyperNetwork(nn.Module):
    """Maps task embeddings (N, D) to LoRA factors for every (module, layer).

    Takes sizes, not a model: ``shapes`` is ``{module: (d_in, d_out)}`` in target order.
    """

    def __init__(
        self,
        *,
        encoder_dim: int,
        n_layers: int,
        shapes: dict[str, tuple[int, int]],
        head: LoraHead,
        latent: int = 128,
        head_in: int = 512,
        n_blocks: int = 2,
        dropout: float = 0.05,
        examples: ExamplesConfig | None = None,
        offset: bool = False,
    ) -> None:
        super().__init__()
        self.encoder_dim = encoder_dim
        self.n_layers = n_layers
        self.module_names = tuple(shapes)
        self.shapes = dict(shapes)
        self.task_proj = nn.Linear(encoder_dim, latent // 2)
        self.task_norm = nn.LayerNorm(latent // 2)
        self.layer_emb = nn.Embedding(n_layers, latent // 4)
        self.layer_norm = nn.LayerNorm(latent // 4)
        self.module_emb = nn.Embedding(len(shapes), latent // 4)
        self.module_norm = nn.LayerNorm(latent // 4)
        self.mixer = nn.Sequential(
            nn.Linear(latent, 4 * latent), nn.SiLU(), nn.Dropout(dropout), nn.Linear(4 * latent, latent)
        )
        self.blocks = nn.ModuleList(ResidualMLP(latent, 4 * latent, dropout) for _ in range(n_blocks))
        self.codes = nn.Embedding(head.n_codes, latent) if head.n_codes > 1 else None
        self.code_norm = nn.LayerNorm(latent) if head.n_codes > 1 else None
        self.out_norm = nn.LayerNorm(latent)
        self.out_proj = nn.Linear(latent, head_in)
        self.head = head
        # last, so that the rest initialises exactly as the description-only network of the same seed
        self.examples = ExampleConditioner(encoder_dim, latent // 2, examples) if examples is not None else None
        self.offset_a = self.offset_b = None
        if offset:  # zero: a fresh network's adapters are unchanged until set_offset or training moves them
            r = head.rank
            self.offset_a = nn.ParameterDict({m: nn.Parameter(torch.zeros(n_layers, r, d_in))
                                              for m, (d_in, _) in shapes.items()})
            self.offset_b = nn.ParameterDict({m: nn.Parameter(torch.zeros(n_layers, d_out, r))
                                              for m, (_, d_out) in shapes.items()})

    @property
    def rank(self) -> int:
        return self.head.rank

    @property
    def max_examples(self) -> int:
        """How many examples one adapter can be generated from (0: description only)."""
        return self.examples.max_examples if self.examples is not None else 0

    def trunk(self, task_emb: torch.Tensor, examples: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(N, D) -> head input (N, M, L, C, head_in) for all M modules, L layers and C codes at once."""
        n, m, layers = task_emb.shape[0], len(self.module_names), self.n_layers
        t = self.task_proj(task_emb)  # (N, latent/2)
        if examples is not None and self.examples is not None:
            t = t + self.examples(task_emb, *examples)
        t = self.task_norm(t)
        lay = self.layer_norm(self.layer_emb.weight)  # (L, latent/4)
        mod = self.module_norm(self.module_emb.weight)  # (M, latent/4)
        x = torch.cat(
            [
                t[:, None, None, :].expand(n, m, layers, -1),
                mod[None, :, None, :].expand(n, m, layers, -1),
                lay[None, None, :, :].expand(n, m, layers, -1),
            ],
            dim=-1,
        )  # (N, M, L, latent)
        x = self.blocks[0](self.mixer(x))[:, :, :, None, :]  # (N, M, L, 1, latent)
        if self.codes is not None:
            x = x + self.code_norm(self.codes.weight)  # (N, M, L, C, latent)
        for block in self.blocks[1:]:
            x = block(x)
        return nn.functional.silu(self.out_proj(self.out_norm(x)))

    def forward(self, task_emb: torch.Tensor, examples: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(N, D) -> ``{module: (A (N, L, r, d_in), B (N, L, d_out, r))}``.

        ``examples``: optional ``(features (N, K, 2, D), mask (N, K))`` from
        :func:`text2lora.examples.encode_examples`."""
        if task_emb.dim() != 2 or task_emb.shape[1] != self.encoder_dim:
            raise ValueError(f"task embeddings must be (N, {self.encoder_dim}), got {tuple(task_emb.shape)}")
        if examples is not None:
            feats, mask = examples
            if feats.shape[:2] != mask.shape or feats.shape[0] != task_emb.shape[0] or feats.shape[2:] != (2, self.encoder_dim):
                raise ValueError(f"example features must be (N, K, 2, {self.encoder_dim}) with a (N, K) mask, got "
                                 f"{tuple(feats.shape)} and {tuple(mask.shape)}")
            if self.examples is None:
                if bool(mask.any()):
                    raise Text2LoraError("this checkpoint was trained on descriptions only; it cannot read examples")
                examples = None
        h = self.trunk(task_emb, examples)
        out = {}
        for i, name in enumerate(self.module_names):
            d_in, d_out = self.shapes[name]
            a, b = self.head.split(self.head(h[:, i], name), d_in, d_out)
            if self.offset_a is not None:
                a, b = a + self.offset_a[name], b + self.offset_b[name]
            out[name] = (a, b)
        return out

    def start_from(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Make every adapter this network generates equal ``factors`` (one LoRA: A (L, r, d_in), B (L, d_out, r)
        per module) before training: the offsets take the LoRA, and the heads emit zero (weights and biases
        zeroed), so training learns the task-specific part on top. Needs ``offset=True``."""
        if self.offset_a is None:
            raise Text2LoraError("starting from a LoRA needs hypernet.offset: true")
        with torch.no_grad():
            for name in self.module_names:
                a, b = factors[name]
                if a.shape != self.offset_a[name].shape or b.shape != self.offset_b[name].shape:
                    raise Text2LoraError(f"the LoRA's {name} has A {tuple(a.shape)} and B {tuple(b.shape)}; the "
                                         f"hypernetwork makes {tuple(self.offset_a[name].shape)} and "
                                         f"{tuple(self.offset_b[name].shape)}")
                self.offset_a[name].copy_(a)
                self.offset_b[name].copy_(b)
                self.head.weight[name].zero_()
                self.head.bias[name].zero_()


def build_hypernetwork(
    config: HyperNetConfig,
    *,
    encoder_dim: int,
    n_layers: int,
    shapes: dict[str, tuple[int, int]],
    seed: int | None = 0,
) -> HyperNetwork:
    """Turn a config and the target sizes into a hypernetwork with bias-HyperInit (deterministic for a seed)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        head = HEADS[config.variant](config.head_in, shapes, config.lora.rank)
        net = HyperNetwork(
            encoder_dim=encoder_dim,
            n_layers=n_layers,
            shapes=shapes,
            head=head,
            latent=config.latent,
            head_in=config.head_in,
            n_blocks=config.n_blocks,
            dropout=config.dropout,
            examples=config.examples,
            offset=config.offset,
        )
    head.hyper_init(generator)
    return net


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
