"""A Hugging Face decoder-only checkpoint seen as blocks and segments. Pure torch; no sockets."""
