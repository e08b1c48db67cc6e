"""Where steps run: threads, a process pool, a Dask cluster (see docs/executors.md).

Orchestration (routing, reducers, journaling) always stays on the event loop;
an executor runs only a step's body, one attempt at a time::

    @step(executor="process")        # built in: a shared process pool
    def crunch(ctx): ...

    @step(executor="dask")           # a name given to the run call
    def train(ctx): ...

    with DaskExecutor("tcp://scheduler:8786") as dask:
        run_workflow("etl", data, executors={"dask": dask})

``executor="thread"`` and ``executor="process"`` are built in; any other name
is looked up in the run call's ``executors=``. Steps sent to another process
travel by value with cloudpickle, through `flowdsl.executors._trampoline`. Importing
this package never imports dask.
"""

from ._base import Executor, RemoteTraceback
from ._dask import DaskExecutor
from ._process import ProcessExecutor
from ._thread import ThreadExecutor

__all__ = [
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "RemoteTraceback",
    "ThreadExecutor",
]
