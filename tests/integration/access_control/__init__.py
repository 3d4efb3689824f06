"""Access control through the real proxy: crafted requests without valid credentials.

Each one is refused with the status the layer it targets must give (401 from the password
check, 400 or 404 where nginx rejects the request line, path or a header), and none
reaches the tracking server: its access log has no line for any of them, while one
legitimate request sent right after them does appear there (so the log really records
what gets through). Requests go over raw sockets so that malformed request lines, headers
and encodings reach nginx exactly as written.

Every case is sent from its own loopback address (Linux routes all of 127.0.0.0/8 to
`lo`): the failed-login lockout and the per-client rate limit, whatever their policy,
never stand in front of the check a case is meant to reach. A request that times out is a
failure, not a refusal.

The check is proved able to fail: the same cases go through a deliberately broken nginx
(the session stack's rendered configuration with one rule removed, run on another port in
front of the same tracking server), and the check must report the vector that rule
guarded (test_negative_control.py).
"""
