"""Implementations of the spec: our own conformant torch losses and adapters for third parties."""
