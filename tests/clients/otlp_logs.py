"""Sends logs to Strata with the OpenTelemetry Python SDK's logging bridge and
its OTLP/HTTP exporter, as an instrumented service does: one warning inside a
sampled span (so it carries the trace id) with an extra attribute, one info
line. Prints the trace id of that span.

Usage: otlp_logs.py <endpoint URL> <tenant>
"""

import logging
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

endpoint, tenant = sys.argv[1], sys.argv[2]
resource = Resource.create(
    {"service.name": "checkout", "k8s.pod.name": "pod-7", "host.name": "node-a"}
)
provider = LoggerProvider(resource=resource)
exporter = OTLPLogExporter(
    endpoint=endpoint, headers={"X-Scope-OrgID": tenant}, compression=Compression.Gzip
)
provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
trace.set_tracer_provider(TracerProvider(resource=resource))
tracer = trace.get_tracer("shop.checkout")

log = logging.getLogger("shop.payments")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))

with tracer.start_as_current_span("pay") as span:
    log.warning("payment failed for order %s", 42, extra={"order.id": "42"})
    print(format(span.get_span_context().trace_id, "032x"))
log.info("payment retried")

if not provider.force_flush(30_000):
    sys.exit("force_flush failed")
provider.shutdown()
