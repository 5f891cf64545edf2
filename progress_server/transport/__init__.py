"""The I/O seam: sockets and their frames, pings, HTTP responses and file descriptors."""
