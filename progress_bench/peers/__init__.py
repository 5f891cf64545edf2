"""The peers: servers speaking the same messages, each run as its own process."""
