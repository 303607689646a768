"""The sync protocol's server side: push, pull, snapshot, exchange, horizon."""
