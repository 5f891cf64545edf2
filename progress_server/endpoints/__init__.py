"""The endpoints on the one port: the WebSocket endpoint and the HTTP API."""
