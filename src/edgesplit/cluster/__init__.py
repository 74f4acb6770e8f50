"""The cluster file (DESIGN §4.3) and the one-command local cluster (`edgesplit up`)."""
