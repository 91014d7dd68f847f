"""Training throughput of AU-Net against BPE at matched FLOPs per byte, measured side by side in one process.

    python -m aunet.bench.train [--aunet tiny-aunet2] [--vocab 2048] [--batch 8] [--steps 10] [--json]

The BPE model is sized so that its FLOPs per byte (FLOPs per token / bytes per token, measured with a BPE trained
on the corpus) match the AU-Net's, and its sequence holds the same number of bytes. Both train with the same
loop (forward, cross-entropy, backward, AdamW step) on real text; timings alternate between the two models so
drift of the machine hits both. Reported per family: bytes/s, achieved FLOP/s (our formula), and the ratio of
wall-clock per FLOP of AU-Net to BPE (target: within 10%).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aunet.data.bpe import BPETokenizer, bytes_per_token
from aunet.data.packing import ByteEncoder, TokenizerEncoder, pack
from aunet.flops import flops_report
from aunet.models import AUNetConfig, BPEConfig, build_model, load_model_config
from aunet.paths import data_dir
from aunet.training.optim import adamw


def matched_bpe(aunet: AUNetConfig, bytes_per_tok: float, vocab: int) -> BPEConfig:
    """The BPE baseline the paper would pair with ``aunet``: the width of its deepest stage (as in the paper's
    ladder), the same bytes per sequence, and the depth whose FLOPs per byte come closest to the AU-Net's. A width
    one head either side is tried only when no depth comes within 5%."""
    target = flops_report(aunet).flops_per_unit
    seq_len = max(8, round(aunet.seq_len / bytes_per_tok))
    width, head = aunet.dims[-1], aunet.head_dims[-1]

    def closest(dim: int) -> tuple[float, BPEConfig]:
        options = []
        for layers in range(1, 49):
            cfg = BPEConfig(dim=dim, layers=layers, head_dim=head, vocab_size=vocab, seq_len=seq_len,
                            ffn_multiple_of=aunet.ffn_multiple_of)
            options.append((abs(flops_report(cfg).flops_per_unit / bytes_per_tok / target - 1), cfg))
        return min(options, key=lambda o: o[0])

    gap, cfg = closest(width)
    if gap > 0.05:
        gap, cfg = min([(gap, cfg), closest(width - head), closest(width + head)], key=lambda o: o[0])
    return cfg


def _batches(encoder, documents: list[bytes], seq_len: int, batch: int, n: int) -> list[dict[str, torch.Tensor]]:
    windows = pack((encoder.encode(d) for d in documents), seq_len + 1, getattr(encoder, "top_level", None))
    out = []
    for _ in range(n):
        chunk = [next(windows) for _ in range(batch)]
        item = {"tokens": torch.from_numpy(np.stack([t for t, _ in chunk]))}
        if chunk[0][1] is not None:
            item["levels"] = torch.from_numpy(np.stack([lv for _, lv in chunk])).long()
        out.append(item)
    return out


def _step(model, optimizer, batch) -> None:
    tokens = batch["tokens"]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = model(inputs, batch["levels"][:, :-1]) if "levels" in batch else model(inputs)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def matmul_flops_per_s(size: int = 1024, repeats: int = 20) -> float:
    """Dense fp32 matmul rate of this machine (for utilisation)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def run(aunet_spec: str, vocab: int, batch: int, steps: int, documents: list[bytes], compile: bool = False) -> dict:
    aunet_cfg = load_model_config(aunet_spec)
    assert isinstance(aunet_cfg, AUNetConfig)
    tokenizer = BPETokenizer.train(documents, vocab_size=vocab, max_bytes=8_000_000)
    k = bytes_per_token(tokenizer, documents[:4])
    a_report = flops_report(aunet_cfg)
    bpe_cfg = matched_bpe(aunet_cfg, k, vocab)
    b_report = flops_report(bpe_cfg)
    torch.manual_seed(0)
    families = {
        "aunet": (build_model(aunet_cfg), _batches(ByteEncoder(aunet_cfg.splits), documents, aunet_cfg.seq_len,
                                                   batch, steps + 3)),
        "bpe": (build_model(bpe_cfg), _batches(TokenizerEncoder(tokenizer), documents, bpe_cfg.seq_len, batch,
                                               steps + 3)),
    }
    if compile:  # both families alike; the paper trains compiled too
        for model, _ in families.values():
            model.compile()
    optimizers = {name: adamw(m.parameters(), "32-true", lr=1e-3) for name, (m, _) in families.items()}
    times: dict[str, list[float]] = {name: [] for name in families}
    for i in range(steps + 3):
        for name, (model, batches) in families.items():  # alternate, so machine drift hits both
            start = time.perf_counter()
            _step(model, optimizers[name], batches[i])
            if i >= 3:  # the first steps warm up allocators and kernels
                times[name].append(time.perf_counter() - start)
    matmul = matmul_flops_per_s()
    out: dict = {"matmul_flops_per_s": matmul, "bytes_per_token": k, "batch": batch, "steps": steps,
                 "compiled": compile}
    for name, report, seq, cfg in (("aunet", a_report, aunet_cfg.seq_len, aunet_cfg),
                                   ("bpe", b_report, bpe_cfg.seq_len, bpe_cfg)):
        t = statistics.median(times[name])
        units = batch * seq
        flops_per_unit = report.flops_per_unit
        out[name] = {
            "config": cfg.to_dict(),
            "flops_per_byte": flops_per_unit / (1.0 if name == "aunet" else k),
            "seconds_per_step": t,
            "bytes_per_s": units * (1.0 if name == "aunet" else k) / t,
            "flops_per_s": units * flops_per_unit / t,
        }
        out[name]["utilization"] = out[name]["flops_per_s"] / matmul
    out["aunet"]["wall_per_flop_ratio_to_bpe"] = out["bpe"]["flops_per_s"] / out["aunet"]["flops_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aunet.bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--aunet", default="tiny-aunet2", help="AU-Net preset or config (default: tiny-aunet2)")
    parser.add_argument("--vocab", type=int, default=2048, help="BPE vocabulary (default: 2048)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (default: 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per family (default: 20)")
    parser.add_argument("--data", nargs="*", default=[], help="text files (default: the Gutenberg books)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models (slow to start)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    files = [Path(p) for p in args.data] or sorted((data_dir() / "corpora" / "gutenberg_en" / "books").glob("*.txt"))
    documents = [f.read_bytes() for f in files]
    result = run(args.aunet, args.vocab, args.batch, args.steps, documents, compile=args.compile)
    result.update(machine=platform.machine(), torch=torch.__version__, threads=torch.get_num_threads())
    if args.json:
        print(json.dumps(result))
        return 0
    a, b = result["aunet"], result["bpe"]
    print(f"{args.aunet} against a FLOPs-matched BPE of width {b['config']['dim']} and {b['config']['layers']} layers (bytes/token {result['bytes_per_token']:.2f}), batch {args.batch}, "
          f"median of {args.steps} steps, {result['threads']} threads{', compiled' if args.compile else ''}")
    for name, r in (("AU-Net", a), ("BPE", b)):
        print(f"  {name:<7} {r['flops_per_byte']:.3e} FLOPs/byte  {r['bytes_per_s']:>9.0f} bytes/s  "
              f"{r['flops_per_s']:.3e} FLOP/s  {r['utilization']:.0%} of dense matmul")
    print(f"  AU-Net wall-clock per FLOP = {a['wall_per_flop_ratio_to_bpe']:.2f} x BPE's (target: within 10%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
