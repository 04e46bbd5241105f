"""Built-in datasets: shipped, split reproducibly and stratified."""

import numpy as np
import pytest
import torch

from netzip_mlflow.data.builtin import load_builtin, stratified_split
from netzip_mlflow.errors import ConfigError


def test_mnist_split_is_seeded_and_stratified():
    a = load_builtin("mnist", test_fraction=0.2, seed=0)
    b = load_builtin("mnist", test_fraction=0.2, seed=0)
    assert len(a.train) == 4000 and len(a.test) == 1000
    assert a.input_shape == (1, 28, 28) and a.classes == [str(i) for i in range(10)]
    ya = a.test.tensors[1].numpy()
    assert np.bincount(ya).tolist() == [100] * 10
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    c = load_builtin("mnist", test_fraction=0.2, seed=1)
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])


def test_digits_and_limit():
    d = load_builtin("digits", test_fraction=0.25, seed=0, limit=200)
    assert len(d.train) + len(d.test) == pytest.approx(200, abs=10)
    assert d.input_shape == (1, 8, 8)
    x = d.train.tensors[0]
    assert abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, rel=1e-3)


def test_split_disjoint_and_complete():
    labels = np.repeat(np.arange(5), 20)
    train, test = stratified_split(labels, 0.3, seed=3)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 100


def test_unknown_dataset_names_field():
    with pytest.raises(ConfigError, match="data.name"):
        load_builtin("cifar")
