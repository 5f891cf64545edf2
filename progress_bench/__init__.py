"""progress-bench: measures progress-server against the servers a user could pick instead."""
