"""``ReplicaRunner``: N replicas of one model serving requests from N threads, with one copy of
the weights.

One serving thread per replica takes requests from a shared queue (a free replica takes the
next request, so a slow request never holds up the others) and sets the request's future.
``map`` gives the results in the order of the inputs, whatever order the replicas finish in;
a failure comes back as a ``ReplicaError`` naming the replica, with the original as its cause.

The replicas come from the backend:

- ``torch``: a graph lowered once (an ONNX path, proto, bytes or ``Graph``), a TorchScript file
  (read through the safe archive loader) or a ``torch.nn.Module``; the replicas share its
  tensors (``layout="one-module"`` or ``"aliased"``) or hold copies (``shared_weights=False``);
  see :mod:`neffkit.backends.torch.replicas`;
- ``neuron``: a Neuron-compiled TorchScript file placed on N NeuronCores with the runtime's
  shared-weights setting; see :mod:`neffkit.backends.neuron.replicas`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, Protocol

from neffkit.errors import BackendError, NeffkitError, first_line
from neffkit.execution.inputs import Inputs, bind
from neffkit.execution.model import as_graph, describe_model, mentioning, source_path
from neffkit.ir.core import Graph

__all__ = ["ReplicaError", "ReplicaRunner", "ReplicaSet"]

_STOP = object()


class ReplicaError(BackendError):
    """A request failed on one replica; ``replica`` is its index, the cause is chained."""

    def __init__(self, replica: int, message: str) -> None:
        self.replica = replica
        super().__init__(f"replica {replica}: {message}")


class ReplicaSet(Protocol):
    """What a backend hands the runner: replicas called by index from their own threads."""

    def __len__(self) -> int: ...

    def init_thread(self, index: int) -> None:
        """Runs once in replica ``index``'s serving thread before its first request."""
        ...

    def call(self, index: int, args: Any) -> list[Any]:
        """Runs replica ``index`` on one request's inputs; the outputs in order."""
        ...

    def close(self) -> None:
        """Releases what the replicas hold."""
        ...


#: more replicas than this is a mistake, not a serving setup (threads are OS threads)
MAX_REPLICAS = 256


class ReplicaRunner:
    """N replicas of a model for data-parallel serving from N threads.

    Args:
        model: torch: an ONNX path, ``ModelProto``, bytes or ``Graph`` (lowered once by the
            torch backend), a TorchScript ``.pt`` (what ``neffkit convert`` writes), a
            ``torch.nn.Module`` or ``ScriptModule``; neuron: a Neuron-compiled ``.pt``.
        replicas: how many replicas (serving threads; NeuronCores on neuron).
        shared_weights: one copy of the weights for every replica (default); False loads N
            independent copies.
        backend: ``"torch"`` or ``"neuron"``.
        layout: torch, shared weights: ``"one-module"`` (every thread calls one module) or
            ``"aliased"`` (one module object per replica over the same tensors).
        threads: torch: intra-op threads per replica (default: the cores shared out).
        target: neuron: ``"inf1"``, ``"inf2"`` or ``"trn1"``.
        trust_code: a ``.pt`` whose code the safe loader would refuse (a Neuron-compiled model
            calls ``neuron::`` operators: pass True for one you trust).
        check: ONNX models: refuse what the ONNX checker refuses.
    """

    def __init__(
        self,
        model: Any,
        replicas: int,
        *,
        shared_weights: bool = True,
        backend: str = "torch",
        layout: str = "one-module",
        threads: int | None = None,
        target: str | None = None,
        trust_code: bool = False,
        check: bool = True,
    ) -> None:
        if not isinstance(replicas, int) or replicas < 1:
            raise NeffkitError(f"replicas must be a positive integer, got {replicas!r}")
        if replicas > MAX_REPLICAS:
            raise NeffkitError(
                f"{replicas} replicas: at most {MAX_REPLICAS} (one thread each; a replica per "
                "core or NeuronCore is what serves)"
            )
        self.backend = backend
        self.source = describe_model(model)
        self.graph: Graph | None = None
        self._where = source_path(model)
        with mentioning(self._where):
            if backend == "torch":
                self._set = self._torch(model, replicas, shared_weights, layout, threads,
                                        trust_code, check)  # fmt: skip
            elif backend == "neuron":
                self._set = self._neuron(model, replicas, shared_weights, target, trust_code)
            else:
                raise NeffkitError(f"replicas run on the torch or neuron backend, not {backend!r}")
        self.replicas = replicas
        self.shared_weights = shared_weights
        self._requests: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._workers = [
            threading.Thread(
                target=self._serve, args=(i,), name=f"neffkit-replica-{i}", daemon=True
            )
            for i in range(replicas)
        ]
        try:
            for w in self._workers:
                w.start()
        except RuntimeError as e:  # the system refused a thread: stop the ones started
            self.close()
            raise NeffkitError(f"cannot start {replicas} replica threads: {e}") from e

    # -- building the replicas ------------------------------------------------------------

    def _torch(
        self,
        model: Any,
        replicas: int,
        shared: bool,
        layout: str,
        threads: int | None,
        trust_code: bool,
        check: bool,
    ) -> ReplicaSet:
        import torch

        from neffkit.backends.torch import compile as lower
        from neffkit.backends.torch.replicas import TorchReplicas

        layout = layout if shared else "copies"
        if layout not in ("one-module", "aliased", "copies"):
            raise NeffkitError(f"unknown layout {layout!r}; choose one-module or aliased")
        graph = None
        if isinstance(model, torch.nn.Module):
            module = model
        elif isinstance(model, str | os.PathLike) and _is_torch_file(model):
            from neffkit.frontends.torchscript_archive import load_archive

            module = load_archive(model, trust_code=trust_code)  # type: ignore[assignment]
        else:
            graph = as_graph(model, check=check)
            module = lower(graph)
        self.graph = graph
        return TorchReplicas(module, replicas, layout, threads=threads, graph=graph)

    def _neuron(
        self, model: Any, replicas: int, shared: bool, target: str | None, trust_code: bool
    ) -> ReplicaSet:
        from neffkit.backends.neuron.replicas import NeuronReplicas
        from neffkit.frontends.torchscript_archive import check_archive

        if target is None:
            raise NeffkitError("neuron replicas need a target: inf1, inf2 or trn1")
        if not isinstance(model, str | os.PathLike):
            raise NeffkitError(
                f"neuron replicas load a compiled TorchScript file, got {type(model).__name__}"
            )
        check_archive(model, trust_code=trust_code)
        return NeuronReplicas(model, replicas, target, shared_weights=shared)

    # -- serving --------------------------------------------------------------------------

    def _serve(self, index: int) -> None:
        init_error: BaseException | None = None
        try:
            self._set.init_thread(index)
        except Exception as e:  # noqa: BLE001 - reported on every request this replica takes
            init_error = e
        while True:
            item = self._requests.get()
            if item is _STOP:
                return
            args, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if init_error is not None:
                    raise init_error
                future.set_result(self._set.call(index, args))
            except Exception as e:  # noqa: BLE001 - any failure is the request's, named
                err = ReplicaError(index, _describe(e))
                err.__cause__ = e
                future.set_exception(err)

    def _args(self, inputs: Inputs) -> Any:
        """One request's inputs as the replicas take them: bound feeds for a graph (checked
        here, in the caller's thread), positional arrays or tensors otherwise."""
        if self.graph is not None:
            with mentioning(self._where):
                return bind(self.graph, inputs)
        if isinstance(inputs, list | tuple):
            return list(inputs)
        if isinstance(inputs, dict):
            raise NeffkitError("this model takes its inputs in order (a list), not by name")
        return [inputs]

    def submit(self, inputs: Inputs) -> Future[list[Any]]:
        """Queues one request; its future gives the outputs (or a ``ReplicaError``)."""
        if self._closed:
            raise NeffkitError("this ReplicaRunner is closed")
        future: Future[list[Any]] = Future()
        self._requests.put((self._args(inputs), future))
        return future

    def __call__(self, inputs: Inputs) -> list[Any]:
        """Runs one request on the next free replica and returns its outputs."""
        return self.submit(inputs).result()

    def map(self, requests: Iterable[Inputs]) -> list[list[Any]]:
        """Runs every request on the replicas concurrently; the outputs in request order.

        Raises:
            ReplicaError: the first request (in order) that failed, naming its replica.
        """
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stops the serving threads (after the queued requests) and releases the replicas."""
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._requests.put(_STOP)
        for w in self._workers:
            if w.ident is not None:  # started (a failed start leaves the rest unstarted)
                w.join()
        self._set.close()

    def __enter__(self) -> ReplicaRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def modules(self) -> list[Any]:
        """The replicas' modules (torch: one per replica, the same object for one-module)."""
        return list(getattr(self._set, "modules", []))

    @property
    def placement(self) -> Any:
        """neuron: what the loader did (API, cores); None on torch."""
        return getattr(self._set, "placement", None)


def _describe(e: BaseException) -> str:
    """One line for a failure: a neffkit error's message, else its type and the line that says
    what went wrong (TorchScript puts a banner and a traceback before it)."""
    if isinstance(e, NeffkitError):
        return first_line(e)
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        return lines[-1]
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _is_torch_file(path: str | os.PathLike) -> bool:
    """A zip or pickle (PyTorch's formats), never ONNX: the safe loader reads or refuses it."""
    from neffkit.frontends.dispatch import is_torch_file

    return is_torch_file(path)
