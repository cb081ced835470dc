"""What the mesh tells about itself: traces and metrics, W3C trace context, gauges and consumer
lag."""
