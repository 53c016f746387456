"""One module per `w2v` subcommand; each is a thin wrapper over a library function."""
