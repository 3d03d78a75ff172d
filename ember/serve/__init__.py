"""`ember serve`: TF Serving and KServe v2 REST for ember exports (see docs/architecture.md)."""
