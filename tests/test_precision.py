"""
The update's arithmetic: FastDQN channels-last against SB3's DQN (float32, another summation order), bf16 mixed
precision against float32 from the same weights and batch, and where bf16 is refused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.logger import Logger

from breakout_sb3 import ENV_ID
from breakout_sb3.cli import main
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from breakout_sb3.precision import (
    BF16,
    FLOAT32,
    MIXED_ALGO,
    MixedPrecisionDQN,
    bf16_missing,
    check_precision,
    q_values,
)
from breakout_sb3.run_spec import RESUME_FILE
from tests.conftest import recipe_kwargs, run_cli, run_clis_at_once

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCH = 32
needs_bf16 = pytest.mark.skipif(bf16_missing("cpu") is not None, reason=f"no bf16 on this CPU: {bf16_missing('cpu')}")

# float32 in another summation order (channels-last convolutions, oneDNN's other kernels): float32 rounding, a few
# ulps of each value accumulated over the network's sums (measured: 3e-8 on Q-values of about 0.1, 2e-9 on gradients
# of at most 0.02)
FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-7
# bf16 keeps 8 bits of mantissa (relative rounding 2**-9 = 0.2%) on the inputs of each convolution and matmul,
# which accumulate in float32 (measured on the recipe's network: 0.5% on Q, 0.4% on the loss, 0.7% on the gradient)
BF16_Q_RTOL = 0.02  # of the largest |Q|
BF16_LOSS_RTOL = 0.02
BF16_GRAD_RTOL = 0.04  # |g_bf16 - g_f32| / |g_f32| over all the parameters, after clipping


@pytest.fixture(scope="module")
def breakout():
    env = AleVecEnv(n_envs=4, seed=0)
    yield env
    env.close()


def fast_model(env, steps: int = 200, **overrides) -> FastDQN:
    """A FastDQN whose replay holds a real Breakout stream, not trained yet (its updates are the tests')."""
    kwargs = recipe_kwargs(buffer_size=1_000, seed=0, train_freq=1, gradient_steps=1)
    kwargs.update(learning_starts=10**6, **overrides)
    model = FastDQN("CnnPolicy", env, replay_buffer_class=FrameStackReplayBuffer, **kwargs)
    model.learn(steps)
    return model


def trained_weights(model: FastDQN) -> None:
    """A few updates first, so that the networks' Q-values and gradients are not those of the initial weights."""
    model._set_training_mode(True)
    for _ in range(5):
        model._updates(1, BATCH, batched=True)


class UpdateRecord:
    """The clipped gradients an optimizer step applies (recorded by a step pre-hook)."""

    def __init__(self, optimizer: th.optim.Optimizer):
        self.grads: list[th.Tensor] = []
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.hook = optimizer.register_step_pre_hook(
            lambda *_: self.grads.append(th.cat([p.grad.detach().flatten().clone() for p in params]))
        )


def same_weights(model: DQN, source: DQN) -> None:
    model.policy.load_state_dict(source.policy.state_dict())


def relative(a: th.Tensor, b: th.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_channels_last_update_is_sb3s_in_float32(breakout):
    """
    One FastDQN update (channels-last networks and batch) against SB3's ``DQN.train`` from the same weights and
    the same sampled batch: Q-values, loss and clipped gradient agree to float32 rounding.
    """
    fast = fast_model(breakout)
    assert fast._memory_format == th.channels_last
    assert fast.q_net.features_extractor.cnn[0].weight.is_contiguous(memory_format=th.channels_last)
    trained_weights(fast)
    sb3 = DQN("CnnPolicy", breakout, **recipe_kwargs(buffer_size=100, seed=0))
    sb3.set_logger(Logger(None, []))
    same_weights(sb3, fast)
    sb3.replay_buffer = fast.replay_buffer
    observations = fast.replay_buffer.sample_batches(1, 64).observations
    with th.no_grad():
        q_fast, q_sb3 = fast.q_net(observations), sb3.q_net(observations)
    th.testing.assert_close(q_fast, q_sb3, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)

    records = UpdateRecord(fast.policy.optimizer), UpdateRecord(sb3.policy.optimizer)
    state = np.random.get_state()
    fast._set_training_mode(True)
    loss_fast = float(fast._updates(1, BATCH, batched=False))  # sampled as SB3 samples
    np.random.set_state(state)
    sb3.train(1, BATCH)
    loss_sb3 = sb3.logger.name_to_value["train/loss"]
    assert loss_fast == pytest.approx(loss_sb3, rel=FLOAT32_RTOL)
    (grad_fast,), (grad_sb3,) = (record.grads for record in records)
    th.testing.assert_close(grad_fast, grad_sb3, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)


def test_a_channels_last_zip_is_a_plain_dqn_zip_that_plays_the_same(breakout, tmp_path):
    fast = fast_model(breakout, steps=100)
    trained_weights(fast)
    fast.save(tmp_path / "model.zip")
    plain = DQN.load(tmp_path / "model.zip", device="cpu")
    observations = fast.replay_buffer.sample_batches(1, 64).observations
    with th.no_grad():
        th.testing.assert_close(plain.q_net(observations), fast.q_net(observations), rtol=1e-5, atol=1e-6)
    actions_fast, _ = fast.predict(observations.numpy(), deterministic=True)
    actions_plain, _ = plain.predict(observations.numpy(), deterministic=True)
    assert np.array_equal(actions_fast, actions_plain)


@needs_bf16
@pytest.mark.parametrize("memory_format", [th.contiguous_format, th.channels_last])
def test_a_bf16_update_is_a_float32_update_within_bf16_rounding(breakout, memory_format):
    """
    The same update from the same weights and batch in bf16 and in float32: the Q-values within 2% of the largest,
    the loss within 2%, the clipped gradient within 4% (relative norm of the difference); the weights, gradients
    and Adam's state stay float32, and the loss is a float32.
    """
    f32 = fast_model(breakout)
    trained_weights(f32)
    bf16 = fast_model(breakout, steps=0, precision=BF16)
    for model in (f32, bf16):
        model._memory_format = memory_format
        model.policy.to(memory_format=memory_format)
    same_weights(bf16, f32)
    data = f32.replay_buffer.sample_batches(1, BATCH)
    with th.no_grad():
        q32 = q_values(f32.q_net, data.observations, FLOAT32)
        q16 = q_values(bf16.q_net, data.observations, BF16)
    assert q16.dtype == th.float32
    assert float((q16 - q32).abs().max()) <= BF16_Q_RTOL * float(q32.abs().max())
    assert not th.equal(q16, q32)  # bf16 did run

    records = UpdateRecord(f32.policy.optimizer), UpdateRecord(bf16.policy.optimizer)
    losses = []
    for model in (f32, bf16):
        model._set_training_mode(True)
        losses.append(model._updates(1, BATCH, batched=True, data=data))
    assert losses[1].dtype == th.float32
    assert float(losses[1]) == pytest.approx(float(losses[0]), rel=BF16_LOSS_RTOL)
    (g32,), (g16,) = (record.grads for record in records)
    assert relative(g16, g32) <= BF16_GRAD_RTOL
    for param in bf16.q_net.parameters():
        assert param.dtype == th.float32 and param.grad.dtype == th.float32
    for state in bf16.policy.optimizer.state.values():
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == th.float32


@needs_bf16
def test_plain_dqn_in_bf16_runs_sb3s_update_in_bf16(breakout, tmp_path):
    """MixedPrecisionDQN: SB3's own DQN.train, the networks under bf16; afterwards its aliases are the networks."""
    f32 = fast_model(breakout)
    trained_weights(f32)
    models = {}
    for precision in (FLOAT32, BF16):
        model = MixedPrecisionDQN("CnnPolicy", breakout, precision=precision, **recipe_kwargs(buffer_size=100, seed=0))
        model.set_logger(Logger(None, []))
        same_weights(model, f32)
        model.replay_buffer = f32.replay_buffer
        models[precision] = model
    state = np.random.get_state()
    for model in models.values():
        np.random.set_state(state)
        model.train(1, BATCH)
    loss32, loss16 = (model.logger.name_to_value["train/loss"] for model in models.values())
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=BF16_LOSS_RTOL)
    bf16 = models[BF16]
    assert bf16.q_net is bf16.policy.q_net and bf16.q_net_target is bf16.policy.q_net_target
    bf16.save(tmp_path / "bf16.zip")
    plain = DQN.load(tmp_path / "bf16.zip", device="cpu")  # a plain DQN zip, which plays in float32
    observations = f32.replay_buffer.sample_batches(1, 8).observations
    with th.no_grad():
        assert th.equal(plain.q_net(observations), bf16.policy.q_net(observations))
    assert MixedPrecisionDQN.load(tmp_path / "bf16.zip", device="cpu").precision == BF16


def test_bf16_is_refused_on_a_cpu_without_it(monkeypatch):
    """Where torch sees neither AVX-512 BF16 nor AMX, bf16 is refused in one line naming what is missing."""
    monkeypatch.setattr(th.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(th.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.raises(
        BreakoutSB3Error, match=r"^--precision bf16 is not supported on cpu: .*neither AVX-512 BF16 nor AMX"
    ):
        check_precision(BF16, "cpu")
    check_precision(FLOAT32, "cpu")
    with pytest.raises(BreakoutSB3Error, match="precision bf16 is not supported"):
        FastDQN("MlpPolicy", "CartPole-v1", precision=BF16, device="cpu")


@pytest.mark.skipif(bf16_missing("cpu") is None, reason="this CPU has bf16: the refusal is tested with it hidden")
def test_bf16_is_refused_on_this_cpu():
    with pytest.raises(BreakoutSB3Error, match="not supported on cpu"):
        check_precision(BF16, "cpu")


def test_an_unknown_precision_is_refused():
    with pytest.raises(BreakoutSB3Error, match="must be one of float32, bf16, got 'fp16'"):
        check_precision("fp16", "cpu")


# --- through the command line -------------------------------------------------------------------------------------


@needs_bf16
def test_train_in_bf16_saves_its_precision_and_resume_keeps_it(tmp_path):
    """
    ``train --precision bf16``, plain DQN and the fast configuration: the precision is in the run's config.yml and
    resume.json, the zip is a plain DQN zip (which plays in float32), and ``resume`` trains in the precision its
    resume.json says.
    """
    common = ["-n", "400", "--save-freq", "200", "-params", "buffer_size:1000"]
    commands = [
        ["train", "--precision", "bf16", *common, "-f", "logs"],
        ["train", "--fast", "--precision", "bf16", *common, "n_envs:4", "gradient_steps:1", "-f", "logs"],
    ]
    for result in run_clis_at_once(*commands, cwd=tmp_path):
        assert result.returncode == 0, result.stderr[-3000:]
    runs = [next((tmp_path / "logs" / algo).glob(f"{ENV_ID}_*")) for algo in (MIXED_ALGO, "fast_dqn")]
    for run in runs:
        assert json.loads((run / RESUME_FILE).read_text())["precision"] == BF16
        config = yaml.unsafe_load((run / ENV_ID / "config.yml").read_text())  # rl-zoo3 writes an OrderedDict
        assert config["precision"] == BF16
        model = DQN.load(run / f"{ENV_ID}.zip", device="cpu")
        assert model.precision == BF16 and model.q_net.q_net[-1].weight.dtype == th.float32

    vanilla = runs[0]
    result = run_cli("resume", str(vanilla), "-n", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    model = DQN.load(vanilla / f"{ENV_ID}.zip", device="cpu")
    assert (model.num_timesteps, model.precision) == (500, BF16)
    # what resume reads is resume.json's precision, not the checkpoint's
    saved = json.loads((vanilla / RESUME_FILE).read_text())
    (vanilla / RESUME_FILE).write_text(json.dumps({**saved, "precision": FLOAT32}))
    result = run_cli("resume", str(vanilla), "-n", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert DQN.load(vanilla / f"{ENV_ID}.zip", device="cpu").precision == FLOAT32


def test_train_refuses_bf16_without_it_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(th.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(th.cpu, "_is_amx_tile_supported", lambda: False)
    assert main(["train", "--precision", "bf16", "--device", "cpu", "-n", "100", "-f", "logs"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("breakout-sb3: error: --precision bf16 is not supported on cpu")
    assert not (tmp_path / "logs").exists()
    assert main(["train", "--precision", "fp16"]) == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
