"""Running jobs in processes: which devices exist and claiming a GPU (devices), a cell or export in
a child process with its timeout and out-of-memory evidence (isolation, oomwatch), the fork server
that has the libraries imported already (forkserver), warm workers that run a GPU's cells in
one process (warm), and the folder where torch.compile keeps what it compiled (compilecache)."""
