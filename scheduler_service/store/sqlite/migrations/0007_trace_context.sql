-- Tracing (--otlp-endpoint): the W3C trace context of the create that made a task, as a
-- JSON object of `traceparent` (and `tracestate`), so that each lease of the task carries
-- it to the worker and the worker's span joins the create's trace. Empty when the
-- scheduler that took the create did not trace.
ALTER TABLE tasks ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
