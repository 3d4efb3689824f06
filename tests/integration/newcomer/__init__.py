"""The first day, as a newcomer lives it (issue 15's done-when).

The repository is cloned into a private (0700) home, the README's first command is run
there exactly as written, then `doctor` must say healthy (exit 0), the README's client
snippet must work from another folder, and `down` must stop it all. Twice where the
machine allows: as the user running the suite (root on CI: the data goes to
/var/lib/mlops-platform, and the test refuses to touch one that already exists), and as
an ordinary user the test creates (`mlops-newcomer`, from their own 0700 home; their data
stays in the clone). Run as an ordinary user, the first run is the non-root case and the
second is skipped, saying so.

Installing the platform into a fresh .venv downloads MLflow and its dependencies (minutes);
by default the test prepares the clone's .venv the way `make up` leaves it, from the
packages the suite already runs with (with a Python the person may run: root's pyenv is
in root's private home), and marks it installed, so `make up` does the rest (system
packages, init, up). MLOPS_TEST_FULL_INSTALL=1 lets `make up` install for real.
"""
