"""Device logs to the cloud (issue 13): every supervised container's stdout/stderr and the
agent's own system lines, streamed to `POST /device/v2/{uuid}/log-stream` as the reference
does, buffered (memory, then disk) while the link is down, rate-limited per service, and
switched by `SUPERVISOR_LOG_CONTROL`.

wire.py (format, gzip), buffer.py + spill.py (bounded buffer), ratelimit.py, followers.py
(engine log streams), system.py (system messages), sender.py (the HTTP stream), channel.py
(all of it together; the daemon runs `CloudLogs.run`).
"""
