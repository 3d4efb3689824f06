"""What several test folders share: starting stacks, running the CLI."""
