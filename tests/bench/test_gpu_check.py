"""The GPU check (scripts/gpu-check.sh, aunet.bench.gpu): its CPU mode end to end on microscopic models, and the
reading of its results. The GPU numbers themselves are benchmarks, recorded in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aunet.bench import feed, gpu
from aunet.paths import CACHE_DIR_ENV

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cpu_mode_of_the_script_runs_every_part(tmp_path, data_dir):
    env = {**os.environ, "PYTHON": sys.executable, "AUNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(ROOT / "scripts" / "gpu-check.sh"), "--cpu", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    assert result["complete"] and result["micro"] and result["device"] == "cpu"
    assert set(result["train"]) == {"bpe", "aunet2", "aunet3"}
    for family, row in result["train"].items():
        assert row["bytes_per_s"] > 0 and row["flops_per_s"] > 0, family
        assert row["dynamo"] == {"graphs": 1, "graph_breaks": 0, "break_reasons": []}, family
        assert row["sync"]["checked"] is False  # no CUDA device to synchronise with
        shares = row["profile_two_steps"]["shares"]
        assert abs(sum(shares.values()) - 1) < 1e-6 and shares["matmul"] > 0, family
    assert result["train"]["bpe"]["bytes_per_unit"] == gpu.PAPER_BYTES_PER_TOKEN
    (gen,) = result["generation"].values()
    assert [r["context_bytes"] for r in gen["rows"]] == [256, 512]
    assert all(r["identical_output"] for r in gen["rows"])  # cascade and recomputation agree byte for byte
    # The packed data feed: the books repeated into a corpus, packed in an empty cache, and the steps fed by a real
    # DataLoader over each pack, in process and with worker processes; nothing failed.
    assert result["errors"] == []
    fed = result["feed"]
    assert "error" not in fed and fed["corpus"]["bytes"] >= 1e6 and fed["corpus"]["documents"] >= 1
    assert fed["spawn_reimports"] is None  # started with -c: packing processes re-import no main module
    assert set(fed["packs"]) == {"bpe", "aunet2"} and set(fed["runs"]) == {"bpe", "aunet2"}
    for family, pack in fed["packs"].items():
        assert pack["built"] and pack["mb_per_s"] > 0 and pack["units"] > 0, family
    assert fed["packs"]["bpe"]["tokenizer_seconds"] > 0 and fed["packs"]["bpe"]["unit"] == "token"
    assert fed["packs"]["aunet2"]["tokenizer_seconds"] is None and fed["packs"]["aunet2"]["unit"] == "byte"
    assert fed["runs"]["bpe"]["preset"] == "tiny-bpe"  # trained above: fed on the same model, no new graph
    for family, run in fed["runs"].items():
        assert "error" not in run and run["graphs_compiled"] == 0, family
        assert set(run["workers"]) == {"0", "2"}, family
        for w in run["workers"].values():
            assert w["steps"] == 3 and len(w["wait_s"]) == len(w["step_s"]) == 3, family
            assert 0 <= w["wait_share_median"] <= 1 and 0 <= w["wait_share_total"] <= 1, family
            assert w["units_per_s"] > 0 and w["units_per_step"] == 2 * run["seq_len"], family
    assert "step_vs_preloaded" in fed["runs"]["bpe"]["workers"]["2"]
    assert any(name.startswith("aunet2: data wait at most 2%") for name, _, _ in gpu.targets(result))
    assert "Packed data feed" in gpu.summary(result) and "**repeated**" in gpu.summary(result)
    assert "feed packing" in result["elapsed_s"] and "end" in result["elapsed_s"]
    log = (tmp_path / "gpu-check.log").read_text()
    assert "GPU-marked tests" in log and "status 0" in log
    assert "fed by the packed loader, 2 workers" in log


def test_script_refuses_to_prepare_data_without_books(tmp_path):
    env = {**os.environ, "AUNET_DATA_DIR": str(tmp_path)}
    done = subprocess.run([str(ROOT / "scripts" / "gpu-check.sh"), "--prepare-data"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "set AUNET_DATA_DIR" in done.stderr


@pytest.mark.parametrize("name, kind", [
    ("nvjet_sm90_tst_128x160_64x5_2x1_v_bz_NNT", "matmul"),
    ("sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x256x8", "matmul"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7", "attention"),
    ("fmha_cutlassF_f32_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel", "attention"),
    ("aten::scaled_dot_product_attention", "attention"),
    ("aten::addmm", "matmul"),
    ("triton_poi_fused__unsafe_view_cat_mul_silu_silu_backward_split_view_17", "other"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float>", "other"),
])
def test_kernels_are_sorted_into_matmul_attention_and_other(name, kind):
    assert gpu.kernel_category(name) == kind


def _feed(wait_share: float) -> dict:
    def workers(n: int, share: float) -> dict:
        return {"workers": n, "prefetch_factor": 2 if n else None, "pinned": True, "steps": 30,
                "units_per_step": 131072, "first_batch_s": 1.5, "wait_s": [0.001] * 30, "step_s": [0.1] * 30,
                "wait_median_s": 0.001, "wait_max_s": 0.004, "step_median_s": 0.1, "wait_share_median": share / 2,
                "wait_share_total": share, "steps_waiting": 3 if share > 0.05 else 0, "units_per_s": 1.2e6,
                "step_vs_preloaded": 1.02}

    def pack(family: str, unit: str, tokenizer: float | None) -> dict:
        return {"preset": f"ladder/{family}-1e19", "family": family, "unit": unit, "built": True,
                "tokenizer_seconds": tokenizer, "tokenizer_vocab": 60000 if tokenizer else None,
                "tokenizer_train_bytes": 4e6 if tokenizer else None, "pack_seconds": 10.0, "processes": 16,
                "text_bytes": 250_000_000, "units": 60_000_000, "mb_per_s": 25.0, "units_per_s": 6e6}

    return {"source": ".gpudata/books.txt",
            "corpus": {"text_bytes": 4.2e6, "bytes": 2.56e8, "documents": 1000, "copies": 61.0},
            "packs": {"bpe": pack("bpe", "token", 3.0), "aunet2": pack("aunet2", "byte", None)},
            "runs": {f: {"preset": f"ladder/{f}-1e19", "micro_batch": 16, "seq_len": 8192, "windows": 30000,
                         "graphs_compiled": 0, "workers": {"4": workers(4, wait_share), "8": workers(8, 0.001)}}
                     for f in ("bpe", "aunet2")}}


def _result(aunet2_rate: float, utilisation: float, speedup: float, sync_free: bool = True,
            wait_share: float = 0.01) -> dict:
    def row(family: str, rate: float) -> dict:
        return {"family": family, "preset": f"ladder/{family}-1e19", "params": 1e8, "micro_batch": 16,
                "seq_len": 8192, "flops_per_byte": 2e8, "bytes_per_unit": 1.0, "seconds_per_step": 0.1,
                "bytes_per_s": rate, "flops_per_s": rate * 2e8, "utilization_measured": utilisation,
                "utilization_datasheet": utilisation * 0.8, "peak_memory_bytes": 2**30, "warmup_seconds": 30.0,
                "bytes_per_s_vs_bpe": rate / 1e6, "flops_per_s_vs_bpe": rate / 1e6, "compiled": True,
                "dynamo": {"graphs": 1, "graph_breaks": 0, "break_reasons": []},
                "sync": {"checked": True, "sync_free": sync_free, "error": None if sync_free else "cudaMemcpy"},
                "profile_two_steps": {"shares": {"matmul": 0.5, "attention": 0.2, "other": 0.3}, "idle_share": 0.0,
                                      "launches": 2000, "top_kernels": ["  1.000 ms      2x  matmul    gemm"]}}
    gen_rows = [{"context_bytes": c, "cascade_bytes_per_s": 300.0, "recompute_bytes_per_s": 300.0 / s,
                 "speedup": s, "identical_output": True} for c, s in ((1024, speedup / 2), (4096, speedup))]
    return {"device": "cuda", "device_name": "NVIDIA H200", "micro": False, "torch": "2.11", "cuda": "13.0",
            "python": "3.12", "command": "python -m aunet.bench.gpu", "dense_matmul_flops_per_s": 7.8e14,
            "dense_matmul_dtype": "bfloat16", "datasheet_bf16_flops_per_s": 9.89e14,
            "train": {"bpe": row("bpe", 1e6), "aunet2": row("aunet2", aunet2_rate)}, "feed": _feed(wait_share),
            "generation": {"ladder/aunet2-1e19": {"preset": "ladder/aunet2-1e19", "rows": gen_rows,
                                                  "profile_cascade": {"wall_s": 1.0, "busy_s": 0.2,
                                                                      "per_byte_launches": 150.0}}}}


def test_targets_are_judged_against_the_issue_thresholds():
    met = {name: ok for name, _, ok in gpu.targets(_result(1.1e6, 0.45, 6.0))}
    assert all(met.values()) and len(met) == 10  # 4 targets, the data wait and then sync and graphs per family
    missed = {name.split(" ")[0]: ok for name, _, ok in gpu.targets(_result(0.9e6, 0.39, 4.9, sync_free=False))}
    assert missed["AU-Net-2"] is False and missed["cascaded"] is False
    assert missed["bpe"] is False and missed["aunet2"] is False  # utilisation under 40%, and the sync
    waits = {n: (v, ok) for n, v, ok in gpu.targets(_result(1.1e6, 0.45, 6.0, wait_share=0.03)) if "data wait" in n}
    assert len(waits) == 2 and all(ok is False and v.startswith("3.00% at 4 workers (0 of 30") for v, ok in
                                   waits.values())  # judged at the worst worker count


def test_the_data_wait_target_leaves_out_loading_in_process_and_reports_a_failed_feed():
    result = _result(1.1e6, 0.45, 6.0)
    run = result["feed"]["runs"]["bpe"]
    run["workers"]["0"] = {**run["workers"]["4"], "workers": 0, "wait_share_total": 0.5}  # the reference
    result["feed"]["runs"]["aunet2"] = {"preset": "ladder/aunet2-1e19", "error": "RuntimeError: worker died"}
    rows = {n: (v, ok) for n, v, ok in gpu.targets(result)}
    assert rows["bpe: data wait at most 2% of step time with the packed loader (4, 8 workers)"][1] is True
    assert rows["aunet2: the packed data feed ran"] == ("RuntimeError: worker died", False)
    assert "**failed**: `RuntimeError: worker died`" in gpu.summary(result)
    failed = {**result, "feed": {"error": "DataError: no books", "packs": {}, "runs": {}}}
    assert ("the packed data feed ran", "DataError: no books", False) in gpu.targets(failed)
    assert "failed** while packing" in gpu.summary(failed)


def test_paper_scale_uses_our_flops_formula_for_the_paper_1b_models():
    from aunet.flops import flops_report
    from aunet.models import load_model_config

    rows = {r["preset"]: r for r in gpu.paper_scale(_result(1.1e6, 0.45, 6.0))}
    per_byte = flops_report(load_model_config("paper-aunet2-1b")).flops_per_unit
    assert rows["paper-aunet2-1b"]["bytes_per_s"] == pytest.approx(1.1e6 * 2e8 / per_byte)
    assert rows["paper-aunet2-1b"]["ratio"] == pytest.approx(rows["paper-aunet2-1b"]["bytes_per_s"] / 225e3)
    assert gpu.paper_scale({**_result(1.1e6, 0.45, 6.0), "micro": True}) == []


def test_a_fetched_result_is_recorded_in_benchmarks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nnotes\n")
    path = tmp_path / "gpu-check.json"
    path.write_text(json.dumps(_result(1.1e6, 0.45, 6.0)))
    gpu.record(path)
    gpu.record(path)  # recording again replaces the section
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.count("<!-- aunet bench: gpu-check-cuda begin -->") == 1
    assert "| `ladder/aunet2-1e19` | 4096 | 300 | 50 | 6.0x | yes | 150 | 20% |" in text
    assert "Top kernels of two training steps" in text
    assert "| `ladder/bpe-1e19` | 3.0 s on 4.0 MB (vocabulary 60,000) | 250 MB | 60,000,000 tokens | 10.0 s | " in text
    assert "| `ladder/aunet2-1e19` | 4 | 1.50 s | 100.0 ms | 1.00 ms | 0.50% | 1.00% | 0 of 30 | 1,200,000 | 1.02 |" \
        in text
    saved = json.loads((tmp_path / "benchmarks" / "bench-gpu-check-cuda.json").read_text())
    assert saved["train"]["aunet2"]["bytes_per_s"] == 1.1e6 and "versions" in saved


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--feed-steps", "0"], "--feed-steps must be at least 1"),
    (["--feed-mb", "0"], "--feed-mb must be positive"),
    (["--feed-workers", "4,x"], "--feed-workers: expected comma-separated counts"),
    (["--feed-workers", "-1"], "--feed-workers: expected comma-separated counts"),
])
def test_bad_arguments_exit_with_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        gpu.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_the_books_are_repeated_into_documents_of_about_a_book(tmp_path):
    text = b"\n\n\n".join(bytes([65 + i]) * 100 for i in range(10))  # ten "books" of 100 bytes
    documents = feed.book_documents(text, document_bytes=250)
    assert [len(d) for d in documents] == [306, 306, 306, 100]  # three books and their two gaps, then the rest
    assert b"\n\n\n".join(documents) == text
    written = feed.repeated_corpus(text, 2500, tmp_path / "books", document_bytes=250)
    files = sorted((tmp_path / "books").rglob("*.txt"))
    # the gaps between documents are not written (1018 bytes a copy); the third copy stops past 2500
    assert written["bytes"] == sum(f.stat().st_size for f in files) == 2 * 1018 + 2 * 306
    assert written["documents"] == len(files) == 4 + 4 + 2 and written["copies"] == written["bytes"] / len(text)
    assert files[0].relative_to(tmp_path / "books").as_posix() == "copy-000/doc-0000.txt"


def test_the_feed_packs_in_its_own_cache_and_times_steps_from_a_dataloader(tmp_path, english_text, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "user-cache"))
    feed.repeated_corpus(english_text, 400_000, tmp_path / "books")
    with feed.cache_at(tmp_path / "cache"):
        pipeline, row = feed.prepare_pack("tiny-aunet2", tmp_path / "books", tokenizer_bytes=1 << 20)
    assert os.environ[CACHE_DIR_ENV] == str(tmp_path / "user-cache")  # restored
    assert not (tmp_path / "user-cache").exists() and (tmp_path / "cache" / "packs").is_dir()
    assert row["built"] and row["tokenizer_seconds"] is None and row["unit"] == "byte"
    assert 0.98 * 400_000 < row["text_bytes"] <= 400_000 + len(english_text)  # a 1% tail held out per document
    dataset = pipeline.train_batches(micro_batch=2)
    seen = []

    def step(batch: dict) -> None:
        seen.append(batch)

    timing = feed.time_feed(step, dataset, workers=0, steps=3, prefetch=2, device=torch.device("cpu"))
    assert len(seen) == 4 and timing["steps"] == 3 and len(timing["wait_s"]) == 3  # the first batch untimed
    assert seen[0]["tokens"].dtype == torch.int32 and seen[0]["levels"].dtype == torch.uint8
    assert seen[0]["tokens"].shape == (2, pipeline.seq_len + 1) == seen[0]["levels"].shape
    assert timing["units_per_step"] == 2 * pipeline.seq_len and timing["prefetch_factor"] is None

    def broken(batch: dict) -> None:
        raise RuntimeError("step failed")

    out = gpu.feed_hook(dataset, [0], steps=2, prefetch=2, device=torch.device("cpu"))(broken)
    assert out == {"error": "RuntimeError: step failed"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_requested_without_a_device_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu.main(["--device", "cuda", "--out", str(tmp_path), "--data", __file__])
