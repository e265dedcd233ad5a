"""The CUDA-graph machinery of FastDQN's update: what torch is asked to do, and what its refusals look like."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import torch as th

from breakout_sb3.errors import BreakoutSB3Error, first_line

T = TypeVar("T")

# cudaError_t values of a stream capture the driver refuses: cudaErrorStreamCaptureUnsupported (900, an operation not
# permitted while capturing, e.g. a copy to the host) to cudaErrorStreamCaptureWrongThread (908); and
# cudaErrorNotSupported (801), where graphs are not supported at all
REFUSED_CAPTURE_CODES = frozenset({801, *range(900, 909)})


class CudaUpdateError(BreakoutSB3Error):
    """The GPU failed while the updates were being captured (out of memory, a device-side assert): training stops."""

    exit_status = 1  # not a problem with the command line


def capture_refused(error: BaseException) -> bool:
    """
    :return: whether ``error``, raised while capturing a CUDA graph, says that this capture cannot be done (the
        updates can run without a graph); False for out-of-memory errors, other CUDA errors (device-side asserts
        among them) and anything else, which are not about the capture
    """
    if isinstance(error, th.OutOfMemoryError):
        return False
    if isinstance(error, th.AcceleratorError):
        # torch sets the cudaError_t of the failed call as error_code
        return getattr(error, "error_code", None) in REFUSED_CAPTURE_CODES
    # torch's own checks (TORCH_CHECK: a plain RuntimeError) of what cannot be captured: a random generator or an
    # optimizer that is not capturable, a synchronisation, the legacy stream
    return type(error) is RuntimeError and "captur" in str(error).lower()


def gpu_failure(error: BaseException) -> CudaUpdateError | None:
    """:return: the one-line error to raise for ``error``, an out-of-memory or other CUDA error; None for others"""
    if isinstance(error, th.OutOfMemoryError):
        return CudaUpdateError(f"out of GPU memory while capturing the updates in a CUDA graph: {first_line(error)}")
    if isinstance(error, th.AcceleratorError):
        return CudaUpdateError(f"CUDA error while capturing the updates in a CUDA graph: {first_line(error)}")
    return None


class CudaGraphs:
    """
    The CUDA calls a captured update makes, and nothing else: what to capture, when and how is decided by FastDQN
    (and tested on the CPU with a stand-in for this class). Every call names the device: the model's, which need
    not be the current CUDA device.
    """

    def supports(self, device: th.device) -> bool:
        return device.type == "cuda"

    def on_device(self, device: th.device) -> contextlib.AbstractContextManager[Any]:
        """Make ``device`` the current device: torch captures the random generator of the current device."""
        return th.cuda.device(device)

    def new_stream(self, device: th.device) -> Any:
        return th.cuda.Stream(device=device)

    def current_stream(self, device: th.device) -> Any:
        return th.cuda.current_stream(device)

    def set_stream(self, stream: Any) -> None:
        th.cuda.set_stream(stream)

    def wait_stream(self, waiting: Any, other: Any) -> None:
        waiting.wait_stream(other)

    def synchronize(self, device: th.device) -> None:
        th.cuda.synchronize(device)

    def new_graph(self) -> Any:
        return th.cuda.CUDAGraph()

    @contextlib.contextmanager
    def stream(self, device: th.device, stream: Any) -> Iterator[None]:
        """``stream`` as the current stream of ``device`` inside, the previous one after, whatever happens."""
        previous = self.current_stream(device)
        self.set_stream(stream)
        try:
            yield
        finally:
            self.set_stream(previous)

    def capture(self, device: th.device, stream: Any, function: Callable[[], T]) -> tuple[Any, T]:
        """
        Capture what ``function`` launches on ``device`` into a new graph, on ``stream``. Unlike
        ``torch.cuda.graph``, the current stream is restored when ``capture_begin`` or ``capture_end`` raise, and an
        error of ``function`` is raised as it is rather than as the capture's end failing after it.

        :return: the graph, and what ``function`` returned (tensors that each replay overwrites)
        """
        graph = self.new_graph()
        self.synchronize(device)
        with self.stream(device, stream):
            graph.capture_begin()
            try:
                result = function()
            except BaseException:
                with contextlib.suppress(Exception):  # ends the broken capture; function's error is the one to see
                    graph.capture_end()
                raise
            graph.capture_end()
        return graph, result


def set_capturable(optimizer: th.optim.Optimizer, capturable: bool) -> None:
    """
    Switch Adam's ``capturable`` mode, with its step counts where that mode keeps them: on each parameter's device
    when capturable (a graph reads and increments them there), else as torch's non-capturable Adam keeps them,
    scalars on the CPU (read with ``.item()`` at each step, which costs a GPU synchronisation if they are on the GPU).
    Moving a step count frees the tensor a CUDA graph may have captured: the graph key then changes.
    """
    for group in optimizer.param_groups:
        group["capturable"] = capturable
        for param in group["params"]:
            state = optimizer.state.get(param)
            step = state.get("step") if state else None
            if th.is_tensor(step):
                device = param.device if capturable else th.device("cpu")
                if step.device != device:
                    state["step"] = step.to(device)


def non_capturable_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """
    :return: a copy of an optimizer's ``state_dict()`` as non-capturable Adam keeps it (step counts on the CPU,
        ``capturable`` off), for a zip any DQN can train on; the live optimizer, and the graph that reads it, are
        left alone
    """
    state = {
        index: {**values, "step": values["step"].cpu()} if th.is_tensor(values.get("step")) else dict(values)
        for index, values in state_dict["state"].items()
    }
    groups = [
        {**group, "capturable": False} if "capturable" in group else dict(group) for group in state_dict["param_groups"]
    ]
    return {**state_dict, "state": state, "param_groups": groups}


def tensor_addresses(tensors: Iterable[th.Tensor | None]) -> tuple[int, ...]:
    """:return: where each tensor's data is (0 for None): what a captured graph reads and writes"""
    return tuple(0 if tensor is None else tensor.data_ptr() for tensor in tensors)
