"""Tables, engines, migrations, backup and storage upkeep."""
