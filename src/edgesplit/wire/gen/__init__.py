"""Generated protobuf/gRPC modules (python -m edgesplit.wire.regen); never edit by hand."""
