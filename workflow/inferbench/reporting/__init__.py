"""Turning the summary into what people read: tables, figures, findings drawn from the data, the
time budget of the sweep (timebudget), the report, and the comparison of two runs (compare)."""
