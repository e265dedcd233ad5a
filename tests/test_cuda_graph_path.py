"""
FastDQN's CUDA-graph update, tested on the CPU: the CUDA calls (breakout_sb3.fast.graph.CudaGraphs) are replaced by a
stand-in whose graph runs the captured function eagerly, and everything around them is FastDQN's own code: when it
captures again, what a warm-up leaves behind, where Adam's step counts live, which errors turn graphs off, which
stream is current afterwards, and when the target network is synced.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import pickle
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import load_from_zip_file
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.optim import adam as adam_module
from torch.utils._python_dispatch import TorchDispatchMode

from breakout_sb3 import ENV_ID
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from breakout_sb3.fast.graph import CudaGraphs, CudaUpdateError, capture_refused, set_capturable
from breakout_sb3.precision import BF16, FLOAT32, bf16_missing
from callbacks.replay_io import attach_replay_buffer
from tests.conftest import recipe_kwargs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

aten = th.ops.aten
HOST_SYNCS = (aten._local_scalar_dense, aten.nonzero, aten.is_nonzero)
GRADIENT_STEPS, BATCH = 2, 32
needs_bf16 = pytest.mark.skipif(bf16_missing("cpu") is not None, reason=f"no bf16 on this CPU: {bf16_missing('cpu')}")


class NoHostSync(TorchDispatchMode):
    """Fails on any op that makes the host wait for the device (refused while a CUDA graph is captured)."""

    def __init__(self, allowed_in: th.optim.Optimizer | None = None):
        """:param allowed_in: an optimizer whose step() may synchronise (non-capturable Adam reads its step count)"""
        super().__init__()
        self.in_optimizer = False
        self._hooks = []
        if allowed_in is not None:
            self._hooks = [
                allowed_in.register_step_pre_hook(lambda *_: setattr(self, "in_optimizer", True)),
                allowed_in.register_step_post_hook(lambda *_: setattr(self, "in_optimizer", False)),
            ]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in HOST_SYNCS and not self.in_optimizer:
            raise AssertionError(f"host synchronisation in the captured update: {func}")
        return func(*args, **(kwargs or {}))

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()
        return super().__exit__(*exc)


def accelerator_error(code: int, message: str = "CUDA error") -> th.AcceleratorError:
    """An error as torch raises it for a failed CUDA call: its cudaError_t in error_code."""
    error = th.AcceleratorError(message)
    error.error_code = code
    return error


class EagerGraph:
    """A stand-in for torch.cuda.CUDAGraph: replay() runs the captured function again."""

    def __init__(self, graphs: EagerGraphs):
        self.graphs = graphs
        self.rerun = None

    def capture_begin(self) -> None:
        self.graphs.capture_stream = self.graphs.current
        if self.graphs.fail_at == "begin":
            raise self.graphs.fail

    def capture_end(self) -> None:
        if self.graphs.broken:
            raise accelerator_error(901, "CUDA error: operation failed due to a previous error during capture")
        if self.graphs.fail_at == "end":
            raise self.graphs.fail

    def replay(self) -> None:
        self.graphs.replays += 1
        self.rerun()


class EagerGraphs(CudaGraphs):
    """
    The CUDA calls of FastDQN's captured update, on the CPU: streams are names (the current one is tracked, as
    CUDA tracks it), a capture runs the function once (FastDQN then undoes it, as it undoes its warm-up) and a replay
    runs it again, writing into the tensors the capture returned. Both run under NoHostSync, which fails where CUDA
    would refuse the capture. ``fail`` is raised at capture's ``fail_at``: "begin", "function" or "end".
    """

    def __init__(self, fail: BaseException | None = None, fail_at: str | None = None):
        self.fail, self.fail_at = fail, fail_at
        self.current = "main"
        self.devices: list[th.device] = []
        self.stream_devices: list[th.device] = []
        self.captures = self.replays = 0
        self.capturing = self.broken = False
        self.capture_stream = None

    def supports(self, device: th.device) -> bool:
        return True

    def on_device(self, device: th.device):
        self.devices.append(device)
        return contextlib.nullcontext()

    def new_stream(self, device: th.device) -> str:
        self.stream_devices.append(device)
        return f"side {len(self.stream_devices)}"

    def current_stream(self, device: th.device) -> str:
        return self.current

    def set_stream(self, stream: str) -> None:
        self.current = stream

    def wait_stream(self, waiting: str, other: str) -> None:
        pass

    def synchronize(self, device: th.device) -> None:
        pass

    def new_graph(self) -> EagerGraph:
        return EagerGraph(self)

    def capture(self, device, stream, function):
        self.broken = False
        graph, result = super().capture(device, stream, lambda: self._run(function, capture=True))
        graph.rerun = lambda: result.copy_(self._run(function))
        self.captures += 1
        return graph, result

    def _run(self, function, capture: bool = False):
        self.capturing = True
        try:
            if capture and self.fail_at == "function":
                self.broken = True
                raise self.fail
            with NoHostSync():
                return function()
        finally:
            self.capturing = False


@pytest.fixture
def capturable_on_cpu(monkeypatch):
    """Let Adam run its capturable code on the CPU (torch allows it on CUDA and a few other devices only)."""
    supported = adam_module._get_capturable_supported_devices
    monkeypatch.setattr(adam_module, "_get_capturable_supported_devices", lambda *a, **k: [*supported(*a, **k), "cpu"])


@pytest.fixture
def breakout():
    env = AleVecEnv(n_envs=4, seed=0)
    yield env
    env.close()


def fast_model(
    env, storage_device: str | None = None, graphs: EagerGraphs | None = None, steps: int = 160, **overrides
) -> FastDQN:
    """A FastDQN whose replay holds a real Breakout stream, not trained yet (its updates are the tests')."""
    kwargs = recipe_kwargs(buffer_size=1_000, seed=0, train_freq=1, gradient_steps=GRADIENT_STEPS)
    kwargs.update(learning_starts=10**6, **overrides)
    model = FastDQN(
        "CnnPolicy",
        env,
        replay_buffer_class=FrameStackReplayBuffer,
        replay_buffer_kwargs={"storage_device": storage_device},
        **kwargs,
    )
    model.learn(steps)
    if graphs is not None:
        model._graphs = graphs
    return model


def assert_same_training_state(a: FastDQN, b: FastDQN) -> None:
    for (name, value_a), value_b in zip(a.policy.state_dict().items(), b.policy.state_dict().values(), strict=True):
        assert th.equal(value_a, value_b), name
    state_a, state_b = a.policy.optimizer.state_dict()["state"], b.policy.optimizer.state_dict()["state"]
    assert state_a.keys() == state_b.keys() and state_a
    for index in state_a:
        for key in state_a[index]:
            assert th.equal(state_a[index][key], state_b[index][key]), (index, key)


# --- the captured function ----------------------------------------------------------------------------------------


def test_no_host_sync_catches_a_synchronisation():
    tensor = th.ones(3)
    for sync in (lambda: tensor.sum().item(), lambda: bool(tensor.sum()), lambda: tensor.nonzero()):
        with pytest.raises(AssertionError, match="host synchronisation"), NoHostSync():
            sync()


@pytest.mark.parametrize(
    ("storage_device", "precision"), [(None, FLOAT32), ("cpu", FLOAT32), pytest.param("cpu", BF16, marks=needs_bf16)]
)
def test_the_captured_updates_never_wait_for_the_device(breakout, storage_device, precision):
    """
    What a graph captures (a vector step's updates, and with the replay on the model's device their sampling) makes
    no host synchronisation outside Adam's step: CUDA would refuse to capture it. Nor in bf16.
    """
    model = fast_model(breakout, storage_device, precision=precision)
    model._set_training_mode(True)
    # sampled on the host and copied into the graph's inputs, or sampled in the graph
    data = None if storage_device else model.replay_buffer.sample_batches(GRADIENT_STEPS, BATCH)
    with NoHostSync(allowed_in=model.policy.optimizer):
        loss_sum = model._updates(GRADIENT_STEPS, BATCH, batched=True, data=data)
    assert loss_sum.shape == () and th.isfinite(loss_sum)


@pytest.mark.parametrize("precision", [FLOAT32, pytest.param(BF16, marks=needs_bf16)])
def test_warm_up_and_capture_leave_exactly_one_update(breakout, capturable_on_cpu, precision):
    """
    The warm-up updates and the capture leave the weights and Adam's state as they were: after the graph's first
    replay the model is where one eager update (with the same batches, Adam in the same mode) takes it, and so after
    each later replay. The first update creates Adam's state (during the warm-up, zeroed after it). In bf16 too: the
    autocast forward passes are captured with the rest.
    """
    graphs = EagerGraphs()
    model = fast_model(breakout, graphs=graphs, precision=precision)
    eager = fast_model(breakout, steps=0, precision=precision)
    eager.policy.load_state_dict(model.policy.state_dict())
    eager.replay_buffer = model.replay_buffer
    assert not model.policy.optimizer.state
    for _ in range(3):
        np_state = np.random.get_state()
        model._run_updates(GRADIENT_STEPS, BATCH)
        np.random.set_state(np_state)
        data = model.replay_buffer.sample_batches(GRADIENT_STEPS, BATCH)
        eager._set_training_mode(True)
        eager._set_capturable(True)
        eager._updates(GRADIENT_STEPS, BATCH, batched=True, data=data)
        assert_same_training_state(model, eager)
    assert (graphs.captures, graphs.replays) == (1, 3)


def test_the_graph_path_learns_on_the_models_device(breakout, capturable_on_cpu):
    """
    learn() through the graph path, the replay sampling in the graph: captured once, replayed at every vector step,
    the side stream and the capture on the model's device, no warning, the main stream current afterwards.
    """
    graphs = EagerGraphs()
    model = fast_model(breakout, "cpu", graphs=graphs)
    model.learning_starts = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(80, reset_num_timesteps=False)
    assert model.replay_buffer.sampling_device == th.device("cpu")
    assert model._n_updates == 20 * GRADIENT_STEPS
    assert (graphs.captures, graphs.replays) == (1, 20)
    assert set(graphs.devices) == set(graphs.stream_devices) == {next(model.policy.parameters()).device}
    assert graphs.current == "main" and graphs.capture_stream.startswith("side")


# --- row by row: the device, Adam's step, refused captures, streams, the graph key, the target sync, warnings -------


def test_the_manager_puts_the_replay_on_the_models_gpu(monkeypatch, tmp_path):
    """--device cuda:1: the replay's storage on cuda:1, not on "cuda" (whichever GPU is current)."""
    from rl_zoo3.exp_manager import ExperimentManager

    from breakout_sb3 import manager, recipe_manager

    passed = {}
    monkeypatch.setattr(recipe_manager, "check_device", lambda device, announce=False: th.device(device))
    monkeypatch.setattr(
        ExperimentManager, "_preprocess_hyperparams", lambda self, hyperparams: passed.update(hyperparams)
    )
    for device, expected in (("cuda:1", "cuda:1"), ("cuda", "cuda"), ("cpu", None)):
        experiment = manager.TrainingExperimentManager(
            argparse.Namespace(),
            "fast_dqn",
            ENV_ID,
            str(tmp_path),
            device=device,
            verbose=0,
            train_argv=[],
            checkpoint_options=manager.CheckpointOptions(),
        )
        passed.clear()
        experiment._preprocess_hyperparams({"replay_buffer_class": FrameStackReplayBuffer})
        assert (passed.get("replay_buffer_kwargs") or {}).get("storage_device") == expected, device


def fake_cuda_adam() -> tuple[th.optim.Adam, FakeTensorMode]:
    """
    An Adam whose parameters and step counts are on a CUDA device, as torch would see them, and the FakeTensorMode
    to move them back there in
    """
    mode = FakeTensorMode()
    with mode:
        params = [th.nn.Parameter(th.zeros(3, device="cuda:1")), th.nn.Parameter(th.zeros(2, device="cuda:1"))]
        optimizer = th.optim.Adam(params, capturable=True)
        for param in params:
            optimizer.state[param] = {
                "step": th.ones((), device="cuda:1"),
                "exp_avg": th.zeros_like(param),
                "exp_avg_sq": th.zeros_like(param),
            }
    return optimizer, mode


def test_adam_steps_go_back_to_the_host_when_capturable_mode_is_off():
    """
    Off capturable mode (after a refused capture, or without graphs), Adam's step counts are CPU scalars, as torch's
    non-capturable Adam keeps them (it reads them with .item(): on a GPU, a synchronisation per parameter); on, they
    are on each parameter's device.
    """
    optimizer, mode = fake_cuda_adam()
    set_capturable(optimizer, False)
    steps = [state["step"] for state in optimizer.state.values()]
    assert [step.device for step in steps] == [th.device("cpu")] * 2
    assert all(step.shape == () and step.dtype == th.float32 for step in steps)
    assert not optimizer.param_groups[0]["capturable"]
    with mode:
        set_capturable(optimizer, True)
    assert [state["step"].device for state in optimizer.state.values()] == [th.device("cuda:1")] * 2


def test_a_saved_zip_has_adam_as_non_capturable_adam_keeps_it(breakout, capturable_on_cpu, tmp_path):
    """
    The zip's Adam: capturable off, step counts CPU float32 scalars (as torch's non-capturable Adam creates them),
    whatever the live optimizer has; the live optimizer, which the graph reads, is left as it was.
    """
    graphs = EagerGraphs()
    model = fast_model(breakout, graphs=graphs)
    model._run_updates(GRADIENT_STEPS, BATCH)
    live_steps = [state["step"] for state in model.policy.optimizer.state.values()]
    model.save(tmp_path / "model.zip")
    _, params, _ = load_from_zip_file(tmp_path / "model.zip", device="cpu")
    saved = params["policy.optimizer"]
    assert [group["capturable"] for group in saved["param_groups"]] == [False]
    for state in saved["state"].values():
        assert state["step"].device == th.device("cpu") and state["step"].dtype == th.float32
        assert state["step"].shape == () and float(state["step"]) == GRADIENT_STEPS
    assert model.policy.optimizer.param_groups[0]["capturable"]
    assert [state["step"] for state in model.policy.optimizer.state.values()] == live_steps  # the same tensors
    model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 1  # saving did not invalidate the graph

    # On a GPU: the live step counts there, the saved ones on the host
    live, _ = fake_cuda_adam()
    model.policy.optimizer.state = live.state
    model.policy.optimizer.param_groups[0]["params"] = live.param_groups[0]["params"]
    saved = model.get_parameters()["policy.optimizer"]
    assert {state["step"].device for state in saved["state"].values()} == {th.device("cpu")}
    assert {state["step"].device for state in live.state.values()} == {th.device("cuda:1")}


def test_which_capture_errors_are_refusals():
    refused = [
        accelerator_error(900, "CUDA error: operation not permitted when stream is capturing"),
        accelerator_error(901, "CUDA error: operation failed due to a previous error during capture"),
        accelerator_error(801, "CUDA error: operation not supported"),
        RuntimeError("Cannot call CUDAGeneratorImpl::current_seed during CUDA graph capture."),
    ]
    not_refused = [
        th.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        accelerator_error(710, "CUDA error: device-side assert triggered"),
        accelerator_error(700, "CUDA error: an illegal memory access was encountered"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x3136 and 3137x512)"),
        ValueError("capture"),
    ]
    assert all(capture_refused(error) for error in refused)
    assert not any(capture_refused(error) for error in not_refused)


@pytest.mark.parametrize(
    "make_error, fail_at",
    [
        (lambda: th.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details"), "function"),
        (lambda: accelerator_error(710, "CUDA error: device-side assert triggered\nCUDA kernel errors..."), "end"),
    ],
    ids=["out-of-memory", "device-side-assert"],
)
def test_out_of_memory_and_device_asserts_during_capture_are_one_line_errors(
    breakout, capturable_on_cpu, make_error, fail_at
):
    """Not a refused capture: training stops with one line (the CLI prints it), the weights as they were."""
    error = make_error()
    graphs = EagerGraphs(error, fail_at)
    model = fast_model(breakout, graphs=graphs)
    before = copy.deepcopy(model.policy.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CudaUpdateError) as raised:
            model._run_updates(GRADIENT_STEPS, BATCH)
    assert isinstance(raised.value, BreakoutSB3Error) and raised.value.__cause__ is error
    message = str(raised.value)
    assert "\n" not in message and message.endswith(str(error).splitlines()[0])
    assert model._graphs_refused is None and graphs.current == "main"
    for name, value in model.policy.state_dict().items():
        assert th.equal(value, before[name]), name


def test_other_errors_during_capture_are_raised_as_they_are(breakout, capturable_on_cpu):
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x3136 and 3137x512)")
    model = fast_model(breakout, graphs=EagerGraphs(error, "function"))
    with pytest.raises(RuntimeError) as raised:
        model._run_updates(GRADIENT_STEPS, BATCH)
    assert raised.value is error


def test_a_refused_capture_turns_graphs_off_for_this_process_only(breakout, capturable_on_cpu, tmp_path):
    graphs = EagerGraphs(accelerator_error(900, "CUDA error: operation not permitted when stream is capturing"), "end")
    model = fast_model(breakout, graphs=graphs)
    with pytest.warns(UserWarning, match="CUDA graph capture refused, updating without graphs") as caught:
        model._run_updates(GRADIENT_STEPS, BATCH)
    assert len(caught) == 1
    assert model._n_updates == GRADIENT_STEPS and model._graphs_refused
    assert not model.policy.optimizer.param_groups[0]["capturable"]
    model._run_updates(GRADIENT_STEPS, BATCH)  # no second try, no second warning
    assert graphs.captures == 0 and graphs.current == "main"

    model.save(tmp_path / "model.zip")
    data, _, _ = load_from_zip_file(tmp_path / "model.zip", device="cpu")
    assert data["cuda_graph"] is True and "_graphs_refused" not in data
    loaded = FastDQN.load(tmp_path / "model.zip", env=breakout, device="cpu")
    loaded.replay_buffer = model.replay_buffer
    loaded.set_logger(model.logger)
    loaded._graphs = second = EagerGraphs()
    loaded._run_updates(GRADIENT_STEPS, BATCH)
    assert loaded._graphs_refused is None and second.captures == 1


@pytest.mark.parametrize("fail_at", ["begin", "function", "end"])
def test_the_current_stream_is_restored_whatever_the_capture_raises(fail_at):
    """torch.cuda.graph leaves the capture stream current when capture_begin or capture_end raise; this does not."""
    error = accelerator_error(900)
    graphs = EagerGraphs(error, fail_at)
    with pytest.raises(th.AcceleratorError) as raised:
        graphs.capture(th.device("cpu"), "side", lambda: th.zeros(()))
    assert raised.value is error  # a failure in the function, not the capture's end failing after it
    assert graphs.capture_stream == "side" and graphs.current == "main"
    with pytest.raises(KeyError), graphs.stream(th.device("cpu"), "side"):
        raise KeyError
    assert graphs.current == "main"


def test_the_graph_key_changes_when_what_the_graph_reads_is_replaced(breakout, capturable_on_cpu):
    """
    A new replay (even an unpickled copy with the same storage_version), optimizer.load_state_dict, gradients set to
    None: the graph would read and write freed memory, so it is captured again. Nothing else recaptures it.
    """
    graphs = EagerGraphs()
    model = fast_model(breakout, "cpu", graphs=graphs)

    def key() -> tuple:
        return model._graph_inputs(GRADIENT_STEPS, BATCH, in_graph=True)

    model._run_updates(GRADIENT_STEPS, BATCH)
    for _ in range(2):
        model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 1 and model._graph_key == key()

    copy_of_replay = pickle.loads(pickle.dumps(model.replay_buffer))
    assert copy_of_replay.storage_version == model.replay_buffer.storage_version
    before = key()
    attach_replay_buffer(model, copy_of_replay)
    assert key() != before
    model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 2

    before = key()
    model.policy.optimizer.load_state_dict(copy.deepcopy(model.policy.optimizer.state_dict()))
    assert key() != before
    model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 3

    before = key()
    model.policy.optimizer.zero_grad(set_to_none=True)
    assert key() != before
    model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 4

    model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 4


def test_the_cpu_storage_mirrors_are_copies(breakout):
    """
    With storage_device "cpu" (the code a GPU runs), the tensors sampling reads are not the host arrays they mirror:
    a mirror write that were missing would make the samples differ from numpy storage's (test_frame_stack_replay).
    """
    replay = fast_model(breakout, "cpu").replay_buffer
    for mirror, host in ((replay._meta_t, replay._meta), (replay._back_t, replay._back)):
        assert not np.shares_memory(mirror.numpy(), host)
        assert np.array_equal(mirror.numpy(), host)


class TargetVersions:
    """
    Which target network each update uses: a forward pre-hook on q_net_target (run by the updates only) numbers the
    distinct target weights in the order they appear.
    """

    def __init__(self, model: DQN):
        self.fingerprints: list[tuple[float, ...]] = []
        self.per_update: list[int] = []
        model.q_net_target.register_forward_pre_hook(self._record)

    def _record(self, module, args) -> None:
        fingerprint = tuple(float(param.double().sum()) for param in module.parameters())
        if not self.fingerprints or fingerprint != self.fingerprints[-1]:
            self.fingerprints.append(fingerprint)
        self.per_update.append(len(self.fingerprints))


@pytest.mark.parametrize("overlap_env", [True, False])
def test_target_syncs_come_before_the_updates_of_their_step_as_in_sb3(overlap_env):
    """
    SB3 syncs the target network in _on_step, then trains: the updates of a sync step use the new target. FastDQN,
    whose updates start during the env step (overlap_env), syncs before starting them: the same target, update by
    update, as SB3's DQN on CartPole.
    """
    kwargs = dict(
        learning_rate=1e-3,
        buffer_size=1_000,
        learning_starts=100,
        batch_size=16,
        train_freq=1,
        gradient_steps=1,
        target_update_interval=40,  # every 10 vector steps of 4 envs
        policy_kwargs=dict(net_arch=[16]),
        seed=0,
        device="cpu",
    )
    versions = []
    for cls, extra in ((DQN, {}), (FastDQN, {"overlap_env": overlap_env})):
        model = cls("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=0), **kwargs, **extra)
        recorder = TargetVersions(model)
        model.learn(600)
        versions.append(recorder.per_update)
    sb3, fast = versions
    assert len(sb3) == len(fast) == (600 - 104) // 4 + 1
    assert sb3[-1] > 10  # the target changed at each sync
    assert fast == sb3


def test_no_capturable_warning_from_the_warm_up(breakout, capturable_on_cpu, monkeypatch):
    """
    torch warns once when a capturable Adam steps outside a graph capture ("capturable=True ... set
    capturable=False"), which the warm-up before a capture must do. Simulated here: torch's check believes it runs on
    CUDA, capturing while the stand-in captures or replays. (torch 2.13 marks an Adam built by its __init__ as already
    warned; one that was unpickled or deep-copied is not, and would warn.)
    """
    graphs = EagerGraphs()
    monkeypatch.setattr(th.accelerator, "current_accelerator", lambda check_available=False: th.device("cuda"))
    monkeypatch.setattr(
        th.accelerator, "current_stream", lambda device=None: SimpleNamespace(is_capturing=lambda: graphs.capturing)
    )
    param = th.nn.Parameter(th.ones(2))
    param.grad = th.ones(2)
    with pytest.warns(UserWarning, match="capturable=True"):  # the simulation makes torch warn
        copy.deepcopy(th.optim.Adam([param], capturable=True)).step()

    model = fast_model(breakout, graphs=graphs)
    del model.policy.optimizer._warned_capturable_if_run_uncaptured  # as an unpickled Adam
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            model._run_updates(GRADIENT_STEPS, BATCH)
    assert graphs.captures == 1 and graphs.replays == 2
    assert [str(warning.message) for warning in caught] == []
