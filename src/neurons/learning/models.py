"""The models a learning node trains: an MLP and the seed's small transformer.

``transformer`` is seed 003's model block (hidden 256, 4 layers, 8 heads, dropout 0.1). It
reads an example as a sequence of tokens: digits' 8×8 images become 8 rows of 8 pixels (a
sequence task on real data); datasets without a natural sequence feed one feature per token.
The ``mlp`` takes the block's ``hidden_size`` (64) and ``num_layers`` hidden layers (1);
``num_heads`` and ``dropout`` shape the transformer only.

Parameters travel between nodes as a list of numpy arrays in ``state_dict`` order
(:func:`get_arrays` / :func:`set_arrays`), which is also what Flower's ``ArrayRecord`` holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neurons.errors import InvalidRequestError
from neurons.learning.choices import MODEL_TYPES, shape_problems

__all__ = [
    "MODEL_TYPES",
    "ModelSpec",
    "SequenceTransformer",
    "build_model",
    "get_arrays",
    "set_arrays",
]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build the same network on every node."""

    model_type: str
    num_features: int
    num_classes: int
    sequence_shape: tuple[int, int] | None = None
    hidden_size: int = 0  # 0: the type's default (mlp 64, transformer 256)
    num_layers: int = 0  # 0: the type's default (mlp 1 hidden layer, transformer 4)
    num_heads: int = 8
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise InvalidRequestError(
                f"unknown model type {self.model_type!r}; choose one of {', '.join(MODEL_TYPES)}"
            )
        problems = shape_problems(
            self.model_type, self.hidden_size, self.num_layers, self.num_heads, self.dropout
        )
        if problems:
            raise InvalidRequestError("invalid model: " + "; ".join(problems))


class SequenceTransformer(nn.Module):
    """Token projection + learned positions → TransformerEncoder → mean pool → classes."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        seq_len, token_dim = spec.sequence_shape or (spec.num_features, 1)
        if seq_len * token_dim != spec.num_features:
            raise InvalidRequestError(
                f"sequence shape {seq_len}x{token_dim} does not cover {spec.num_features} features"
            )
        hidden = spec.hidden_size or 256
        self.seq_len, self.token_dim = seq_len, token_dim
        self.embed = nn.Linear(token_dim, hidden)
        self.position = nn.Parameter(torch.zeros(1, seq_len, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden,
            spec.num_heads,
            dim_feedforward=hidden * 2,
            dropout=spec.dropout,
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor only matters for padded batches, and warns with norm_first.
        self.encoder = nn.TransformerEncoder(
            layer, spec.num_layers or 4, enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, spec.num_classes)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(-1, self.seq_len, self.token_dim)) + self.position
        encoded = self.encoder(tokens)
        pooled: torch.Tensor = self.norm(encoded.mean(dim=1))
        logits: torch.Tensor = self.head(pooled)
        return logits


def build_model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """A freshly initialised network; the same ``seed`` gives the same weights everywhere."""
    torch.manual_seed(seed)
    if spec.model_type == "transformer":
        return SequenceTransformer(spec)
    hidden = spec.hidden_size or 64
    layers: list[nn.Module] = []
    width = spec.num_features
    for _ in range(spec.num_layers or 1):  # heads and dropout shape the transformer only
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, spec.num_classes))


def get_arrays(model: nn.Module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def set_arrays(model: nn.Module, arrays: list[np.ndarray]) -> None:
    keys = list(model.state_dict().keys())
    if len(keys) != len(arrays):
        raise InvalidRequestError(f"model has {len(keys)} tensors, update carries {len(arrays)}")
    state = {k: torch.as_tensor(np.asarray(a)) for k, a in zip(keys, arrays, strict=True)}
    model.load_state_dict(state, strict=True)
