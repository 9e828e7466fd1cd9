"""kNN, linear probes and label fractions against plain references."""
import math

import pytest
import torch

from sslcourse.evaluation import knn_predict, label_subset, linear_probe


def knn_reference(train_f, train_y, test_f, k, tau):
    """Wu et al. 2018: the k most cosine-similar training samples vote with weight exp(s / tau)."""
    predictions = []
    for q in test_f:
        sims = [float(q @ t) / (q.norm().item() * t.norm().item()) for t in train_f]
        nearest = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = {}
        for i in nearest:
            votes[int(train_y[i])] = votes.get(int(train_y[i]), 0.0) + math.exp(sims[i] / tau)
        predictions.append(max(votes, key=votes.get))
    return torch.tensor(predictions)


@pytest.mark.parametrize("k,tau", [(1, 0.07), (5, 0.07), (20, 0.5), (500, 0.1)])
def test_weighted_knn_matches_reference(k, tau):
    g = torch.Generator().manual_seed(k)
    train_f, test_f = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g)
    assert torch.equal(knn_predict(train_f, train_y, test_f, k, tau, chunk=7),
                       knn_reference(train_f, train_y, test_f, min(k, 60), tau))


def test_label_subset_is_balanced_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)
    one_pct = label_subset(labels, 0.01, seed=0)
    assert torch.bincount(labels[one_pct]).tolist() == [1] * 10
    assert torch.equal(one_pct, label_subset(labels, 0.01, seed=0))
    assert not torch.equal(one_pct, label_subset(labels, 0.01, seed=1))
    assert len(label_subset(labels, 1.0)) == 1000
    with pytest.raises(ValueError, match="fraction must be in"):
        label_subset(labels, 0.0)


def test_linear_probe_separates_separable_features_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (400,), generator=g)
    centres = torch.randn(5, 16, generator=g) * 4
    features = centres[labels] + torch.randn(400, 16, generator=g)
    assert linear_probe(features[:300], labels[:300], features[300:], labels[300:]) > 0.95
    noise = torch.randn(400, 16, generator=g)
    assert linear_probe(noise[:300], labels[:300], noise[300:], labels[300:]) < 0.4
