"""Running jobs in processes: which devices exist and claiming a GPU (devices); a cell or export in
a child process with its timeout and out-of-memory evidence (isolation, oomwatch), and how a child
ended, as every way of running one reports it (result); the fork server that has the libraries
imported already (forkclient, forkserver), the set-up shared by every process it forks (child),
warm workers that run a GPU's cells in one process (warmpool on the server's side, warm inside),
and the folder where torch.compile keeps what it compiled (compilecache)."""
