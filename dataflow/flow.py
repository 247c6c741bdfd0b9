"""The Bytewax dataflow, assembled from its steps and edges.

    wal_blocks (sealed log segments, replayable) --> otel_traces (ClickHouse, deduplicated blocks)

Step ids are part of the recovery state: renaming the flow or a step discards its snapshots (a full replay).
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from dataflow.model import SpanBlock

FLOW_ID = "tracejudge"
BLOCKS_STEP = "wal_blocks"
SPANS_SINK_STEP = "otel_traces"


def build_flow(blocks: Source[SpanBlock], spans_sink: Sink[SpanBlock]) -> Dataflow:
    flow = Dataflow(FLOW_ID)
    stream = op.input(BLOCKS_STEP, flow, blocks)
    op.output(SPANS_SINK_STEP, stream, spans_sink)
    return flow
