"""The nginx auth proxy, for real: the template under `nginx -t` as both ways render it,
then requests through the running local stack (route families, the failed-login lockout,
a legitimate burst, a 1 GB artifact, Host checks, `users` changes, TLS).

Clients that must not share the failed-login counter of other tests bind their own
loopback source address (127.0.0.x), as clients on different hosts would.
"""
