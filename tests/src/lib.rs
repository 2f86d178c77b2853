//! Test harness: ephemeral redis-server and PostgreSQL, and a server started on a free port.
