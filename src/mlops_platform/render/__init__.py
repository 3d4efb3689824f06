"""Pure renderers: settings in, commands and config files out. Nothing here starts a process."""
