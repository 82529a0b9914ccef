"""The harness checked against itself: a sample of the sweep's cells measured again by an
independent bare loop in fresh processes (harnesscheck), and that loop (bareloop).

bareloop imports nothing from inferbench on purpose: it must share no code with the timing it
checks."""
