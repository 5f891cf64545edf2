"""progress-server: one shared calculation, broadcast to every connected client."""
