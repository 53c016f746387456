"""Length-bucketed batching, deterministic crops, sharding and resumable positions."""

from __future__ import annotations

import numpy as np
import torch

from train_data import make_corpus
from w2vcli.data.dataset import AudioDataset, BucketBatchSampler, collate, make_batches, make_loader
from w2vcli.data.manifest import read_manifest


def test_batches_fill_max_tokens_and_cover_everything():
    sizes = np.random.default_rng(0).integers(1000, 20000, size=200)
    batches = make_batches(sizes, max_tokens=60000, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) * sizes[b].max() <= 60000
    # length-sorted: batches hold similar lengths
    assert np.mean([sizes[b].max() - sizes[b].min() for b in batches]) < 1000
    assert make_batches(sizes, 60000, seed=3) == batches


def test_epoch_order_is_seeded_sharded_and_resumable():
    sizes = np.arange(100, 2100, 10)
    full = BucketBatchSampler(sizes, 1000, seed=1)
    e1, e2 = full.epoch_batches(1), full.epoch_batches(2)
    assert e1 != e2 and sorted(map(tuple, e1)) == sorted(map(tuple, e2))
    assert BucketBatchSampler(sizes, 1000, seed=1).epoch_batches(1) == e1
    r0 = BucketBatchSampler(sizes, 1000, seed=1, rank=0, world_size=2).epoch_batches(1)
    r1 = BucketBatchSampler(sizes, 1000, seed=1, rank=1, world_size=2).epoch_batches(1)
    assert len(r0) == len(r1) and not {tuple(b) for b in r0} & {tuple(b) for b in r1}
    full.set_position(2, 3)
    assert [[i for _, i in b] for b in full] == e2[3:]


def test_crops_depend_on_seed_epoch_and_index_only(tmp_path):
    rows = read_manifest(make_corpus(tmp_path, "c", 4, seed=0))
    ds = AudioDataset(rows, max_sample_size=4000, seed=7)
    a, b = ds[(1, 2)]["wav"], AudioDataset(rows, max_sample_size=4000, seed=7)[(1, 2)]["wav"]
    assert len(a) == 4000 and torch.equal(a, b)
    assert not torch.equal(a, ds[(2, 2)]["wav"])
    # with workers the batches are the same as without
    sampler = BucketBatchSampler(ds.sizes, 8000, seed=0)
    plain = [x.wav for x in make_loader(ds, sampler, num_workers=0)]
    workers = [x.wav for x in make_loader(ds, sampler, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(plain, workers))


def test_collate_pads_and_keeps_lengths():
    items = [{"index": 0, "id": "a", "wav": torch.ones(5), "target": torch.tensor([5, 6])},
             {"index": 1, "id": "b", "wav": torch.ones(3), "target": torch.tensor([7])}]
    batch = collate(items)
    assert batch.wav.shape == (2, 5) and batch.wav[1, 3:].abs().sum() == 0
    assert batch.lengths.tolist() == [5, 3] and batch.target_lengths.tolist() == [2, 1]
    assert batch.targets.tolist() == [[5, 6], [7, 0]]
