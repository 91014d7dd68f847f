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

from aunet.bench import gpu

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
    log = (tmp_path / "gpu-check.log").read_text()
    assert "GPU-marked tests" in log and "status 0" in log


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


def _result(aunet2_rate: float, utilisation: float, speedup: float, sync_free: bool = True) -> dict:
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
            "train": {"bpe": row("bpe", 1e6), "aunet2": row("aunet2", aunet2_rate)},
            "generation": {"ladder/aunet2-1e19": {"preset": "ladder/aunet2-1e19", "rows": gen_rows,
                                                  "profile_cascade": {"wall_s": 1.0, "busy_s": 0.2,
                                                                      "per_byte_launches": 150.0}}}}


def test_targets_are_judged_against_the_issue_thresholds():
    met = {name: ok for name, _, ok in gpu.targets(_result(1.1e6, 0.45, 6.0))}
    assert all(met.values()) and len(met) == 8  # 4 targets, then sync and graphs per family
    missed = {name.split(" ")[0]: ok for name, _, ok in gpu.targets(_result(0.9e6, 0.39, 4.9, sync_free=False))}
    assert missed["AU-Net-2"] is False and missed["cascaded"] is False
    assert missed["bpe"] is False and missed["aunet2"] is False  # utilisation under 40%, and the sync


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
    saved = json.loads((tmp_path / "benchmarks" / "bench-gpu-check-cuda.json").read_text())
    assert saved["train"]["aunet2"]["bytes_per_s"] == 1.1e6 and "versions" in saved


def test_bad_arguments_exit_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--steps", "0"])
    assert exc.value.code == 2 and "--steps must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_requested_without_a_device_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu.main(["--device", "cuda", "--out", str(tmp_path), "--data", __file__])
