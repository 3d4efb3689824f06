"""Side doors of the auth proxy, tried from outside (issue 13, the proxy's part).

Each test starts the kit's own nginx (`Proxy`, the rendered template) on free ports in
front of the session stack's real tracking server, so its counters start from zero,
and talks to it over the network from distinct loopback source addresses (127.0.1.x),
as clients on different hosts would. One test puts that nginx in front of a recording
HTTP server instead: an instrument that only shows what nginx forwards.

- anonymous requests and CORS preflights never count as failed logins;
- a guesser of one user name locks out that name from that address only, not the other
  users behind the same address; spraying many names locks the address at a higher
  threshold;
- the counter's keys cannot be set by the client, and only trusted load balancers are
  believed about the client's address;
- a slow-header connection is closed; `/health` refuses a 100 MB chunked body without
  spooling it, and passes none of the client's headers to MLflow;
- the plain port beside TLS refuses credentials instead of redirecting them.
"""
