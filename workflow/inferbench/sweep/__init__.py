"""What a sweep is: its grid of cells (grid), the validated config (config), each job's slice of it (spec), the
model under test (models), one run at a time per results folder (runlock), and which source files
each job runs (codedeps). This is what the Snakefile's rules import."""
