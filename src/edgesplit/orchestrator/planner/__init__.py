"""Split revision: the joint partition + placement optimiser. Pure Python + OR-Tools; no torch, no gRPC."""
