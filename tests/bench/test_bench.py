"""aunet bench: matched families, and records written idempotently (the timings themselves are benchmarks)."""

from __future__ import annotations

import json

import torch

from aunet.bench.suite import FAMILIES, matched_configs, step_breakdown
from aunet.cli import bench_cmd
from aunet.flops import flops_report


def test_families_are_matched_in_flops_per_byte(data_dir):
    configs, bytes_per_token = matched_configs(1.0e6)
    assert set(configs) == set(FAMILIES)
    for family, config in configs.items():
        per_byte = flops_report(config).flops_per_unit / bytes_per_token[family]
        assert abs(per_byte / 1.0e6 - 1) < 0.03, family


def test_step_breakdown_covers_every_part(data_dir):
    from aunet.models import AUNetConfig

    config = AUNetConfig(dims=[16, 24, 32], layers=[1, 1, 1], head_dims=[8, 8, 8], caps=[64, 24, 16],
                         splits=["word@1", "word@2"], windows=[16, None, None], ffn_multiple_of=8)
    text = (data_dir / "corpora" / "tinyshakespeare" / "input.txt").read_bytes()[:4000]
    from aunet.data.packing import ByteEncoder, pack

    enc = ByteEncoder(config.splits)
    windows = [next(pack(iter([enc.encode(text)]), 65, enc.top_level))]
    tokens = torch.from_numpy(windows[0][0])[None].repeat(2, 1)
    levels = torch.from_numpy(windows[0][1]).long()[None].repeat(2, 1)
    seconds = step_breakdown(config, {"tokens": tokens, "levels": levels}, 1, torch.device("cpu"), lambda: None)
    assert {"byte stage", "deeper stages", "pooling", "upsampling", "head and loss", "optimizer", "data loader",
            "step"} <= seconds.keys()
    assert all(v >= 0 for v in seconds.values()) and seconds["step"] > 0


def test_results_are_recorded_between_markers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nhand-written notes\n")
    result = {"device": "cpu", "quick": True, "machine": {"platform": "p", "processor": "x", "threads": 2,
                                                          "cuda": None}}
    bench_cmd._write(result, "first numbers", "aunet bench --quick")
    bench_cmd._write(result, "second numbers", "aunet bench --quick")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "hand-written notes" in text and "second numbers" in text and "first numbers" not in text
    assert text.count("aunet bench: cpu-quick begin") == 1
    recorded = json.loads((tmp_path / "benchmarks" / "bench-cpu-quick.json").read_text())
    assert recorded["command"] == "aunet bench --quick"


def test_a_custom_size_gets_its_own_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = {"device": "cpu", "quick": False, "machine": {"platform": "p", "processor": "x", "threads": 2,
                                                          "cuda": None}}
    bench_cmd._write(base, "default size", "aunet bench")
    bench_cmd._write({**base, "custom_flops_per_byte": True, "target_flops_per_byte": 8e6}, "wider",
                     "aunet bench --flops-per-byte 8e6")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "default size" in text and "wider" in text
    assert (tmp_path / "benchmarks" / "bench-cpu-8e06.json").is_file()


def test_a_new_section_goes_after_the_recorded_ones_not_after_the_prose(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = {"device": "cpu", "quick": True, "machine": {"platform": "p", "processor": "x", "threads": 2, "cuda": None}}
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nintro\n")
    bench_cmd._write(base, "quick numbers", "aunet bench --quick")
    with (tmp_path / "BENCHMARKS.md").open("a") as f:
        f.write("\n## What the numbers mean\n\ndiscussion\n")
    bench_cmd._write({**base, "device": "cuda"}, "gpu numbers", "aunet bench --quick --device cuda")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.index("intro") < text.index("quick numbers") < text.index("gpu numbers") < text.index("discussion")
    assert "\n\n\n" not in text


def test_a_non_positive_size_is_refused(capsys):
    from aunet.cli import main

    assert main(["bench", "--flops-per-byte", "0", "--no-write"]) == 2
    assert "--flops-per-byte must be positive" in capsys.readouterr().err


def test_targets_are_judged_from_the_result():
    def family(ratio, utilization):
        return {"ratio_to_bpe": ratio, "utilization": utilization}

    result = {"train": {"bpe": family(1.0, 0.55), "aunet2": family(0.95, 0.52), "aunet3": family(0.69, 0.38)},
              "pool_upsample_share": 0.11, "data_loader_share": 0.001, "levels_mb_per_s": 96.0,
              "generation_speedup_4k": 26.5}
    verdicts = {name.split(" ")[0]: ok for name, _, ok in bench_cmd.targets(result)}
    assert verdicts["aunet2"] and not verdicts["aunet3"]  # 0.95 >= 1/1.1, 0.69 is not
    rows = {name: (value, ok) for name, value, ok in bench_cmd.targets(result)}
    assert rows["training FLOP/s >= 50% of the dense matmul, every family"] == ("38% (aunet3) to 55%", False)
    assert rows["pooling + upsampling < 10% of an AU-Net-3 step"] == ("11.0%", False)
    assert rows["data loading < 2% of a step"][1] and rows["levels >= 20 MB/s per core"][1]
    assert "| cascaded generation >= 5x recomputation at 4k bytes | 26.5x | yes |" in bench_cmd._targets_table(result)


def test_op_categories():
    from aunet.bench.suite import op_category

    assert op_category("aten::mm") == op_category("aten::addmm") == "matmul"
    assert op_category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op_category("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "attention"
    assert op_category("aten::mul") == op_category("Optimizer.step#AdamW.step") == "other"


def test_time_split_attributes_a_real_step(data_dir):
    from contextlib import nullcontext

    from aunet.bench.suite import time_split
    from aunet.models import BPEConfig, build_model
    from aunet.training.optim import adamw

    torch.manual_seed(0)
    model = build_model(BPEConfig(dim=32, layers=2, head_dim=8, vocab_size=64, seq_len=32, ffn_multiple_of=8))
    batches = [{"tokens": torch.randint(0, 64, (2, 33))} for _ in range(2)]
    split = time_split(model, adamw(model.parameters(), "32-true", lr=1e-3), batches, nullcontext)
    assert set(split) == {"matmul", "attention", "other"}
    assert all(v > 0 for v in split.values())  # every kind of work of a transformer step shows up


def test_the_data_bench_measures_every_rate_and_reads_them_against_a_recorded_gpu(data_dir, tmp_path, monkeypatch):
    """`aunet bench --data` on tiny presets and Tiny Shakespeare: every rate measured and positive, the targets read
    from them, feed over consumption from a GPU check file (the numbers themselves are benchmarks)."""
    from aunet.bench import data

    monkeypatch.setenv("AUNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "ROUNDS", 1)
    # 1.5 MB: Tiny Shakespeare's training split (about 1 MB) read again, in another order, to reach it
    result = data.run(corpus="tinyshakespeare", presets={"bpe": "tiny-bpe", "aunet2": "tiny-aunet2"}, batches=3,
                      pack_mb=1.5)
    for row in result["families"].values():
        assert row["text_mb"] >= 1.5
        assert set(row["feed_units_per_s"]) == {f"{w}x{k}" for w in data.WORLDS for k in data.WORKERS}
        assert all(v > 0 for v in row["feed_units_per_s"].values())
        assert set(row["resume_first_batch_s"]) == {str(s) for s in data.RESUMES}
        assert row["pack_mb_per_s_1"] > 0 and row["streamed_units_per_s"]["8x0"] > 0
    assert "| packed | 64 | 4 |" in data.summary(result) and len(data.targets(result)) == 4
    check = tmp_path / "gpu.json"
    check.write_text(json.dumps({"bpe_bytes_per_token": 2.0, "device_name": "GPU", "train": {
        "bpe": {"bytes_per_s": 1000.0}, "aunet2": {"bytes_per_s": 1000.0}}}))
    consumption = data.gpu_consumption(check)
    assert consumption["bpe"]["units_per_s"] == 500.0 and consumption["aunet2"]["units_per_s"] == 1000.0
