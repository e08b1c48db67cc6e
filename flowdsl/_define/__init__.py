"""RECORD and COMPILE: from decorated functions to a validated, immutable `Plan`.

`_dsl` records (`@step`, `parallel()`, `sequence()`, a workflow body run
once), `_compiler` checks the recorded spec tree (`_spec`) and lowers it to
the `flowdsl._plan` the engine runs, and `_registry` keeps the workflows by
name. Nothing here runs a step, or imports the engine.
"""
