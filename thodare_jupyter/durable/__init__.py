"""The durable runtime: schema and migrations, the SQL store, the worker, run handles."""
