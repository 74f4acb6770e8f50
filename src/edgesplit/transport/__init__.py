"""How activations move: one SegmentClient interface, in-process and gRPC implementations."""
