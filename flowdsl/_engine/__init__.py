"""EXECUTE one run of a `Plan`: the loop, attempts, blocks, compensation, and the seams.

`_execution.execute` runs a plan. What plugs in from outside comes through
`_seams`: an `Invoker` (where a step's body runs: `flowdsl.executors`), a
`Journal` (durable runs: `flowdsl.stores`), an `AttemptHook` (tracing). The
engine imports neither stores nor executors, nor the definition layer: it
speaks `flowdsl._plan`.
"""
