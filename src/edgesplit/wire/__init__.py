"""The only place that imports protobuf: codecs, messages, error mapping."""
