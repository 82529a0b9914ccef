"""What a sweep is: the validated config and its cells (config), each job's slice of it (spec), the
model under test (models), one run at a time per results folder (runlock), and which source files
each job runs (codedeps). This is what the Snakefile's rules import."""
