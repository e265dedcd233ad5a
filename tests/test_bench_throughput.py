"""bench/throughput.py's measurement: a real short run of each configuration, with the recipe's callbacks."""

from __future__ import annotations

import json
import time

import pytest

from bench import throughput
from bench.breakdown import CATEGORIES, Clock

SCHEMA_KEYS = {
    "config",
    "n_envs",
    "steps_per_s",
    "grad_steps_per_s",
    "replay_bytes_per_transition",
    "peak_rss_mb",
    "breakdown_us_per_step",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_clock_counts_nested_regions_exclusively():
    clock = Clock()

    def inner():
        time.sleep(0.02)

    timed_inner = clock.wrap("sample", inner)

    def outer():
        time.sleep(0.01)
        timed_inner()

    timed_outer = clock.wrap("update", outer)
    clock.restart()
    timed_outer()
    time.sleep(0.005)
    clock.stop()
    assert clock.seconds["sample"] == pytest.approx(0.02, abs=0.01)
    assert clock.seconds["update"] == pytest.approx(0.01, abs=0.008)
    assert clock.seconds["other"] == pytest.approx(0.005, abs=0.005)
    assert clock.cpu_seconds["sample"] < 0.005  # sleeping takes no CPU time
    assert clock.calls == 2


@pytest.mark.parametrize(("config", "n_envs"), [("vanilla", 1), ("fast", 8)])
def test_run_config_breaks_down_the_learner_threads_time(config, n_envs):
    spec = {"config": config, "device": "cpu", "n_envs": n_envs, "warmup": 64, "steps": 192, "threads": 1}
    spec["overlap_env"] = True
    result = throughput.run_config(spec)
    assert set(result) >= SCHEMA_KEYS and set(result["breakdown_us_per_step"]) == set(CATEGORIES)
    json.dumps(result)
    assert result["steps"] >= 192 and result["steps_per_s"] > 0
    breakdown = result["breakdown_us_per_step"]
    assert all(value >= 0 for value in breakdown.values())
    # The categories add up to the run's time (the clock starts and stops with the timed learn call)
    total_us = result["seconds"] * 1e6 / result["steps"]
    assert sum(breakdown.values()) == pytest.approx(total_us, rel=0.02)
    assert result["total_us_per_step"] == pytest.approx(total_us, rel=0.02)
    # Every category of a real run takes time; the network's parts are inside their categories
    for category in ("env_wait", "act", "store", "sample", "update", "callbacks", "other"):
        assert breakdown[category] > 0, category
    parts = result["parts_us_per_step"]
    assert parts["act_net"] <= breakdown["act"] and parts["update_net"] <= breakdown["update"]
    assert 0 < result["python_us_per_step"] < total_us - parts["update_net"]
    assert result["python_cpu_us_per_step"] > 0
    assert result["grad_steps_per_s"] == pytest.approx(result["steps_per_s"] / 4, rel=0.35)
    if config == "fast":
        assert result["replay_bytes_per_transition"] < 7_500
    else:
        assert result["replay_bytes_per_transition"] == pytest.approx(56_468)


def test_ceiling_times_one_update_of_the_recipe():
    result = throughput.measure_ceiling({"device": "cpu", "threads": 1, "repeats": 2})
    assert len(result["update_ms"]) == 2 and all(0 < ms < 10_000 for ms in result["update_ms"])
    assert result["threads"] == 1


def test_ceiling_times_each_precision_and_layout_interleaved():
    from breakout_sb3.precision import bf16_missing

    variants = ["contiguous", "channels-last"] + (["bf16"] if bf16_missing("cpu") is None else [])
    result = throughput.measure_ceiling({"device": "cpu", "threads": 1, "repeats": 2, "variants": variants})
    assert list(result["by_variant_ms"]) == variants
    assert all(len(ms) == 2 and all(0 < t < 10_000 for t in ms) for ms in result["by_variant_ms"].values())


def test_a_variant_runs_in_its_precision_and_layout(tmp_path):
    import torch as th

    model = throughput.build("fast", "cpu", 4, str(tmp_path), variant="contiguous")
    assert model.precision == "float32" and model._memory_format == th.contiguous_format
    assert model.q_net.features_extractor.cnn[0].weight.is_contiguous()
    model.get_env().close()


def test_stubbed_networks_leave_the_python_work():
    spec = {"config": "fast", "device": "cpu", "n_envs": 8, "warmup": 64, "steps": 256, "threads": 1}
    spec.update(overlap_env=True, stub_networks=True)
    result = throughput.run_config(spec)
    assert result["stub_networks"]
    parts = result["parts_us_per_step"]
    # No network: what is left of acting and updating is the Python around them
    assert parts["act_net"] < 0.2 * result["breakdown_us_per_step"]["act"] + 5
    assert parts["update_net"] < result["breakdown_us_per_step"]["update"]
    assert 0 < result["python_outside_graph_cpu_us_per_step"] < result["python_cpu_us_per_step"]
