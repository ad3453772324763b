"""The engine: the client-free consume -> handle -> dead-letter -> store -> commit loop."""
