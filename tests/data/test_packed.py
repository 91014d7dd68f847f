"""The packed stream: the permutation, the shard format, building packs (processes, atomicity, locking), and reading
them by rank and worker with constant-time resume."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aunet.data.packed import PackedBatches, window_indices
from aunet.data.packer import build_pack, encode_chunk, find_pack, pack_key, packs_root
from aunet.data.permutation import permute, round_keys
from aunet.data.shards import Pack, token_dtype
from aunet.errors import StateError
from aunet.tokenizers.encoders import ByteEncoder

DOCS = [b"The cat sat on the mat. ", "naïve café, 12345 words\n".encode(), b"a b c d e f g h i j k l m n o p",
        b"x" * 40, "中文 text and more text".encode(), b"the end of the small corpus"] * 7


def stream_of(docs: list[bytes], encoder) -> tuple[np.ndarray, np.ndarray | None]:
    tokens, levels, _ = encode_chunk(encoder, docs)
    return tokens, levels


def make_pack(tmp_path: Path, docs=DOCS, rules=("word@1",), **kwargs) -> Pack:
    encoder = ByteEncoder(list(rules))
    pack, built = build_pack(tmp_path / "cache", {"docs": len(docs), "rules": list(rules), **kwargs.pop("id", {})},
                             lambda: iter(docs), encoder, progress=False, **kwargs)
    assert built
    return pack


# --- the permutation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097])
def test_permute_is_a_bijection_for_any_size(n):
    keys = round_keys(seed=5, epoch=2)
    image = permute(np.arange(n), n, keys)
    assert sorted(image.tolist()) == list(range(n))


def test_permutations_differ_by_seed_and_epoch_and_mix_neighbours():
    n = 10_000
    a = permute(np.arange(n), n, round_keys(0, 0))
    b = permute(np.arange(n), n, round_keys(0, 1))
    c = permute(np.arange(n), n, round_keys(1, 0))
    assert np.array_equal(a, permute(np.arange(n), n, round_keys(0, 0)))  # seeded: the same twice
    assert (a != b).mean() > 0.99 and (a != c).mean() > 0.99
    # Neighbouring positions land far apart: the mean gap is about n/3, as for a uniformly random permutation.
    assert abs(np.abs(np.diff(a)).mean() / n - 1 / 3) < 0.02
    assert abs(np.corrcoef(np.arange(n), a)[0, 1]) < 0.05


# --- format and building ---------------------------------------------------------------------------------------------


def test_a_pack_holds_the_concatenated_documents_with_levels_of_whole_documents(tmp_path):
    pack = make_pack(tmp_path)
    tokens, levels = stream_of(DOCS, ByteEncoder(["word@1"]))
    got_tokens, got_levels = pack.read(0, pack.n_units)
    assert np.array_equal(got_tokens, tokens) and np.array_equal(got_levels, levels)
    assert pack.meta.n_documents == len(DOCS) and pack.meta.text_bytes == sum(map(len, DOCS))
    assert pack.meta.token_dtype == "uint16"  # 258 byte ids


def test_token_dtype_is_the_narrowest_that_holds_the_vocabulary():
    assert token_dtype(256) == np.uint8 and token_dtype(258) == np.uint16 and token_dtype(1024) == np.uint16
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32 and token_dtype(128256) == np.uint32


def test_windows_read_across_shard_edges(tmp_path):
    pack = make_pack(tmp_path, shard_units=97, chunk_bytes=50)  # many shards, edges inside windows
    assert len(pack.meta.shards) > 5
    tokens, levels = stream_of(DOCS, ByteEncoder(["word@1"]))
    seq_len = 16
    n = pack.n_windows(seq_len)
    assert n == (len(tokens) - 1) // seq_len
    got, got_levels = pack.windows(np.arange(n), seq_len, top_level=1)
    for k in range(n):
        assert np.array_equal(got[k], tokens[k * seq_len : k * seq_len + seq_len + 1])
        assert got_levels[k, 0] == 1
        assert np.array_equal(got_levels[k, 1:], levels[k * seq_len + 1 : (k + 1) * seq_len + 1])


def test_processes_build_the_same_pack_as_one(tmp_path):
    one = make_pack(tmp_path / "a", processes=1, chunk_bytes=64)
    two = make_pack(tmp_path / "b", processes=2, chunk_bytes=64)
    assert two.meta.processes == 2
    for a, b in zip(one.read(0, one.n_units), two.read(0, two.n_units)):
        assert np.array_equal(a, b)


def test_a_pack_is_found_by_its_identity_and_rebuilt_for_another(tmp_path):
    pack = make_pack(tmp_path)
    again, built = build_pack(tmp_path / "cache", {"docs": len(DOCS), "rules": ["word@1"]}, lambda: iter(()),
                              ByteEncoder(["word@1"]), progress=False)
    assert not built and again.folder == pack.folder
    assert find_pack(tmp_path / "cache", {"docs": len(DOCS), "rules": ["word@2"]}) is None
    assert pack_key({"a": 1}) != pack_key({"a": 2})


def test_a_failed_pack_leaves_nothing_and_the_next_one_cleans_up(tmp_path):
    cache = tmp_path / "cache"
    identity = {"kind": "failing"}

    def failing():
        yield DOCS[0]
        raise OSError(28, "No space left on device")

    with pytest.raises(Exception, match="No space left"):
        build_pack(cache, identity, failing, ByteEncoder([]), progress=False)
    assert find_pack(cache, identity) is None
    assert not list(packs_root(cache).glob("*.tmp"))
    # A killed pack leaves its temporary folder: the next pack of that key removes it and builds cleanly.
    stale = packs_root(cache) / f".{pack_key(identity)}.abc.tmp"
    stale.mkdir()
    (stale / "tokens-00000.bin").write_bytes(b"half")
    pack, built = build_pack(cache, identity, lambda: iter(DOCS), ByteEncoder([]), progress=False)
    assert built and not stale.exists() and pack.n_units == len(stream_of(DOCS, ByteEncoder([]))[0])


def test_a_truncated_shard_is_refused_naming_it(tmp_path):
    pack = make_pack(tmp_path)
    shard = pack.folder / "tokens-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(StateError, match="tokens-00000.bin: .* bytes, the pack records"):
        Pack.open(pack.folder)


def test_concurrent_builders_pack_once(tmp_path):
    cache, identity = tmp_path / "cache", {"kind": "shared"}
    results, calls = [], []

    def documents():
        calls.append(1)
        return iter(DOCS)

    def build():
        results.append(build_pack(cache, identity, documents, ByteEncoder(["word@1"]), progress=False))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sum(built for _, built in results) == 1
    assert len({pack.folder for pack, _ in results}) == 1


# --- reading by rank and worker --------------------------------------------------------------------------------------

SEQ = 8


def _read(pack: Pack, batches: int, micro_batch: int = 3, workers: int = 0, **kwargs) -> list[dict]:
    ds = PackedBatches(pack, SEQ, micro_batch, seed=11, top_level=1, with_windows=True, **kwargs)
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    return list(itertools.islice(iter(loader), batches))


def test_every_window_is_read_once_per_epoch_over_ranks_and_workers(tmp_path):
    pack = make_pack(tmp_path)
    n, micro_batch, world = pack.n_windows(SEQ), 3, 3
    total = 2 * n  # two epochs' positions, in whole micro-batches per rank
    per_rank = -(-total // (micro_batch * world))
    seen = np.concatenate([torch.cat([b["window"] for b in _read(pack, per_rank, micro_batch, workers=2, rank=r,
                                                                 world_size=world)]).numpy()
                           for r in range(world)])
    # Global order: rank r's j-th batch is global batch j*W + r; rebuild it and check each epoch is a permutation.
    batches = seen.reshape(world, per_rank, micro_batch).transpose(1, 0, 2).reshape(-1)
    assert sorted(batches[:n].tolist()) == list(range(n)) and sorted(batches[n : 2 * n].tolist()) == list(range(n))
    assert not np.array_equal(batches[:n], batches[n : 2 * n])  # each epoch in its own order


def test_batches_do_not_depend_on_workers_and_a_resume_reads_exactly_the_rest(tmp_path):
    pack = make_pack(tmp_path)
    plain = _read(pack, 12, rank=1, world_size=2)
    workers = _read(pack, 12, workers=2, rank=1, world_size=2)
    resumed = _read(pack, 7, workers=2, start=5, rank=1, world_size=2)
    for a, b in zip(plain, workers):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for a, b in zip(plain[5:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(plain[0]) == {"tokens", "levels", "window"} and plain[0]["levels"][:, 0].eq(1).all()


def test_window_indices_at_a_distant_micro_batch_are_computed_directly():
    n = 12_345
    far = window_indices(10**6, 4, n, seed=3)
    positions = 10**6 * 4 + np.arange(4)
    epochs, offsets = np.divmod(positions, n)
    expected = [int(permute(np.array([o]), n, round_keys(3, int(e)))[0]) for e, o in zip(epochs, offsets)]
    assert far.tolist() == expected


def test_batches_carry_narrow_tokens_and_no_window_indices_by_default(tmp_path):
    pack = make_pack(tmp_path)
    batch = PackedBatches(pack, SEQ, 2, seed=0, top_level=1).batch(0)
    assert set(batch) == {"tokens", "levels"} and batch["tokens"].dtype == torch.int32
    assert batch["levels"].dtype == torch.uint8 and batch["tokens"].shape == (2, SEQ + 1)
