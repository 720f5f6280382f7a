"""The read side: projections of the log into tables, and the queries over them."""
