"""Security: the cluster PKI (certificates carry identity and trust) and shard encryption."""
