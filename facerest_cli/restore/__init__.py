"""Restorers: the protocol, the name registry and the batched runtime (device, precision, strength)."""
