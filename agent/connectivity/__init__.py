"""Connectivity: the two links the dashboard shows (API heartbeat and cloudlink), how the
agent probes them, and the device status the product pages derive from them."""
