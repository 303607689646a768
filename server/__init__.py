"""The gridsync server: Litestar app, persistence, admin pages and the ``gridsync`` CLI."""
