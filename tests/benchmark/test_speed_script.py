"""benchmarks/speed.py end to end on CPU with a tiny model: the table, SPRINT's overhead row and --profile_steps."""

import re

from .scripts import load_benchmark_script


def test_speed_table_overhead_and_profiles(capsys):
    speed = load_benchmark_script("speed")
    speed.main(["--dataset", "ml-100k", "--device", "cpu", "--models", "SASRecSPRINT", "--modes", "full_sequence",
                "--max_len", "10", "--n_layers", "1", "--hidden_size", "16", "--n_heads", "1", "--max_batches", "2",
                "--epochs", "1", "--profile_steps", "2", "--profile_rows", "500"])
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): float(m.group(2)) for m in
            re.finditer(r"^\| (SASRecSPRINT (?:w0|on)) +\| full_sequence +\| +~([0-9.]+) \|", out, re.M)}
    assert set(rows) == {"SASRecSPRINT w0", "SASRecSPRINT on"} and all(v > 0 for v in rows.values())
    assert re.search(r"^\| SASRecSPRINT \| full_sequence \| [+-][0-9.]+ \|$", out, re.M)  # overhead in %
    for label in ("w0", "on"):
        block = out.split(f"| profile SASRecSPRINT {label} [full_sequence] | ms/step | calls/step |")[1]
        assert "| [wall] |" in block.split("\n\n")[0] and "| aten::" in block.split("\n\n")[0]
    diff = out.split("| SPRINT on - w0, SASRecSPRINT [full_sequence] | +ms/step | +calls/step |")[1]
    # SPRINT adds operator calls (column sums, power iterations): some operator has more calls per step with it on
    added = [int(m.group(1)) for m in re.finditer(r"^\| aten::\S+ \| [+-][0-9.]+ \| \+(\d+) \|$", diff, re.M)]
    assert added and max(added) > 0


def test_set_reaches_every_row_s_config_and_sprint_off_still_wins():
    """--set KEY=VALUE (YAML values) goes into each row's config; the w0 row's SPRINT weights stay 0."""
    import pytest

    speed = load_benchmark_script("speed")
    args = speed.parse_args(["--dataset", "ml-100k", "--device", "cpu", "--set", "num_negatives=7", "--set",
                             "tf32=false", "--set", "sprint_attn_weight=5"])
    assert args.settings == {"num_negatives": 7, "tf32": False, "sprint_attn_weight": 5}
    (w0_label, mode, w0), (on_label, _, on) = speed.variants("SASRecSPRINT", ["full_sequence"])[0]
    w0_config = speed.base_config(args, "SASRecSPRINT", mode, w0)
    on_config = speed.base_config(args, "SASRecSPRINT", mode, on)
    assert (w0_config["num_negatives"], w0_config["tf32"], on_config["num_negatives"]) == (7, False, 7)
    assert (w0_config["sprint_attn_weight"], on_config["sprint_attn_weight"]) == (0.0, 5)
    with pytest.raises(SystemExit, match="--set takes KEY=VALUE"):
        speed.parse_args(["--set", "num_negatives"])


def test_big_only_counts_each_backbone_s_own_matmuls_and_prints_sprint_s_share(capsys, monkeypatch):
    """--big_only on CPU at a toy size: one row per (model, attention, w0/on), the matmul parameters counted on
    the model built (RecBole's SASRec L (4 d^2 + 2 d d_ff), SASRec++ L (4 d^2 + 3 d d_ff): SwiGLU), the overhead
    line, and no ordinary rows."""
    speed = load_benchmark_script("speed")
    monkeypatch.setattr(speed, "BIG", {"n_layers": 2, "hidden_size": 16, "n_heads": 2, "inner_size": 64})
    result = speed.main(["--dataset", "ml-100k", "--device", "cpu", "--big_only", "--big_models",
                "SASRecSPRINT,SASRecPPSPRINT:fused", "--big_w0", "--big_max_len", "10", "--big_batch_size", "16",
                "--big_steps", "2", "--peak_tflops", "1"])
    out = capsys.readouterr().out
    rows = {b["label"]: b["matmul_params"] for b in result["big"]}
    sasrec, sasrecpp = 2 * (4 * 16**2 + 2 * 16 * 64), 2 * (4 * 16**2 + 3 * 16 * 64)
    assert rows == {"SASRecSPRINT w0": sasrec, "SASRecSPRINT on": sasrec,
                    "SASRecPPSPRINT [fused] w0": sasrecpp, "SASRecPPSPRINT [fused] on": sasrecpp}
    assert all(b["step_s"] > 0 and b["tflops"] > 0 for b in result["big"]) and result["rows"] == []
    printed = re.findall(r"^\| (SASRec\S*(?: \[fused\])? (?:w0|on)) \| [0-9.]+ \| ", out, re.M)
    assert printed == list(rows)
    assert "% of 1 (given)" in out
    assert re.search(r"^# 0.34B SPRINT overhead, SASRecPPSPRINT \[fused\]: [+-][0-9.]+% a step$", out, re.M)
    assert "| full_sequence |" not in out and "| s/epoch |" not in out.replace(" ", "")  # --big_only: no ordinary rows
    assert "# speed: ml-100k, the 0.34B configuration only, loss CE" in out


def test_big_models_entries_set_the_attention_and_the_w0_weights():
    speed = load_benchmark_script("speed")
    entries = speed.big_entries("SASRecSPRINT, SASRecPPSPRINT:fused", with_w0=True)
    assert [label for label, _, _ in entries] == ["SASRecSPRINT w0", "SASRecSPRINT on", "SASRecPPSPRINT [fused] w0",
                                                  "SASRecPPSPRINT [fused] on"]
    assert entries[3][1:] == ("SASRecPPSPRINT", {"attention_impl": "fused"})
    assert entries[2][2] == {"attention_impl": "fused", **speed.SPRINT_OFF}


def test_profile_total_counts_each_gpu_microsecond_once():
    """On CUDA a kernel's time is both its launching operator's self device time and the kernel event's own time:
    the table lists both, the [total] sums the kernel events only (it once summed both, twice the device time)."""
    from types import SimpleNamespace

    import pytest
    from torch.autograd import DeviceType

    speed = load_benchmark_script("speed")

    def event(key, device_type, device_us, cpu_us=0.0):
        return SimpleNamespace(key=key, device_type=device_type, count=2, self_device_time_total=device_us,
                               self_cpu_time_total=cpu_us)

    events = [event("aten::mm", DeviceType.CPU, 3000.0, cpu_us=400.0), event("sm90_gemm", DeviceType.CUDA, 3000.0),
              event("aten::add", DeviceType.CPU, 1000.0, cpu_us=200.0), event("add_kernel", DeviceType.CUDA, 1000.0)]
    table = speed.profile_table(events, steps=2, wall=0.005, device="cuda")
    assert table["aten::mm"] == (1.5, 1.0) and table["sm90_gemm"] == (1.5, 1.0)
    assert table["[total]"] == (2.0, 0.0)  # (3000 + 1000) us of kernels over 2 steps
    assert table["[wall]"] == (5.0, 1.0)
    cpu = speed.profile_table(events, steps=2, wall=0.005, device="cpu")  # the host's self times, children excluded
    assert cpu["[total]"][0] == pytest.approx(0.3) and "sm90_gemm" not in cpu


def test_profile_diff_always_shows_wall_and_total_first(capsys):
    """``[wall]`` and ``[total]`` head every SPRINT-minus-w0 table, however small their difference, then the
    ``limit`` operators whose difference is largest either way (a near-zero wall difference once fell off the table)."""
    script = load_benchmark_script("speed")
    off = {"[wall]": (10.0, 0.0), "[total]": (8.0, 0.0), "a": (1.0, 1.0), "b": (1.0, 1.0), "c": (2.0, 1.0)}
    on = {"[wall]": (10.001, 0.0), "[total]": (9.0, 0.0), "a": (3.0, 2.0), "b": (0.5, 1.0), "c": (2.1, 1.0),
          "d": (0.2, 4.0)}
    script.print_profile_diff(on, off, "x", "full_sequence", 2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2:] == ["| [wall] | +0.001 | +0 |", "| [total] | +1.000 | +0 |", "| a | +2.000 | +1 |",
                         "| b | -0.500 | +0 |"]


def test_compile_workers_finds_inductor_s_pool_among_this_process_s_children():
    """speed.py marks a row timed beside Inductor's compile workers (they slowed the process's CPU work 3x to 4.5x on
    a GPU machine): a child whose command line names torch/_inductor/compile_worker is found, another child is not,
    and none once it has ended."""
    import os
    import subprocess
    import sys
    import time

    import pytest

    if not os.path.isdir("/proc"):
        pytest.skip("reads Linux's /proc")
    speed = load_benchmark_script("speed")
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    worker = subprocess.Popen(sleep + ["/x/torch/_inductor/compile_worker/__main__.py"])
    other = subprocess.Popen(sleep + ["something_else"])
    try:
        for _ in range(100):  # the children's command lines appear once they have started
            if worker.pid in speed.compile_workers():
                break
            time.sleep(0.05)
        found = speed.compile_workers()
        assert worker.pid in found and other.pid not in found
        assert speed.compile_workers(other.pid) == []  # the children of another process: none
    finally:
        for child in (worker, other):
            child.kill()
            child.wait()
    assert worker.pid not in speed.compile_workers()
