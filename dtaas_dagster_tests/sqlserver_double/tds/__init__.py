"""The double's TDS 7.4 protocol layer: packets, PRELOGIN/TLS/LOGIN7, tokens, RPC decoding, row encoding."""
