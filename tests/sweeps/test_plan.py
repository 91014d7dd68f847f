"""Sweep plans: same bytes and the budget spent at every budget, stable run ids, the paper's ladder, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

from aunet.cli import main
from aunet.errors import ConfigError
from aunet.sweeps.plan import plan_sweep
from aunet.sweeps.spec import load_sweep, sweep_from_dict
from tests.sweeps.helpers import MICRO, fixed_hparams, write_sweep

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def by_budget(plan):
    groups = defaultdict(list)
    for run in plan.runs:
        groups[run.budget_flops].append(run)
    return groups


@pytest.mark.parametrize("sweep, budgets, sizes", [("cpu-study.yaml", 4, 3), ("demo.yaml", 3, 2),
                                                   ("gpu-study.yaml", 3, 3)])
def test_fair_studies_plan_every_family_at_several_sensible_sizes(sweep, budgets, sizes, data_dir):
    import math

    spec = load_sweep(REPO / "sweeps" / sweep)
    plan = plan_sweep(fixed_hparams(spec))
    assert {r.family for r in plan.runs} == {"bpe", "aunet1", "aunet2", "aunet3", "aunet4"}
    assert len(spec.budgets) == budgets and math.log10(max(spec.budgets) / min(spec.budgets)) >= 1.0
    for (family, budget), runs in _by(plan, "family", "budget_flops").items():
        n_sizes = len({r.run_id for r in runs if r.seed == 0})
        assert n_sizes == sizes + (budget in (spec.extra_sizes.budgets if spec.extra_sizes else [])), (family, budget)
        for run in runs:
            assert abs(run.planned_flops / budget - 1) < 0.05, (family, budget, run.planned_flops)
            # Up to 2 epochs (the smallest size at cpu-study's top budget reads 1.6): repeating data that few times
            # costs next to nothing (Muennighoff et al. 2023, data-constrained scaling), and it is the same for
            # every family at that size and budget.
            assert run.epochs is None or run.epochs <= 2.0, (family, budget, run.epochs)  # None: corpus not here
            model = run.config.model
            if family != "bpe":  # every stage two heads wide, widths growing, layers on both sides
                assert all(d >= 2 * h for d, h in zip(model.dims, model.head_dims)), model.dims
                assert list(model.dims) == sorted(model.dims) and min(model.layers) >= 1, (model.dims, model.layers)
    if sweep != "demo.yaml":  # three seeds of every family's centre size at the two smallest budgets
        assert sweep != "cpu-study.yaml" or math.log10(max(spec.budgets) / min(spec.budgets)) >= 1.5
        for budget in sorted(spec.budgets)[:2]:
            for family in ("bpe", "aunet4"):
                seeds = {r.seed for r in plan.runs if r.family == family and r.budget_flops == budget
                         and r.multiplier == 1.0}
                assert seeds == {0, 1, 2}, (family, budget)


def test_fair_stride_ablation_shares_its_word_runs_with_the_study_and_truncates_nothing(data_dir):
    """ablation-stride-fair trains only its stride runs: its word@1 runs are cpu-study's AU-Net-2 runs."""
    ablation = plan_sweep(fixed_hparams(load_sweep(REPO / "sweeps" / "ablation-stride-fair.yaml")))
    study = plan_sweep(fixed_hparams(load_sweep(REPO / "sweeps" / "cpu-study.yaml")))
    word = {r.run_id for r in ablation.runs if r.variant == "word"}
    assert len(word) == 6 and word <= {r.run_id for r in study.runs if r.family == "aunet2"}
    for (variant, budget), runs in _by(ablation, "variant", "budget_flops").items():
        assert len(runs) == 3, (variant, budget)  # three sizes per variant and budget
    strides = [row for row in ablation.fairness() if row["run_id"] not in word]
    assert len(strides) == 18 and all(max(row["truncated"]) == 0.0 for row in strides), strides


def _by(plan, *fields):
    groups = defaultdict(list)
    for run in plan.runs:
        groups[tuple(getattr(run, f) for f in fields)].append(run)
    return groups


@pytest.mark.parametrize("sweep", ["cpu-study-naive.yaml"])
def test_every_family_sees_the_same_bytes_and_spends_the_budget(sweep, data_dir):
    plan = plan_sweep(load_sweep(REPO / "sweeps" / sweep))
    assert {r.family for r in plan.runs} == {"bpe", "aunet1", "aunet2", "aunet3", "aunet4"}
    for budget, runs in by_budget(plan).items():
        n_bytes = [r.bytes for r in runs]
        assert max(n_bytes) / min(n_bytes) - 1 < 0.01, (budget, n_bytes)
        for run in runs:
            assert abs(run.planned_flops / budget - 1) < 0.05, (run.family, budget, run.planned_flops)
            assert not [w for w in run.warnings if "repeats its corpus" in w], run.warnings


def test_run_ids_are_stable_across_processes(tmp_path, data_dir):
    path = write_sweep(tmp_path)
    here = [r.run_id for r in plan_sweep(load_sweep(path)).runs]
    code = ("import json, sys; from aunet.sweeps.plan import plan_sweep; from aunet.sweeps.spec import load_sweep; "
            "print(json.dumps([r.run_id for r in plan_sweep(load_sweep(sys.argv[1])).runs]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here
    assert len(set(here)) == len(here)


def test_paper_plan_reproduces_the_papers_flops_per_byte(capsys):
    """sweeps/paper.yaml plans the paper's 1e19-1e22 ladder here (nothing is read or run)."""
    assert main(["sweep", "plan", str(REPO / "sweeps" / "paper.yaml"), "--json", "--no-probe"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    budgets = sorted({r["budget_flops"] for r in rows})
    assert budgets[0] == 1e19 and budgets[-1] == 1e22
    # Paper Table 10 (recomputed in the reference notes): FLOPs per byte of AU-Net-2 and per token of BPE.
    expected = {("aunet2", 1e19): 2.4e8, ("aunet2", 1e20): 7.9e8, ("aunet2", 1e22): 7.3e9,
                ("bpe", 1e19): 1.9e9 / 4.56, ("bpe", 1e20): 5.1e9 / 4.56, ("bpe", 1e22): 3.6e10 / 4.56}
    found = {(r["family"], r["budget_flops"]): r["flops_per_byte"] for r in rows}
    for key, value in expected.items():
        assert abs(found[key] / value - 1) < 0.07, (key, found[key], value)
    fields = {"run_id", "family", "budget_flops", "params", "flops_per_byte", "bytes", "steps", "lr", "planned_flops"}
    assert fields <= rows[0].keys()


def test_plan_table_and_plot(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", "plan", str(path), "--plot", str(tmp_path / "plan.png")]) == 0
    out = capsys.readouterr().out
    assert "FLOPs/byte" in out and "est. time" in out and (tmp_path / "plan.png").stat().st_size > 10_000


def test_corpus_repeats_are_warned(tmp_path, data_dir):
    plan = plan_sweep(load_sweep(write_sweep(tmp_path, budgets=[4.0e14])))
    assert any("repeats its corpus" in w for r in plan.runs for w in r.warnings)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"families": {"bpe": {"template": {"family": "bpe", "vocab_sise": 3}}}}, "families.bpe.template.vocab_sise"),
        ({"families": {"x": {"model": "no-such-preset"}}}, ""),
        ({"budgets": []}, "budgets"),
        ({"budgets": ["lots"]}, "budgets[0]"),
        ({"size": {"rule": "chinchilla"}}, "size.rule"),
        ({"hparams": {"aunet": {"lr": 1e-3}}}, "hparams.aunet"),
        ({"familes": {}}, "familes"),
        ({"name": "a b"}, "name"),
    ],
)
def test_bad_sweeps_fail_with_the_key(changes, key, data_dir):
    raw = {**MICRO, **changes}
    with pytest.raises(ConfigError) as err:
        plan_sweep(sweep_from_dict(raw))
    assert err.value.key == key or (not key and "no such file or preset" in str(err.value))


def test_budget_too_small_for_the_smallest_model(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path, budgets=[1.0e3])
    assert main(["sweep", "plan", str(path), "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FLOPs per byte" in err


def _two_head_micro(**changes):
    """MICRO with the default floors (two heads per stage) instead of its one-head ones."""
    families = {name: {"template": {k: v for k, v in body["template"].items() if k != "min_heads"}}
                for name, body in MICRO["families"].items()}
    return {**MICRO, "families": families, **changes}


def test_a_template_without_layers_at_a_stage_is_refused():
    bad = _two_head_micro(bytes_per_token=3.0)
    bad["families"]["aunet2"]["template"]["layers"] = [0, None]
    with pytest.raises(ConfigError, match=r"families.aunet2.template.layers\[0\].*at least 1 layer on each side"):
        plan_sweep(sweep_from_dict(bad), measure=False)


def test_a_model_under_the_floors_is_refused_in_one_line_unless_allowed(tmp_path, capsys):
    one_head = {"family": "aunet", "dims": [8, 16], "layers": [1, 2], "head_dims": [8, 8], "caps": [64, 20],
                "splits": ["word@1"]}
    raw = {**MICRO, "families": {"aunet2": {"model": one_head}}, "size": {"rule": "fixed"}}
    with pytest.raises(ConfigError, match=r"families.aunet2: .*below the floors \(stage 1 is 8 wide, under 2 heads"):
        plan_sweep(sweep_from_dict(raw), measure=False)
    allowed = {**raw, "size": {"rule": "fixed", "allow_below_floors": True}}
    assert len(plan_sweep(sweep_from_dict(allowed), measure=False).runs) == 2
    path = write_sweep(tmp_path, families={"aunet2": {"model": one_head}}, size={"rule": "fixed"})
    assert main(["sweep", "plan", str(path), "--no-probe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "below the floors" in err[0]


def test_shift_to_floor_moves_a_family_grid_up_to_its_floor_model():
    from aunet.sweeps.sizing import floor_cost

    raw = _two_head_micro(size={"rule": "isoflop", "gamma_bytes": 1.0, "multipliers": [0.5, 1.0, 2.0],
                                "tolerance": 0.03}, bytes_per_token=3.0)
    with pytest.raises(ConfigError, match="too small for the smallest"):
        plan_sweep(sweep_from_dict(raw), measure=False)
    spec = sweep_from_dict({**raw, "size": {**raw["size"], "shift_to_floor": True}})
    plan = plan_sweep(spec, measure=False)
    for (family, budget), runs in _by(plan, "family", "budget_flops").items():
        floor = floor_cost(spec.families[family], 1.0 if family != "bpe" else 3.0, family)
        costs = sorted(r.flops_per_byte for r in runs)
        assert costs[0] >= floor * 0.99 and len(costs) == 3, (family, budget, costs, floor)
        shift = runs[0].grid_shift
        assert all(r.grid_shift == shift for r in runs) and shift >= 1.0
        if shift > 1.0:  # moved just enough: the smallest size is the floor model
            assert costs[0] <= floor * 1.05, (family, budget, costs[0], floor)
        targets = sorted(r.target_flops_per_byte for r in runs)
        assert targets[1] / targets[0] == pytest.approx(2.0) and targets[2] / targets[1] == pytest.approx(2.0)


@pytest.mark.parametrize("extra, message", [
    ({"seeds": [1], "budgets": [7.0e9]}, "not one of the sweep's budgets"),
    ({"seeds": [0], "budgets": [1.0e9]}, "already in seeds"),
])
def test_extra_seeds_must_name_the_sweeps_budgets_and_new_seeds(extra, message):
    with pytest.raises(ConfigError, match=message):
        sweep_from_dict({**MICRO, "extra_seeds": extra})


def test_extra_seeds_repeat_only_the_named_budgets():
    spec = sweep_from_dict({**MICRO, "bytes_per_token": 3.0, "extra_seeds": {"seeds": [1, 2], "budgets": [1.0e9]}})
    seeds = {key: sorted(r.seed for r in runs)
             for key, runs in _by(plan_sweep(spec, measure=False), "family", "budget_flops").items()}
    assert seeds[("bpe", 1.0e9)] == [0, 1, 2] and seeds[("aunet2", 3.0e9)] == [0]


ISOFLOP_MICRO = {**MICRO, "bytes_per_token": 3.0,
                 "size": {"rule": "isoflop", "gamma_bytes": 0.25, "multipliers": [0.5, 1.0], "tolerance": 0.05}}


@pytest.mark.parametrize("extra, message", [
    ({"multipliers": [2.0], "budgets": [7.0e9]}, "not one of the sweep's budgets"),
    ({"multipliers": [1.0], "budgets": [1.0e9]}, "already in size.multipliers"),
    ({"multipliers": [], "budgets": [1.0e9]}, "positive multipliers"),
])
def test_extra_sizes_must_name_the_sweeps_budgets_and_new_sizes(extra, message):
    with pytest.raises(ConfigError, match=message):
        sweep_from_dict({**ISOFLOP_MICRO, "extra_sizes": extra})
    with pytest.raises(ConfigError, match="only used by size rule isoflop"):
        sweep_from_dict({**MICRO, "extra_sizes": {"multipliers": [2.0], "budgets": [1.0e9]}})


def test_extra_sizes_add_a_larger_model_only_at_the_named_budgets():
    """Extra sizes bracket an optimum the grid missed at one budget; the grid's runs keep their ids."""
    base = plan_sweep(sweep_from_dict(ISOFLOP_MICRO), measure=False)
    spec = sweep_from_dict({**ISOFLOP_MICRO, "extra_sizes": {"multipliers": [2.0], "budgets": [3.0e9]}})
    plan = plan_sweep(spec, measure=False)
    sizes = {key: sorted(r.multiplier for r in runs) for key, runs in _by(plan, "family", "budget_flops").items()}
    assert sizes[("bpe", 3.0e9)] == [0.5, 1.0, 2.0] and sizes[("aunet2", 1.0e9)] == [0.5, 1.0]
    assert {r.run_id for r in base.runs} < {r.run_id for r in plan.runs}
    for run in plan.runs:
        if run.multiplier == 2.0:
            assert abs(run.planned_flops / run.budget_flops - 1) < 0.05
            same_family = [r for r in plan.runs if r.family == run.family and r.budget_flops == run.budget_flops]
            assert run.params > max(r.params for r in same_family if r is not run)


def test_plan_estimates_time_from_a_recorded_gpu_check(tmp_path, data_dir, capsys):
    rates = {"bpe": 2e14, "aunet2": 1e14, "aunet3": 5e13, "bpe-eager-loss": 1e12}
    check = tmp_path / "bench-gpu-check-cuda.json"
    check.write_text(json.dumps({"device_name": "NVIDIA H200", "train": {f: {"flops_per_s": r}
                                                                          for f, r in rates.items()}}))
    path = write_sweep(tmp_path)
    assert main(["sweep", "plan", str(path), "--throughput", str(check), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for row in rows:  # BPE at BPE's rate; AU-Net-2 at its own
        assert row["est_time_s"] == pytest.approx(row["planned_flops"] / rates[row["family"]])
        assert "NVIDIA H200" in row["est_time_source"] and "lower bound" in row["est_time_source"]
    from aunet.sweeps.plan import _nearest_family_rate

    assert _nearest_family_rate(rates, "aunet4") == 5e13 and _nearest_family_rate(rates, "aunet1") == 1e14
    check.write_text(json.dumps({"device_name": "x"}))
    assert main(["sweep", "plan", str(path), "--throughput", str(check)]) == 2
    assert "no training FLOP rates" in capsys.readouterr().err


def test_a_sweeps_trackers_group_its_runs_under_its_name_without_renaming_them():
    base = {**MICRO, "bytes_per_token": 3.0}
    plain = plan_sweep(sweep_from_dict(base), measure=False).runs
    tracked = plan_sweep(sweep_from_dict({**base, "trainer": {"loggers": ["wandb"]}}), measure=False).runs
    assert [r.run_id for r in tracked] == [r.run_id for r in plain]
    assert {r.config.trainer.project for r in tracked} == {MICRO["name"]}
    assert {r.config.trainer.project for r in plain} == {None}  # no tracker: the run config is as before
    named = sweep_from_dict({**base, "trainer": {"loggers": ["wandb"], "project": "mine"}})
    assert {r.config.trainer.project for r in plan_sweep(named, measure=False).runs} == {"mine"}


def test_extra_seed_groups_repeat_each_familys_own_sizes():
    """A list of groups; a group's multipliers per family entry repeat only that family's named size."""
    extra = [{"seeds": [1], "budgets": [1.0e9]},
             {"seeds": [1, 2], "budgets": [3.0e9], "multipliers": {"bpe": [1.0], "aunet2": 1.0}}]
    spec = sweep_from_dict({**MICRO, "bytes_per_token": 3.0, "extra_seeds": extra})
    seeds = {key: sorted(r.seed for r in runs)
             for key, runs in _by(plan_sweep(spec, measure=False), "family", "budget_flops").items()}
    assert seeds[("bpe", 1.0e9)] == [0, 1] and seeds[("aunet2", 1.0e9)] == [0, 1]
    assert seeds[("bpe", 3.0e9)] == [0, 1, 2] and seeds[("aunet2", 3.0e9)] == [0, 1, 2]


@pytest.mark.parametrize("extra, message", [
    ([{"seeds": [1], "budgets": [1.0e9], "multipliers": {"gpt": [1.0]}}], "'gpt' is not a family entry"),
    ([{"seeds": [1], "budgets": [1.0e9]}, {"seeds": [1], "budgets": [1.0e9]}], "two groups add the same seed"),
    ([{"seeds": [1], "budgets": [7.0e9]}], r"extra_seeds\[0\].budgets"),
])
def test_extra_seed_groups_are_checked(extra, message):
    with pytest.raises(ConfigError, match=message):
        plan_sweep(sweep_from_dict({**MICRO, "bytes_per_token": 3.0, "extra_seeds": extra}), measure=False)


def test_the_chunking_study_adds_learned_chunking_to_cpu_study_and_trains_nothing_else_again(data_dir):
    """cpu-study-chunking: cpu-study's runs (shared ids) plus learned chunking at 1 and 2 chunking steps at every
    budget (3 sizes, cpu-study's fourth at 2e13), 3 seeds of the centre size at the two smallest budgets, every
    model above the floors, every chunking run stopped on its realized FLOPs at the budget."""
    chunking = plan_sweep(fixed_hparams(load_sweep(REPO / "sweeps" / "cpu-study-chunking.yaml")))
    study = plan_sweep(fixed_hparams(load_sweep(REPO / "sweeps" / "cpu-study.yaml")))
    reused = {r.run_id for r in chunking.runs if not r.family.startswith("hnet")}
    assert reused == {r.run_id for r in study.runs}
    learned = [r for r in chunking.runs if r.family.startswith("hnet")]
    # Per family: 4 budgets x 3 sizes, the x4 size at 2e13, seeds 1 and 2 of the centre at 6e11 and 2e12 and of the
    # best size (x0.5) at 6e12 and 2e13.
    assert {r.family for r in learned} == {"hnet1", "hnet2"} and len(learned) == 2 * (4 * 3 + 1 + 2 * 2 + 2 * 2)
    for (family, budget), runs in _by(chunking, "family", "budget_flops").items():
        if not family.startswith("hnet"):
            continue
        assert len({r.multiplier for r in runs}) == (4 if budget == 2e13 else 3), (family, budget)
        seeds = {r.seed for r in runs if r.multiplier == 1.0}
        assert seeds == ({0, 1, 2} if budget in (6e11, 2e12) else {0}), (family, budget)
        for run in runs:
            model, train = run.config.model, run.config.train
            assert model.chunking_stages == int(family[-1]) and not run.warnings or "repeats" in run.warnings[0]
            assert train.budget_flops == budget and train.max_steps is None
            assert budget * 0.97 < run.planned_flops <= budget  # planned at the target ratios
            assert all(d >= 2 * h for d, h in zip(model.dims, model.head_dims)) and min(model.layers) >= 1


def test_a_chunking_template_sizes_to_its_target_and_keeps_room_under_its_caps():
    from aunet.models import family_of
    from aunet.sweeps.sizing import from_template

    template = {"family": "hnet", "widths": [0.5, 1.0], "head_dims": [16, 16], "caps": [512, 160],
                "target_ratios": [4.6], "windows": [128, None], "layers": [1, None], "ffn_multiple_of": 16,
                "width_step": 16, "aspect": 32}
    sized = from_template(template, {}, 1e6, 1.0, 0.03, "families.hnet1.template")
    assert sized.in_range and sized.config.family == "hnet" and sized.config.target_ratios == [4.6]
    assert not family_of(sized.config).floor_violations(2)
    tight = from_template({**template, "caps": [512, 120]}, {}, 1e6, 1.0, 0.03, "families.hnet1.template")
    assert any("cap 120" in v for v in family_of(tight.config).floor_violations(2))
    with pytest.raises(ConfigError, match="target_ratios"):
        from_template({k: v for k, v in template.items() if k != "target_ratios"}, {}, 1e6, 1.0, 0.03, "t")
    with pytest.raises(ConfigError, match="not a key of a hnet template"):
        from_template({**template, "splits": ["word@1"]}, {}, 1e6, 1.0, 0.03, "t")  # AU-Net's, learned here
