"""The built-in task types, one module per reference design they come from.

=================  =====================================  ================================
module             types                                  reference
=================  =====================================  ================================
``basic``          ``foo``, ``baz``                       task-runner
``http``           ``bar``, ``process_data``              task-runner, CSV batch
``arithmetic``     ``sum2``, ``mult3``, ``surprise``      tasker
``mail``           ``send_email``                         AsyncTaskProcessor
``reports``        ``generate_report``                    AsyncTaskProcessor
``cpu``            ``cpu_process``                        AsyncTaskProcessor
=================  =====================================  ================================

Each prints what its reference printed (stdout, flushed) and returns it as the result.
"""

from __future__ import annotations

#: Imported by :meth:`worker_service.registry.HandlerRegistry.with_builtins`.
BUILTIN_MODULES = tuple(
    f"{__name__}.{name}" for name in ("basic", "http", "arithmetic", "mail", "reports", "cpu")
)
