"""HTTP routes: the service's own API, TensorFlow Serving's REST API, health and metrics."""
