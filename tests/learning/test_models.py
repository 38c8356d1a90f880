"""The MLP and the seed's transformer: shapes, architecture, and weights as numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurons.errors import InvalidRequestError
from neurons.learning.models import (
    ModelSpec,
    SequenceTransformer,
    build_model,
    get_arrays,
    set_arrays,
)
from tests.learning import one_torch_thread  # noqa: F401  (autouse)

DIGITS = ModelSpec("mlp", 64, 10, (8, 8))
DIGITS_TRANSFORMER = ModelSpec("transformer", 64, 10, (8, 8))


@pytest.mark.parametrize(
    ("spec", "batch"),
    [
        (DIGITS, 5),
        (ModelSpec("mlp", 4, 3, hidden_size=8), 1),
        (DIGITS_TRANSFORMER, 3),
        (ModelSpec("transformer", 4, 3, hidden_size=16, num_layers=1, num_heads=2), 2),
    ],
)
def test_forward_shapes(spec: ModelSpec, batch: int) -> None:
    model = build_model(spec)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(batch, spec.num_features))
    assert out.shape == (batch, spec.num_classes)
    assert torch.isfinite(out).all()


def test_transformer_is_the_seed_block() -> None:
    model = build_model(DIGITS_TRANSFORMER)
    assert isinstance(model, SequenceTransformer)
    assert (model.seq_len, model.token_dim) == (8, 8)  # 8 rows of 8 pixels
    assert model.embed.in_features == 8 and model.embed.out_features == 256
    assert len(model.encoder.layers) == 4
    for layer in model.encoder.layers:
        assert isinstance(layer, nn.TransformerEncoderLayer)
        assert layer.self_attn.num_heads == 8
        assert layer.self_attn.embed_dim == 256
        assert layer.dropout.p == pytest.approx(0.1)
    assert model.head.out_features == 10


def test_transformer_without_a_sequence_reads_one_feature_per_token() -> None:
    model = build_model(ModelSpec("transformer", 4, 3, hidden_size=16, num_heads=2))
    assert isinstance(model, SequenceTransformer)
    assert (model.seq_len, model.token_dim) == (4, 1)


def test_mlp_default_hidden_size() -> None:
    model = build_model(DIGITS)
    assert isinstance(model, nn.Sequential)
    first = model[0]
    assert isinstance(first, nn.Linear) and first.out_features == 64
    wide = build_model(ModelSpec("mlp", 64, 10, hidden_size=12))
    assert isinstance(wide, nn.Sequential)
    assert isinstance(wide[0], nn.Linear) and wide[0].out_features == 12


@pytest.mark.parametrize("spec", [DIGITS, DIGITS_TRANSFORMER])
def test_same_seed_same_weights(spec: ModelSpec) -> None:
    a, b = get_arrays(build_model(spec, 3)), get_arrays(build_model(spec, 3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = get_arrays(build_model(spec, 4))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("spec", [DIGITS, DIGITS_TRANSFORMER])
def test_arrays_round_trip(spec: ModelSpec) -> None:
    source, target = build_model(spec, 0), build_model(spec, 1)
    arrays = get_arrays(source)
    assert [a.shape for a in arrays] == [t.shape for t in source.state_dict().values()]
    assert all(isinstance(a, np.ndarray) for a in arrays)
    set_arrays(target, arrays)
    assert all(np.array_equal(x, y) for x, y in zip(arrays, get_arrays(target), strict=True))
    source.eval()
    target.eval()
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))
    # get_arrays copies: changing the model later does not change arrays already taken
    with torch.no_grad():
        next(source.parameters()).add_(1.0)
    assert np.array_equal(arrays[0], get_arrays(target)[0])


def test_set_arrays_rejects_the_wrong_count() -> None:
    model = build_model(DIGITS)
    with pytest.raises(InvalidRequestError, match="tensors"):
        set_arrays(model, get_arrays(model)[:-1])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ModelSpec("cnn", 64, 10), "unknown model type"),
        (lambda: build_model(ModelSpec("transformer", 64, 10, (8, 7))), "does not cover"),
    ],
)
def test_bad_specs(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(InvalidRequestError, match=message):
        make()
