"""Sends metrics to Strata with the OpenTelemetry Python SDK and its OTLP/HTTP
exporter, as an instrumented service does: a counter, an up-down counter, a
histogram (recorded inside a sampled span, so it carries an exemplar) and an
observable gauge. Prints the trace id of that span.

Usage: otlp_metrics.py <endpoint URL> <tenant>
"""

import sys

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

endpoint, tenant = sys.argv[1], sys.argv[2]
resource = Resource.create(
    {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "pod-7",
        "deployment.environment": "test",
    }
)
exporter = OTLPMetricExporter(
    endpoint=endpoint,
    headers={"X-Scope-OrgID": tenant},
    compression=Compression.Gzip,
)
# A long interval: the test exports once, by flushing.
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(resource=resource, metric_readers=[reader])
metrics.set_meter_provider(provider)
trace.set_tracer_provider(TracerProvider(resource=resource))
meter = metrics.get_meter("shop.checkout", "1.0.0")
tracer = trace.get_tracer("shop.checkout")

requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests served.")
queue = meter.create_up_down_counter("queue.depth", unit="{item}", description="Items waiting.")
duration = meter.create_histogram("http.server.duration", unit="ms", description="Time to serve a request.")
meter.create_observable_gauge(
    "memory.utilization",
    callbacks=[lambda _options: [Observation(0.25, {"pool": "heap"})]],
    unit="1",
    description="Share of memory in use.",
)

requests.add(5, {"http.route": "/cart"})
queue.add(3)
duration.record(3, {"http.route": "/cart"})
duration.record(40, {"http.route": "/cart"})
with tracer.start_as_current_span("checkout") as span:
    duration.record(700, {"http.route": "/cart"})
    print(format(span.get_span_context().trace_id, "032x"))

if not provider.force_flush(30_000):
    sys.exit("force_flush failed")
provider.shutdown()
