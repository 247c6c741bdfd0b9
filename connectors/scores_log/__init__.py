"""The scores API's write-ahead log: a posted score is answered once durable on disk, stored in ClickHouse soon
after by one writer thread, and read back only once stored (see `logged.py`)."""
