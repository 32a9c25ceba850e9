"""device-agent: keeps a fleet device running the release its cloud asks for."""

__version__ = "0.1.0"
